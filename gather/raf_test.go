package gather

import (
	"net"
	"testing"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// capturePC records what is written to it.
type capturePC struct {
	net.PacketConn
	sent [][]byte
}

func (c *capturePC) WriteTo(p []byte, _ net.Addr) (int, error) {
	c.sent = append(c.sent, append([]byte(nil), p...))
	return len(p), nil
}

// TestRAFConnRewrite: RFC 6156 §4.1.1 REQUESTED-ADDRESS-FAMILY is added to
// Allocate requests that lack it, with MESSAGE-INTEGRITY and FINGERPRINT
// recomputed so the server still authenticates the request.
func TestRAFConnRewrite(t *testing.T) {
	const user, realm, pass = "alice", "isthmus.test", "secret"
	integrity := stun.NewLongTermIntegrity(user, realm, pass)
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	reqTransport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	build := func(t *testing.T, setters ...stun.Setter) *stun.Message {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		name      string
		family    netaddr.Family
		msg       func(t *testing.T) *stun.Message
		rewritten bool
		wantFam   byte // 0x01 IPv4, 0x02 IPv6
		auth      bool
	}{
		{"unauthenticated Allocate gets IPv4", netaddr.IPv4, func(t *testing.T) *stun.Message {
			return build(t, allocate, reqTransport, stun.Fingerprint)
		}, true, 0x01, false},
		{"authenticated Allocate gets IPv4, integrity still valid", netaddr.IPv4, func(t *testing.T) *stun.Message {
			return build(t, allocate, reqTransport, stun.NewUsername(user), stun.NewRealm(realm),
				stun.NewNonce("n0nce"), integrity, stun.Fingerprint)
		}, true, 0x01, true},
		{"IPv6 already present is left alone", netaddr.IPv6, func(t *testing.T) *stun.Message {
			return build(t, allocate, reqTransport, turn.RequestedAddressFamilyIPv6, stun.Fingerprint)
		}, false, 0x02, false},
		{"RFC 6156: not with RESERVATION-TOKEN", netaddr.IPv4, func(t *testing.T) *stun.Message {
			return build(t, allocate, reqTransport, stun.RawAttribute{Type: stun.AttrReservationToken, Value: make([]byte, 8)}, stun.Fingerprint)
		}, false, 0, false},
		{"Refresh is not touched", netaddr.IPv4, func(t *testing.T) *stun.Message {
			return build(t, stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.Fingerprint)
		}, false, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.msg(t)
			pc := &capturePC{}
			c := newRAFConn(pc, tc.family, user, pass)
			if _, err := c.WriteTo(in.Raw, &net.UDPAddr{}); err != nil {
				t.Fatal(err)
			}
			if got := c.rewritten.Load() == 1; got != tc.rewritten {
				t.Fatalf("rewritten=%t, want %t", got, tc.rewritten)
			}
			out := &stun.Message{Raw: pc.sent[0]}
			if err := out.Decode(); err != nil {
				t.Fatal(err)
			}
			if out.TransactionID != in.TransactionID {
				t.Error("transaction ID changed")
			}
			v, err := out.Get(stun.AttrRequestedAddressFamily)
			switch {
			case tc.wantFam == 0 && err == nil:
				t.Errorf("REQUESTED-ADDRESS-FAMILY present: %x", v)
			case tc.wantFam != 0 && (err != nil || len(v) != 4 || v[0] != tc.wantFam):
				t.Errorf("REQUESTED-ADDRESS-FAMILY = %x, %v; want family %#x", v, err, tc.wantFam)
			}
			if err := stun.Fingerprint.Check(out); err != nil {
				t.Errorf("FINGERPRINT: %v", err)
			}
			if tc.auth {
				if err := integrity.Check(out); err != nil {
					t.Errorf("MESSAGE-INTEGRITY: %v", err)
				}
			}
		})
	}
}
