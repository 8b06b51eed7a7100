//go:build e2e

package relay_test

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
)

// TestRelayToRelayNamespaces runs coturn's turnutils_uclient -y (two
// clients sending to each other's relayed transport addresses, the only
// candidate pair of two relay-only ICE agents on one server) against the
// relay binary in its own network namespace. The relay's address
// (192.0.2.1, TEST-NET-1, special-purpose) is neither loopback nor covered
// by the allow list, so only the relay-to-relay rule lets the data through.
// A turnutils_peer on the relay's own address, on a port that is not a
// relayed one, must stay unreachable (the own-address rule still protects
// every other port there).
func TestRelayToRelayNamespaces(t *testing.T) {
	for _, bin := range []string{uclientBin, peerBin} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install -y coturn): %v", bin, err)
		}
	}
	run := netnstest.NewRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	relayIP := netip.MustParseAddr("192.0.2.1")
	relayNS, clientNS, err := run.Pair(ctx, "r2r-relay", "r2r-client",
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")},
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")})
	if err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "isthmus")
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/isthmusrelay/isthmus/cmd/isthmus").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	relay := relayNS.Command(ctx, bin, "relay", "--listen", "192.0.2.1:3478", "--relay-ip", relayIP.String(),
		"--user", testUser+":"+testPassword, "--allow-peer", "198.51.100.0/24", "--min-port", "50000", "--max-port", "50999")
	stdout, err := relay.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	relay.Stderr = relay.Stdout
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Process.Kill(); _ = relay.Wait() })
	ready := make(chan struct{})
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "relay ready") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("relay not ready after 20 s")
	}

	// A service on the relay's own address, outside the relayed ports.
	peer := relayNS.Command(ctx, peerBin, "-L", relayIP.String(), "-p", "3480")
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Process.Kill(); _ = peer.Wait() })

	const msgs = 20
	uclient := func(args ...string) uclientResult {
		uctx, ucancel := context.WithTimeout(ctx, uclientTimeout)
		defer ucancel()
		all := append([]string{"-v", "-n", strconv.Itoa(msgs), "-l", "120", "-z", "10",
			"-u", testUser, "-w", testPassword}, args...)
		cmd := clientNS.Command(uctx, uclientBin, append(all, relayIP.String())...)
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		res := parseUclient(string(out))
		res.args, res.err = all, err
		return res
	}

	t.Run("uclient -y: client to client through relayed addresses", func(t *testing.T) {
		res := uclient("-y")
		if strings.Contains(res.output, "403") {
			t.Fatalf("relay refused the other client's relayed address (403):\n%s", res.output)
		}
		if !res.haveTotals {
			t.Fatalf("uclient printed no totals (err %v):\n%s", res.err, res.output)
		}
		for _, ap := range res.relayAddrs {
			if ap.Addr() != relayIP {
				t.Errorf("relayed address %s, want one on %s", ap, relayIP)
			}
		}
		// With -y each client of the pair counts what it sent and got.
		if res.sent < msgs || res.recv != res.sent || res.lost != 0 {
			t.Errorf("tot_send_msgs=%d tot_recv_msgs=%d lost=%d, want >= %d, all received, 0 lost\n%s", res.sent, res.recv, res.lost, msgs, res.output)
		}
	})

	t.Run("a non-relayed port of the relay's address stays unreachable", func(t *testing.T) {
		res := uclient("-e", relayIP.String(), "-r", "3480")
		if !strings.Contains(res.output, "403") {
			t.Errorf("ChannelBind to %s:3480 not answered 403:\n%s", relayIP, res.output)
		}
		if res.recv > 0 {
			t.Errorf("uclient got %d echoes from %s:3480, a service on the relay's own address:\n%s", res.recv, relayIP, res.output)
		}
	})
	if t.Failed() {
		t.Logf("relay log:\n%s", logs.String())
	}
}
