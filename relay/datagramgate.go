//go:build linux

package relay

import (
	"net"
	"sync"

	"github.com/pion/stun/v4"
)

// gatedPacketConn is a UDP listener as pion sees it: the gate runs in the
// read path of pion's per-socket read loop.
type gatedPacketConn struct {
	net.PacketConn
	gate *gate
	msg  stun.Message // scratch; only pion's single read loop calls ReadFrom
	done func()       // called once when the read loop ends
	once sync.Once
}

func (c *gatedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			c.once.Do(c.done)
			return n, addr, err
		}
		v := c.gate.inspect(b[:n], fiveTuple{proto: "udp", src: addr, dst: c.PacketConn.LocalAddr(), pc: c.PacketConn}, &c.msg)
		switch {
		case v.drop, v.consumed:
			continue
		case v.reply != nil:
			_, _ = c.PacketConn.WriteTo(v.reply, addr)
			continue
		case v.rewrite != nil && len(v.rewrite) <= len(b):
			return copy(b, v.rewrite), addr, nil
		}
		return n, addr, nil
	}
}

func (c *gatedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	out := c.gate.noteResponse(b, fiveTuple{proto: "udp", src: addr, dst: c.PacketConn.LocalAddr()})
	if _, err := c.PacketConn.WriteTo(out, addr); err != nil {
		return 0, err
	}
	return len(b), nil
}
