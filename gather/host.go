package gather

import (
	"bufio"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// Linux IPv6 address flags (linux/if_addr.h) as /proc/net/if_inet6 shows
// them. An address with any of these is not offered as a host candidate:
// a temporary (privacy) address changes under the call, a deprecated one
// is on its way out, a tentative or DAD-failed one cannot be used yet.
const (
	ifaFlagTemporary  = 0x01
	ifaFlagDADFailed  = 0x08
	ifaFlagDeprecated = 0x20
	ifaFlagTentative  = 0x40

	ifaFlagsSkipped = ifaFlagTemporary | ifaFlagDADFailed | ifaFlagDeprecated | ifaFlagTentative
)

// procIfInet6 lists where Linux shows IPv6 addresses with their flags, per
// network namespace: the calling thread's first (what net.Interfaces sees
// too), then the process's.
var procIfInet6 = []string{"/proc/thread-self/net/if_inet6", "/proc/net/if_inet6"}

// hostAddrs returns the addresses to offer as host candidates: cfg.HostAddrs
// when set, else every usable address of the host's up, non-loopback
// interfaces (optionally only cfg.Interfaces), in families fams.
func hostAddrs(cfg *Config, fams []netaddr.Family) ([]netip.Addr, error) {
	keep := func(a netip.Addr) bool { return slices.Contains(fams, netaddr.FamilyOf(a)) }
	var out []netip.Addr
	if len(cfg.HostAddrs) > 0 {
		for _, a := range cfg.HostAddrs {
			a = a.Unmap()
			if a.IsValid() && keep(a) && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		return out, nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	skipped := skippedIPv6()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if len(cfg.Interfaces) > 0 && !slices.Contains(cfg.Interfaces, ifc.Name) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, ia := range addrs {
			ipn, ok := ia.(*net.IPNet)
			if !ok {
				continue
			}
			a, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			a = a.Unmap()
			if !keep(a) || !netaddr.IsUsableHost(a, cfg.IncludeLinkLocal) || skipped[a] {
				continue
			}
			if a.Is6() && a.IsLinkLocalUnicast() {
				a = a.WithZone(ifc.Name)
			}
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// skippedIPv6 returns the IPv6 addresses the kernel marks temporary,
// deprecated, tentative or DAD-failed. Without /proc (not Linux) it is
// empty and every address is offered.
func skippedIPv6() map[netip.Addr]bool {
	for _, path := range procIfInet6 {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		defer f.Close()
		return parseIfInet6(f)
	}
	return nil
}

// parseIfInet6 reads /proc/net/if_inet6 lines:
// "<32 hex addr> <ifindex> <prefixlen> <scope> <flags> <name>".
func parseIfInet6(r io.Reader) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || len(fields[0]) != 32 {
			continue
		}
		raw, err := hex.DecodeString(fields[0])
		if err != nil {
			continue
		}
		flags, err := strconv.ParseUint(fields[4], 16, 32)
		if err != nil {
			continue
		}
		if flags&ifaFlagsSkipped != 0 {
			out[netip.AddrFrom16([16]byte(raw))] = true
		}
	}
	return out
}
