//go:build !linux

package dataplane

import (
	"net"
	"net/netip"
)

type sysHeaders struct{}

func (h *sysHeaders) init(int) {}

type fdBatch struct {
	fd      int
	v6      bool
	recvTOS bool
	sendTOS bool
}

func (b *fdBatch) ReadBatch(*Msgs, int, int) (int, error)  { return 0, ErrUnsupported }
func (b *fdBatch) WriteBatch(*Msgs, int, int) (int, error) { return 0, ErrUnsupported }

type command struct {
	kind int
	c    *Conn
	done chan struct{}
}

const (
	cmdAdd = iota
	cmdRemove
	cmdBarrier
)

type epollState struct{ exited chan struct{} }

func (w *worker) initEpollState()                                             { w.exited = make(chan struct{}) }
func (w *worker) send(command) bool                                           { return false }
func (w *worker) stop() error                                                 { return nil }
func (p *Plane) startWorkers() error                                          { return ErrUnsupported }
func closeFD(int)                                                             {}
func (w *worker) sendRaw(*Conn, *Message, []byte, netip.AddrPort, uint8) bool { return false }
func (w *worker) flushRaws()                                                  {}
func sendTo(int, []byte, netip.AddrPort, bool, int) error                     { return ErrUnsupported }
func adoptFD(net.PacketConn) (int, netip.AddrPort, bool, error) {
	return -1, netip.AddrPort{}, false, ErrUnsupported
}

// RawSending reports whether the workers send on raw sockets: never here.
func (p *Plane) RawSending() bool { return false }
