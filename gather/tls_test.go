//go:build linux

package gather

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/internal/freeport"
	"github.com/isthmusrelay/isthmus/internal/testcert"
	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/relay"
	"github.com/isthmusrelay/isthmus/relay/relaytest"
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
		"isthmus": func(t *testing.T) string {
			port, err := freeport.DualStack()
			if err != nil {
				t.Fatal(err)
			}
			relaytest.Start(t, func(cfg *relay.Config) {
				cfg.TLSListen = []string{fmt.Sprintf("[::1]:%d", port)}
				cfg.TLSCert, cfg.TLSKey = certFile, keyFile
			})
			return fmt.Sprintf("turns:[::1]:%d?transport=tcp", port)
		},
	}
	names := []string{"isthmus"}
	if startCoturnWith != nil {
		names = []string{"coturn", "isthmus"}
		servers["coturn"] = func(t *testing.T) string {
			tlsPort, err := freeport.DualStack()
			if err != nil {
				t.Fatal(err)
			}
			startCoturnWith(t, tlsPort, certFile, keyFile)
			return fmt.Sprintf("turns:[::1]:%d?transport=tcp", tlsPort)
		}
	}
	for _, name := range names {
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
