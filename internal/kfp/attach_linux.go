package kfp

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

var errE2BIG = unix.E2BIG

// AttachMode says how the program hangs off an interface.
type AttachMode int

const (
	// AttachTCX is a TCX ingress link (kernel 6.6+). The link lives as
	// long as the process's descriptor: when the process exits or
	// crashes, the kernel detaches it. Nothing is left behind.
	AttachTCX AttachMode = iota + 1
	// AttachClsact is the legacy route: a clsact qdisc and a cls_bpf
	// filter in direct-action mode, set up over rtnetlink. A filter
	// outlives the process, so Close removes it, and Attach first removes
	// a leftover of ours (same preference and name) from a process that
	// died without closing.
	AttachClsact
)

func (m AttachMode) String() string {
	switch m {
	case AttachTCX:
		return "tcx"
	case AttachClsact:
		return "clsact"
	}
	return "none"
}

type attachment struct {
	ifindex int
	name    string
	mode    AttachMode
	link    link.Link // AttachTCX
	nlfd    int       // AttachClsact: netlink socket in the interface's namespace
}

// Attach hangs the program on ifname's ingress: TCX where the kernel has
// it, else a clsact qdisc with a cls_bpf filter. It reports the mode used.
func (t *Table) Attach(ifname string) (AttachMode, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("kfp: attach %s: %w", ifname, err)
	}
	return t.AttachIndex(ifi.Index, ifname)
}

// AttachIndex is Attach by interface index; name is for messages.
func (t *Table) AttachIndex(ifindex int, name string) (AttachMode, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrClosed
	}
	for _, a := range t.attached {
		if a.ifindex == ifindex {
			return a.mode, nil
		}
	}
	if !t.clsact {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: t.prog, Attach: ebpf.AttachTCXIngress})
		if err == nil {
			t.attached = append(t.attached, attachment{ifindex: ifindex, name: name, mode: AttachTCX, link: l})
			return AttachTCX, nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return 0, fmt.Errorf("kfp: attach %s (tcx): %w", name, err)
		}
	}
	fd, err := clsactAttach(ifindex, t.prog.FD())
	if err != nil {
		return 0, fmt.Errorf("kfp: attach %s (clsact): %w", name, err)
	}
	t.attached = append(t.attached, attachment{ifindex: ifindex, name: name, mode: AttachClsact, nlfd: fd})
	return AttachClsact, nil
}

// Attachments lists the interfaces the program is attached to.
func (t *Table) Attachments() map[string]AttachMode {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]AttachMode, len(t.attached))
	for _, a := range t.attached {
		m[a.name] = a.mode
	}
	return m
}

func (t *Table) detachAllLocked() error {
	var first error
	for _, a := range t.attached {
		var err error
		switch a.mode {
		case AttachTCX:
			err = a.link.Close()
		case AttachClsact:
			err = clsactDetach(a.nlfd, a.ifindex)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("kfp: detach %s: %w", a.name, err)
		}
	}
	t.attached = nil
	return first
}
