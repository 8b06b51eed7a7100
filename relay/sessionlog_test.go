package relay_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/relay"
	"github.com/isthmusrelay/isthmus/relay/relaytest"
)

// One info line per allocation end: after a Refresh with LIFETIME 0 the
// log has "allocation ended" with the client and relayed addresses and
// families, the REST user part, duration, packets and bytes each way and
// reason "deleted"; an auth failure logs the username, never the password.
func TestSessionLogOnDelete(t *testing.T) {
	r := startRelay(t, nil)
	username, password := relay.RESTCredential(testSecret, "carol", time.Now().Add(time.Hour))
	c := dialSTUN(t, "udp6", r.V6, username, password)
	relayed, _ := c.MustAllocate()
	peer := listenPeer(t, "127.0.0.1:0")
	if res := c.Request(stun.MethodCreatePermission, peerAddress(peer.addr())); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("CreatePermission: %s", describe(res))
	}
	// Three datagrams each way: 100 bytes to the peer, 50 back.
	for i := 0; i < 3; i++ {
		c.Indication(stun.MethodSend, peerAddress(peer.addr()), dataAttr(make([]byte, 100)))
		if _, _, err := peer.readFrom(); err != nil {
			t.Fatalf("peer read %d: %v", i, err)
		}
		if _, err := peer.conn.WriteToUDPAddrPort(make([]byte, 50), relayed); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatalf("client read %d: %v", i, err)
		}
	}
	c.Release()

	var line map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for line == nil && time.Now().Before(deadline) {
		for _, l := range strings.Split(r.Logs.String(), "\n") {
			if strings.Contains(l, `"allocation ended"`) {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if line == nil {
		t.Fatalf("no \"allocation ended\" line after Refresh LIFETIME 0; log:\n%s", r.Logs.String())
	}
	if line["level"] != "INFO" || line["client"] != c.LocalAddr().String() || line["client_family"] != "IPv6" ||
		line["user"] != "carol" || line["reason"] != "deleted" || line["transport"] != "udp" {
		t.Errorf("allocation ended line = %v", line)
	}
	if rs, _ := line["relayed"].([]any); len(rs) != 1 || rs[0] != relayed.String() {
		t.Errorf("relayed = %v, want [%s]", line["relayed"], relayed)
	}
	if fs, _ := line["relay_family"].([]any); len(fs) != 1 || fs[0] != "IPv4" {
		t.Errorf("relay_family = %v, want [IPv4] (RFC 6156 default)", line["relay_family"])
	}
	if _, ok := line["duration"]; !ok {
		t.Errorf("allocation ended line has no duration: %v", line)
	}
	for k, want := range map[string]float64{"packets_to_peer": 3, "bytes_to_peer": 300, "packets_from_peer": 3, "bytes_from_peer": 150} {
		if got, _ := line[k].(float64); got != want {
			t.Errorf("%s = %v, want %v (line %v)", k, line[k], want, line)
		}
	}

	// A wrong password: logged at info with the username, not the password.
	const wrong = "n0t-the-pa55word"
	bad := dialSTUN(t, "udp6", r.V6, testUser, wrong)
	if res, err := bad.TryRequest(stun.MethodAllocate, requestedTransportUDP()); err != nil || res.Type.Class == stun.ClassSuccessResponse {
		t.Fatalf("Allocate with a wrong password: %v %v", res, err)
	}
	logs := r.Logs.String()
	if !strings.Contains(logs, `"msg":"auth failure"`) || !strings.Contains(logs, `"username":"`+testUser+`"`) {
		t.Errorf("no auth failure line with the username; log:\n%s", relaytest.LastLines(logs, 20))
	}
	if strings.Contains(logs, wrong) {
		t.Errorf("the password is in the log")
	}
}

// An allocation cut by the relay shutting down (no drain) ends with reason
// "closed".
func TestSessionLogOnClose(t *testing.T) {
	r := startRelay(t, nil)
	c := dialSTUN(t, "udp4", r.V4, testUser, testPassword)
	c.MustAllocate()
	r.Close(t)
	for _, l := range strings.Split(r.Logs.String(), "\n") {
		if strings.Contains(l, `"allocation ended"`) {
			if !strings.Contains(l, `"reason":"closed"`) || !strings.Contains(l, `"user":"`+testUser+`"`) {
				t.Errorf("allocation ended at Close: %s", l)
			}
			return
		}
	}
	t.Fatalf("no \"allocation ended\" line at Close; log:\n%s", relaytest.LastLines(r.Logs.String(), 20))
}
