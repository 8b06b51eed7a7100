//go:build linux

package gather

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

const (
	coturnBin   = "/usr/bin/turnserver"
	testUser    = "alice"
	testPass    = "secret"
	testRealm   = "isthmus.test"
	serverReady = 10 * time.Second
)

// turnServer is a TURN server a test runs on loopback.
type turnServer struct {
	port4, port6 int // UDP and TCP, on 127.0.0.1 and ::1
}

func (s turnServer) url(host, transport string) string {
	port := s.port4
	if host == "::1" {
		port = s.port6
	}
	u := fmt.Sprintf("turn:%s", net.JoinHostPort(host, fmt.Sprint(port)))
	if transport != "" {
		u += "?transport=" + transport
	}
	return u
}

// freeDualPort returns a port free for UDP and TCP on 127.0.0.1 and ::1
// right now (the server binds it a moment later; startCoturn retries).
func freeDualPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		_ = u.Close()
		ok := true
		for _, nw := range []string{"udp6", "tcp4", "tcp6"} {
			host := "127.0.0.1"
			if nw[3] == '6' {
				host = "::1"
			}
			addr := net.JoinHostPort(host, fmt.Sprint(port))
			if nw[0] == 'u' {
				c, err := net.ListenPacket(nw, addr)
				if err != nil {
					ok = false
					break
				}
				_ = c.Close()
			} else {
				l, err := net.Listen(nw, addr)
				if err != nil {
					ok = false
					break
				}
				_ = l.Close()
			}
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// syncBuffer collects a subprocess's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// forEachTURN runs f against coturn and against our relay, each on
// loopback, as subtests "coturn" and "isthmus".
func forEachTURN(t *testing.T, f func(t *testing.T, srv turnServer)) {
	t.Run("coturn", func(t *testing.T) { f(t, startCoturn(t)) })
	t.Run("isthmus", func(t *testing.T) { f(t, startOurRelay(t)) })
}

// startCoturn runs coturn's turnserver on loopback with long-term
// credentials testUser/testPass, relay addresses of both families and
// loopback peers allowed, and stops it at cleanup. It skips the test when
// coturn is not installed.
func startCoturn(t *testing.T) turnServer {
	t.Helper()
	return startCoturnWith(t, func(int) string { return "no-tls\n" })
}

// startCoturnWith is startCoturn with extra configuration lines; extra
// gets the chosen listening port and must say "no-tls" or configure TLS.
func startCoturnWith(t *testing.T, extra func(port int) string) turnServer {
	t.Helper()
	if _, err := os.Stat(coturnBin); err != nil {
		t.Skipf("coturn not installed (%s): %v", coturnBin, err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		dir := t.TempDir()
		port := freeDualPort(t)
		conf := fmt.Sprintf(`listening-ip=127.0.0.1
listening-ip=::1
relay-ip=127.0.0.1
relay-ip=::1
listening-port=%d
lt-cred-mech
user=%s:%s
realm=%s
allow-loopback-peers
no-dtls
no-cli
no-multicast-peers
pidfile=%s
userdb=%s
log-file=stdout
simple-log
`, port, testUser, testPass, testRealm, filepath.Join(dir, "turnserver.pid"), filepath.Join(dir, "turndb")) + extra(port)
		confPath := filepath.Join(dir, "turnserver.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(coturnBin, "-c", confPath)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start coturn: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-done
		}
		srv := netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(port))
		if waitSTUN(srv, serverReady, done) && waitSTUN(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), serverReady, done) {
			t.Cleanup(stop)
			return turnServer{port4: port, port6: port}
		}
		stop()
		t.Logf("coturn on port %d did not come up (attempt %d):\n%s", port, attempt+1, out.String())
	}
	t.Fatal("coturn did not start")
	return turnServer{}
}

// waitSTUN sends Binding requests to srv until one is answered, the
// process exits (done) or d passes.
func waitSTUN(srv netip.AddrPort, d time.Duration, done <-chan struct{}) bool {
	conn, err := net.ListenUDP(udpNetwork(familyOfAP(srv)), nil)
	if err != nil {
		return false
	}
	defer conn.Close()
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	deadline := time.Now().Add(d)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		_, _ = conn.WriteToUDPAddrPort(req.Raw, srv)
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := conn.ReadFromUDPAddrPort(buf); err == nil && stun.IsMessage(buf[:n]) {
			return true
		}
	}
	return false
}
