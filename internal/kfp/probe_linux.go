package kfp

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Capability bits (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capBPF      = 39
)

// helpersUsed are the helpers the program calls, all in sched_cls.
var helpersUsed = []asm.BuiltinFunc{
	asm.FnMapLookupElem, asm.FnSkbPullData, asm.FnCsumUpdate, asm.FnCsumDiff,
	asm.FnFibLookup, asm.FnSkbChangeProto, asm.FnSkbAdjustRoom,
	asm.FnRedirect, asm.FnRedirectNeigh,
}

// Probe reports whether the kernel fast path can run in this process, and
// if not, why (one line, for a log message or a start-up error). It checks
// the capabilities (CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN), the
// program type and every helper, loads the real program through the
// verifier (and frees it), and whether TCX is there; without TCX it still
// reports ok, and Attach uses a clsact qdisc instead. It attaches nothing.
func Probe() (ok bool, why string) {
	if err := probeCaps(); err != nil {
		return false, err.Error()
	}
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		return false, fmt.Sprintf("kfp: no sched_cls BPF programs: %v", err)
	}
	for _, h := range helpersUsed {
		if err := features.HaveProgramHelper(ebpf.SchedCLS, h); err != nil {
			return false, fmt.Sprintf("kfp: helper %s unavailable in sched_cls: %v", h, err)
		}
	}
	t, err := New(Config{MaxAllocations: 1, MaxChannels: 1})
	if err != nil {
		return false, err.Error()
	}
	t.Close()
	if err := probeTCX(); err != nil {
		return true, "kfp: ok, without TCX (kernel before 6.6): clsact filters will be used (" + err.Error() + ")"
	}
	return true, "kfp: ok (tcx)"
}

func probeCaps() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("kfp: read capabilities: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, found := strings.CutPrefix(line, "CapEff:")
		if !found {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("kfp: capabilities %q: %w", hex, err)
		}
		has := func(c uint) bool { return caps&(1<<c) != 0 }
		if has(capSysAdmin) || (has(capBPF) && has(capNetAdmin)) {
			return nil
		}
		return fmt.Errorf("kfp: needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN); effective set is %#x", caps)
	}
	return errors.New("kfp: no CapEff line in /proc/self/status")
}

// probeTCX asks for a TCX link on an interface index that cannot exist:
// ENODEV means the kernel knows TCX, ErrNotSupported that it does not.
func probeTCX() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SchedCLS, License: progLicense,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, tcActOK), asm.Return()},
	})
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return nil
	}
	if errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}
