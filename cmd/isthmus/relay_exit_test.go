package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/relay"
)

func startTestRelay(t *testing.T, log *slog.Logger, mutate func(*relay.Config)) *relay.Server {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.ListenerSockets = 1
	cfg.Users = []string{"alice:secret"}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := relay.New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// allocate makes one UDP allocation with pion's client; it lives until the
// test ends.
func allocate(t *testing.T, server netip.AddrPort) {
	t.Helper()
	allocateAs(t, server, "alice", "secret")
}

// allocateAs allocates with the given long-term credential.
func allocateAs(t *testing.T, server netip.AddrPort, username, password string) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server.String(), TURNServerAddr: server.String(),
		Username: username, Password: password, Conn: conn, RTO: 200 * time.Millisecond, LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relayed.Close() })
}

// A drain that times out with allocations live cuts calls: the exit code
// says so (3) and the log says how many. It used to exit 0.
func TestIncompleteDrainExitsThree(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	srv := startTestRelay(t, log, nil)
	allocate(t, srv.ListenAddrs()[0])
	cfg := relay.DefaultConfig()
	cfg.DrainTimeout = 300 * time.Millisecond
	if code := stopRelay(srv, cfg, make(chan os.Signal), log); code != exitDrainIncomplete {
		t.Fatalf("stopRelay with a live allocation past drain_timeout = %d, want %d", code, exitDrainIncomplete)
	}
	if !strings.Contains(logs.String(), `"allocations_cut":1`) {
		t.Errorf("log does not say how many allocations were cut:\n%s", logs.String())
	}
}

// runRelayBounded runs the relay command and fails the test instead of
// hanging when it starts serving (it then waits for a signal).
func runRelayBounded(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() { done <- runRelay(args, &bytes.Buffer{}, &stderr) }()
	select {
	case code := <-done:
		return code, stderr.String()
	case <-time.After(10 * time.Second):
		t.Fatalf("isthmus relay %v did not exit (it serves):\n%s", args, stderr.String())
		return 0, ""
	}
}

// One exit-code convention: 2 for a configuration the relay refuses (a
// listen address this host does not have is named as listen, not as the
// relay_ips it was derived into), 1 for the running host failing (a port
// in use, the metrics port like the TURN port).
func TestRelayExitCodes(t *testing.T) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	broken := relayTestConfigFile(t, "listen: [127.0.0.1:0\nusers: [\"a:b\"]\n")
	for _, c := range []struct {
		name     string
		args     []string
		code     int
		mentions string
	}{
		{"listen port in use", []string{"--listen", udp.LocalAddr().String(), "--user", "a:b"}, exitRuntime, "listen:"},
		{"metrics port in use", []string{"--listen", "127.0.0.1:0", "--user", "a:b", "--metrics", tcp.Addr().String()}, exitRuntime, "metrics:"},
		{"listen IP not on this host", []string{"--listen", "[::2]:0", "--user", "a:b"}, exitConfig, "config: listen: ::2"},
		{"listen IP not on this host, relay IPs set", []string{"--listen", "127.0.0.1:0", "--listen", "[::2]:0", "--relay-ip", "127.0.0.1", "--user", "a:b"}, exitConfig, "config: listen: [::2]:0"},
		{"broken YAML", []string{"--config", broken}, exitConfig, "config"},
	} {
		code, out := runRelayBounded(t, c.args...)
		if code != c.code || !strings.Contains(out, c.mentions) {
			t.Errorf("%s: exit %d, want %d mentioning %q; stderr:\n%s", c.name, code, c.code, c.mentions, out)
		}
		if strings.Contains(out, "relay_ips") {
			t.Errorf("%s: error names relay_ips:\n%s", c.name, out)
		}
	}
}

// A SIGHUP with a file that does not parse applies nothing, and the log
// says the running configuration stays.
func TestReloadBrokenYAMLSaysOldConfigStays(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	srv := startTestRelay(t, log, nil)
	p := relayTestConfigFile(t, "users: [alice:secret\n")
	var stderr bytes.Buffer
	fs, f := newRelayFlagSet(&stderr)
	if err := fs.Parse([]string{"--config", p}); err != nil {
		t.Fatal(err)
	}
	reloadRelay(srv, f, fs, "", nil, log)
	if !strings.Contains(logs.String(), "running configuration stays in effect") {
		t.Errorf("reload of broken YAML: log does not say the old configuration stays:\n%s", logs.String())
	}
}
