package relay

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// A TCP connection that sends nothing, or only requests without valid
// credentials, is closed once the stream auth timeout passes (pion would
// keep it, a goroutine and its buffers, for as long as the client likes);
// a connection that authenticated stays open past that point.
func TestStreamWithoutAuthIsClosed(t *testing.T) {
	s := startTestServer(t, nil)
	s.gate.streamAuthTimeout.Store(int64(300 * time.Millisecond))
	server := s.udpAddr(t, netaddr.IPv4) // TCP listens on the same address
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", server.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	// Authenticated first, so its own deadline passes before the others'.
	authed := turnClientOver(t, turn.NewSTUNConn(dial()), server.String())
	if _, err := authed.Allocate(); err != nil {
		t.Fatalf("allocate over TCP: %v", err)
	}

	idle := dial()
	binding := dial()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := binding.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	before := counterValue(t, s.metrics.authFailures.WithLabelValues(authStreamTimeout))
	for name, c := range map[string]net.Conn{"idle": idle, "binding only": binding} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c) // the Binding response, then EOF
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s connection still open after 10 s", name)
		}
	}
	if got := counterValue(t, s.metrics.authFailures.WithLabelValues(authStreamTimeout)) - before; got != 2 {
		t.Errorf("auth_failures{reason=%q} rose by %v, want 2", authStreamTimeout, got)
	}
	// The authenticated connection outlived its auth deadline.
	if err := authed.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
		t.Fatalf("authenticated TCP connection closed: %v", err)
	}
}

func turnClientOver(t *testing.T, conn net.PacketConn, server string) *turn.Client {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: server,
		Username:       "alice",
		Password:       "secret",
		Conn:           conn,
		LoggerFactory:  &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled},
		RTO:            200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	return c
}
