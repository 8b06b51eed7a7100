package relayproc

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func TestCoturnConfRendersAllowedPeersAsRanges(t *testing.T) {
	c := Config{
		ListenIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Port: 3478,
		Realm: "r", Users: []string{"u:p"},
		AllowedPeers: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
	}
	conf := c.CoturnConf("/tmp/x")
	for _, want := range []string{
		"listening-port=3478", "listening-ip=192.0.2.1", "user=u:p", "realm=r", "no-tls",
		"allowed-peer-ip=192.0.2.0-192.0.2.255",
		"allowed-peer-ip=2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
		"denied-peer-ip=0.0.0.0-255.255.255.255", "userdb=/tmp/x/turndb",
	} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	args := strings.Join(c.IsthmusArgs(), " ")
	if want := "relay --listen 192.0.2.1:3478 --realm r --user u:p --allow-peer 192.0.2.0/24 --allow-peer 2001:db8::/32"; args != want {
		t.Errorf("IsthmusArgs = %q, want %q", args, want)
	}
}

// TestWaitBindingAndStop: a Binding answer ends the wait; a process that
// exits ends it with ErrExited; Stop reaps and keeps the output.
func TestWaitBindingAndStop(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil {
				continue
			}
			res := stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess)
			_, _ = srv.WriteToUDPAddrPort(res.Raw, from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := WaitBinding(ctx, []netip.AddrPort{srv.LocalAddr().(*net.UDPAddr).AddrPort()}, nil, nil); err != nil {
		t.Fatalf("WaitBinding on a server that answers: %v", err)
	}

	p, err := Start(exec.Command("sh", "-c", "echo hello; exit 3"), Options{})
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	silent := netip.MustParseAddrPort("127.0.0.1:9") // discard: no STUN answer
	if err := WaitBinding(ctx, []netip.AddrPort{silent}, p.Done(), nil); !errors.Is(err, ErrExited) {
		t.Errorf("WaitBinding while the process exits: %v, want ErrExited", err)
	}
	p.Stop(time.Second)
	if p.Output() != "hello" || p.Err() == nil {
		t.Errorf("output %q err %v, want hello and exit status 3", p.Output(), p.Err())
	}

	long, err := Start(exec.Command("sleep", "30"), Options{})
	if err != nil {
		t.Skipf("no sleep: %v", err)
	}
	start := time.Now()
	long.Stop(2 * time.Second)
	if !long.Exited() || time.Since(start) > 2*time.Second {
		t.Errorf("Stop took %v; want SIGTERM to end sleep at once", time.Since(start))
	}
}
