package netaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrInvalidPrefix is wrapped by ParsePrefixes errors; test with errors.Is.
var ErrInvalidPrefix = errors.New("invalid address or prefix")

// ParsePrefixes parses CIDR prefixes such as "192.0.2.0/24" or "2001:db8::/32"
// and bare addresses, which become /32 or /128 prefixes. Surrounding spaces
// are trimmed and host bits are masked off ("10.1.2.3/8" is 10.0.0.0/8).
// Zoned addresses are rejected. The error names the position and text of the
// first bad entry and wraps ErrInvalidPrefix.
func ParsePrefixes(in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		pf, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("netaddr: entry %d %q: %w: %v", i, s, ErrInvalidPrefix, err)
		}
		out = append(out, pf)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty")
	}
	if strings.Contains(s, "/") {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return pf.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("zone not allowed")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
