//go:build linux

package dataplane_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
)

// Example relays one ChannelData message from a client to a peer. In the
// relay, pion/turn's server plays the events below (Allocate,
// CreatePermission, ChannelBind); here the example plays them itself.
func Example() {
	plane, err := dataplane.New(dataplane.Config{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer plane.Close()

	// The relay's listener and one allocation's relay socket, adopted.
	lnSock, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	relaySock, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	ln, err := plane.Listener(lnSock) // give ln to pion's PacketConnConfig
	if err != nil {
		fmt.Println(err)
		return
	}
	relay, err := plane.Relay(relaySock, netip.AddrPort{}) // return relay from the RelayAddressGenerator
	if err != nil {
		fmt.Println(err)
		return
	}

	client, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer client.Close()
	peer, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer peer.Close()

	// What pion/turn reports through the chained EventHandler.
	events := plane.EventHandler(turn.EventHandler{})
	src, dst := client.LocalAddr(), ln.LocalAddr()
	events.OnAllocationCreated(src, dst, "UDP", "alice", "example.org", relay.LocalAddr(), 0)
	events.OnPermissionCreated(src, dst, "UDP", "alice", "example.org", relay.LocalAddr(), net.IPv4(127, 0, 0, 1))
	events.OnChannelCreated(src, dst, "UDP", "alice", "example.org", relay.LocalAddr(), peer.LocalAddr(), 0x4000)

	// ChannelData (RFC 8656 section 12.4): channel, length, data.
	msg := binary.BigEndian.AppendUint16(nil, 0x4000)
	msg = binary.BigEndian.AppendUint16(msg, 5)
	msg = append(msg, "hello"...)
	if _, err := client.WriteTo(msg, ln.LocalAddr()); err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]byte, 100)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDP(buf)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("peer got %q from the relayed address: %v\n", buf[:n], from.String() == relay.LocalAddr().String())
	// Output: peer got "hello" from the relayed address: true
}
