//go:build linux

package gather

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/internal/testcert"
	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/relay"
)

// testCert writes a self-signed certificate for 127.0.0.1 and ::1 and
// returns the PEM paths and a client config trusting it.
func testCert(t *testing.T) (certFile, keyFile string, client *tls.Config) {
	t.Helper()
	certFile, keyFile, pool := testcert.Loopback(t)
	return certFile, keyFile, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestTURNOverTLS: an IPv6-only agent reaches the TURN server with TLS
// over IPv6 ("turns:"), gets an IPv4 relayed candidate whose relay
// protocol is "tls", and calls an IPv4-only agent through it.
func TestTURNOverTLS(t *testing.T) {
	certFile, keyFile, clientTLS := testCert(t)
	servers := map[string]func(t *testing.T) string{
		"coturn": func(t *testing.T) string {
			var tlsPort int
			startCoturnWith(t, func(port int) string {
				tlsPort = freeDualPort(t)
				return fmt.Sprintf("tls-listening-port=%d\ncert=%s\npkey=%s\n", tlsPort, certFile, keyFile)
			})
			return fmt.Sprintf("turns:[::1]:%d?transport=tcp", tlsPort)
		},
		"isthmus": func(t *testing.T) string {
			port := freeDualPort(t)
			cfg := relay.DefaultConfig()
			cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
			cfg.TLSListen = []string{fmt.Sprintf("[::1]:%d", port)}
			cfg.TLSCert, cfg.TLSKey = certFile, keyFile
			cfg.RelayIPs = []string{"127.0.0.1", "::1"}
			cfg.Realm = testRealm
			cfg.Users = []string{testUser + ":" + testPass}
			cfg.AllowLoopbackPeers = true
			srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			if err != nil {
				t.Fatalf("relay.New: %v", err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			return fmt.Sprintf("turns:[::1]:%d?transport=tcp", port)
		},
	}
	for _, name := range []string{"coturn", "isthmus"} {
		t.Run(name, func(t *testing.T) {
			url := servers[name](t)
			off := newTestAgent(t, Config{
				HostAddrs: []netip.Addr{lo6}, Families: []netaddr.Family{netaddr.IPv6},
				RelayFamilies: []netaddr.Family{netaddr.IPv4},
				TURN:          []string{url}, Username: testUser, Password: testPass,
				TLSConfig: clientTLS, Timeout: 3 * time.Second,
			})
			cands, err := off.Gather(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var relayed *ice.CandidateRelay
			for _, c := range cands {
				if r, ok := c.(*ice.CandidateRelay); ok {
					relayed = r
				}
			}
			if relayed == nil || candFamily(t, relayed) != netaddr.IPv4 || relayed.RelayProtocol() != "tls" {
				t.Fatalf("want an IPv4 relayed candidate over TLS, got %v (stats %+v)", cands, off.Stats())
			}
			ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}, Families: []netaddr.Family{netaddr.IPv4}})
			om, am := connectPair(t, off, ans)
			exchangeRTP(t, om, am)
			if p := om.Selected(); p.LocalType != "relay" || p.RelayProtocol != "tls" || p.LocalFamily != netaddr.IPv4 {
				t.Errorf("path %s %+v", p, p)
			}
		})
	}
}
