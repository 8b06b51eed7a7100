//go:build linux

package gather

import (
	"fmt"
	"net"
	"testing"

	"github.com/isthmusrelay/isthmus/relay/relaytest"
)

// The credentials every TURN server of these tests accepts.
const (
	testUser  = relaytest.User
	testPass  = relaytest.Password
	testRealm = relaytest.Realm
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

// startCoturnWith runs coturn's turnserver on loopback with the test
// credentials, relay addresses of both families and loopback peers allowed,
// plus extra configuration lines, and stops it at cleanup. Only the e2e
// build (coturn_e2e_test.go) sets it; without it the coturn halves of the
// tests below do not run.
var startCoturnWith func(t *testing.T, tlsPort uint16, certFile, keyFile string) turnServer

// forEachTURN runs f against coturn (e2e build only) and against our
// relay, each on loopback, as subtests "coturn" and "isthmus".
func forEachTURN(t *testing.T, f func(t *testing.T, srv turnServer)) {
	if startCoturnWith != nil {
		t.Run("coturn", func(t *testing.T) { f(t, startCoturnWith(t, 0, "", "")) })
	}
	t.Run("isthmus", func(t *testing.T) { f(t, startOurRelay(t)) })
}

// startOurRelay runs the Isthmus relay in-process on loopback (ephemeral
// ports, relay addresses of both families, loopback peers allowed) and
// closes it at cleanup.
func startOurRelay(t *testing.T) turnServer {
	t.Helper()
	r := relaytest.Start(t, nil)
	return turnServer{port4: int(r.V4.Port()), port6: int(r.V6.Port())}
}
