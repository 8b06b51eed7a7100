package kfp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The legacy attach route for kernels without TCX (before 6.6): a clsact
// qdisc and a cls_bpf filter in direct-action mode, the rtnetlink messages
// `tc qdisc add dev IF clsact` and `tc filter add dev IF ingress pref P
// handle 1 bpf da fd N name isthmus_kfp` send. cilium/ebpf does not attach
// cls_bpf and x/sys has no TC messages, so this builds the few it needs
// (include/uapi/linux/rtnetlink.h, pkt_sched.h, pkt_cls.h).
const (
	tcHClsact       = 0xFFFFFFF1 // TC_H_CLSACT: the clsact qdisc's parent
	tcHClsactHandle = 0xFFFF0000 // TC_H_MAKE(TC_H_CLSACT, 0)
	tcHMinIngress   = 0xFFF2     // TC_H_MIN_INGRESS
	tcaKind         = 1          // TCA_KIND
	tcaOptions      = 2          // TCA_OPTIONS
	tcaBPFFD        = 6          // TCA_BPF_FD
	tcaBPFName      = 7          // TCA_BPF_NAME
	tcaBPFFlags     = 8          // TCA_BPF_FLAGS
	tcaBPFActDirect = 1          // TCA_BPF_FLAG_ACT_DIRECT: the program's return is the action
	nlaFNested      = 0x8000     // NLA_F_NESTED
	ethPAll         = 0x0003     // ETH_P_ALL: the filter sees every protocol
	tcmsgLen        = 20         // sizeof(struct tcmsg)
	// clsactPref is our filter's preference (priority): fixed, so a
	// restarted relay finds and replaces a leftover of a crashed one.
	clsactPref   = 0x4B46 // "KF"
	clsactHandle = 1
	clsactName   = "isthmus_kfp"
)

var nlSeq atomic.Uint32

// nlSocket opens a route netlink socket. It belongs to the calling
// thread's network namespace for its whole life, which is why an
// attachment keeps its socket: Close may run on any thread, and an
// interface index means nothing outside its namespace.
func nlSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink timeout: %w", err)
	}
	return fd, nil
}

// clsactAttach ensures the clsact qdisc on ifindex, removes a leftover
// filter of ours and adds the program as a direct-action ingress filter.
// It returns the netlink socket to detach with.
func clsactAttach(ifindex, progFD int) (int, error) {
	fd, err := nlSocket()
	if err != nil {
		return -1, err
	}
	if err := clsactAdd(fd, ifindex, progFD); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func clsactAdd(fd, ifindex, progFD int) error {
	qd := tcmsg(ifindex, tcHClsactHandle, tcHClsact, 0)
	qd = appendAttr(qd, tcaKind, cstring("clsact"))
	if err := rtnetlink(fd, unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL, qd); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("clsact qdisc: %w", err)
	}
	if err := clsactDelete(fd, ifindex); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove leftover filter: %w", err)
	}
	var opts []byte
	opts = appendAttr(opts, tcaBPFFD, binary.NativeEndian.AppendUint32(nil, uint32(progFD)))
	opts = appendAttr(opts, tcaBPFName, cstring(clsactName))
	opts = appendAttr(opts, tcaBPFFlags, binary.NativeEndian.AppendUint32(nil, tcaBPFActDirect))
	f := filterMsg(ifindex)
	f = appendAttr(f, tcaKind, cstring("bpf"))
	f = appendAttr(f, tcaOptions|nlaFNested, opts)
	if err := rtnetlink(fd, unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL, f); err != nil {
		return fmt.Errorf("bpf filter: %w", err)
	}
	return nil
}

// clsactDetach removes our filter (the qdisc stays: other filters may
// hang off it) and closes the attachment's netlink socket.
func clsactDetach(fd, ifindex int) error {
	defer unix.Close(fd)
	err := clsactDelete(fd, ifindex)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("filter already gone: %w", err)
	}
	return err
}

func clsactDelete(fd, ifindex int) error {
	f := appendAttr(filterMsg(ifindex), tcaKind, cstring("bpf"))
	err := rtnetlink(fd, unix.RTM_DELTFILTER, 0, f)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
		// EINVAL: no filter chain at that preference yet.
		return unix.ENOENT
	}
	return err
}

func filterMsg(ifindex int) []byte {
	var proto [2]byte
	binary.BigEndian.PutUint16(proto[:], ethPAll)
	info := uint32(clsactPref)<<16 | uint32(binary.NativeEndian.Uint16(proto[:]))
	return tcmsg(ifindex, clsactHandle, tcHClsact&0xFFFF0000|tcHMinIngress, info)
}

func tcmsg(ifindex int, handle, parent, info uint32) []byte {
	b := make([]byte, tcmsgLen)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(int32(ifindex)))
	binary.NativeEndian.PutUint32(b[8:], handle)
	binary.NativeEndian.PutUint32(b[12:], parent)
	binary.NativeEndian.PutUint32(b[16:], info)
	return b
}

func cstring(s string) []byte { return append([]byte(s), 0) }

// appendAttr appends a netlink attribute (struct nlattr, 4-byte aligned).
func appendAttr(b []byte, typ uint16, payload []byte) []byte {
	n := unix.SizeofRtAttr + len(payload)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// rtnetlink sends one request on fd and waits for its acknowledgement.
func rtnetlink(fd int, typ uint16, flags int, body []byte) error {
	seq := nlSeq.Add(1)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags))
	binary.NativeEndian.PutUint32(msg[8:], seq)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("netlink parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("netlink: short error message")
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}
