//go:build e2e

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/relay"
)

// A credential minted by isthmus cred authenticates at coturn's
// turnserver (use-auth-secret, static-auth-secret) and at our relay with
// the same secret, each through coturn's turnutils_uclient; a password
// for another secret is refused by both. That is the interop promise of
// the REST scheme: one minting script for a mixed fleet.
func TestCredInteropCoturn(t *testing.T) {
	for _, bin := range []string{"turnserver", "turnutils_uclient"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install -y coturn): %v", bin, err)
		}
	}
	const secret = "fleet-shared-s3cret"
	mint := func(secret string) (user, pass string) {
		var out, errOut bytes.Buffer
		if code := runCred([]string{"--secret", secret, "--user", "alice", "--ttl", "10m"}, &out, &errOut); code != 0 {
			t.Fatalf("cred = %d: %s", code, errOut.String())
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if v, ok := strings.CutPrefix(l, "username: "); ok {
				user = v
			} else if v, ok := strings.CutPrefix(l, "password: "); ok {
				pass = v
			}
		}
		return user, pass
	}
	user, pass := mint(secret)
	_, wrongPass := mint("another-secret")

	coturn := startCoturn(t, secret)
	ours := startTestRelay(t, slog.New(slog.DiscardHandler), func(c *relay.Config) {
		c.Users = nil
		c.AuthSecrets = []string{secret}
		c.AllowLoopbackPeers = true // uclient -y relays between its two clients on 127.0.0.1
	}).ListenAddrs()[0].Port()

	for _, srv := range []struct {
		name string
		port int
	}{{"coturn turnserver", coturn}, {"isthmus relay", int(ours)}} {
		if out, err := uclient(srv.port, user, pass); err != nil || !strings.Contains(out, "tot_recv_msgs=") {
			t.Errorf("%s refused the isthmus cred credential %s: %v\n%s", srv.name, user, err, out)
		} else {
			t.Logf("%s: uclient -u %s -w <minted> -y: allocated and relayed", srv.name, user)
		}
		if out, err := uclient(srv.port, user, wrongPass); err == nil && strings.Contains(out, "tot_recv_msgs=") {
			t.Errorf("%s accepted a password minted with another secret:\n%s", srv.name, out)
		}
	}
}

// uclient runs turnutils_uclient -y (two clients relaying to each other,
// no peer needed) with a long-term credential, bounded in time.
func uclient(port int, user, pass string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "turnutils_uclient", "-y", "-n", "5", "-m", "1", "-p", strconv.Itoa(port),
		"-u", user, "-w", pass, "127.0.0.1")
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startCoturn runs turnserver on loopback with use-auth-secret, no CLI, no
// TLS, and returns its port; it is killed when the test ends.
func startCoturn(t *testing.T, secret string) int {
	t.Helper()
	dir := t.TempDir()
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freeUDPTCPPort()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "turnserver", "-n", "--no-cli", "--use-auth-secret", "--static-auth-secret="+secret,
			"--realm=isthmus", "-L", "127.0.0.1", "--listening-port", strconv.Itoa(port), "--min-port", "40000", "--max-port", "40200",
			"--allow-loopback-peers", "--no-tls", "--no-dtls", "--log-file", "stdout", "--simple-log",
			"--pidfile", filepath.Join(dir, "pid"), "--db", filepath.Join(dir, "turndb"))
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start turnserver: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { cancel(); <-exited }
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond); err == nil {
				_ = c.Close()
				t.Cleanup(stop)
				return port
			}
			select {
			case <-exited:
				deadline = time.Now()
			case <-time.After(100 * time.Millisecond):
			}
		}
		stop()
		t.Logf("turnserver on port %d did not come up (attempt %d): %s", port, attempt+1, out.String())
	}
	t.Fatal("turnserver never came up")
	return 0
}

// freeUDPTCPPort returns a port that was free on 127.0.0.1 for UDP and TCP.
func freeUDPTCPPort() (int, error) {
	for i := 0; i < 20; i++ {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		tl, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		_ = u.Close()
		if err == nil {
			_ = tl.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free for both UDP and TCP")
}
