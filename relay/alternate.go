//go:build linux

package relay

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// alternates is the parsed alternate_servers and alternate_domain, swapped
// atomically on Reload. A relay that cannot take a new allocation (draining,
// max_allocations, user_quota, no free port) answers the Allocate with 300
// Try Alternate and an ALTERNATE-SERVER of the client's own family (RFC 8489
// §10 and §14.15: "The IP address family MUST be identical to that of the
// source IP address of the request"; RFC 8656 §7.2 lets a TURN server
// redirect an Allocate this way), instead of the 486 or 508 that makes a
// client give up on this server or fail the call.
type alternates struct {
	byFamily [2][]netip.AddrPort // by familyIndex
	domain   string
	rr       atomic.Uint32
}

// parseAlternates validates alternate_servers (ip:port; ALTERNATE-SERVER
// carries an address, not a name) and alternate_domain.
func parseAlternates(servers []string, domain string) (*alternates, error) {
	a := &alternates{domain: domain}
	for _, s := range servers {
		ap, err := parseAddrPort("alternate_servers", s)
		if err != nil {
			return nil, err
		}
		if ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return nil, fieldErr("alternate_servers", "%q must be a unicast ip:port with a port", s)
		}
		i := 0
		if ap.Addr().Is6() {
			i = 1
		}
		a.byFamily[i] = append(a.byFamily[i], ap)
	}
	if domain != "" {
		// RFC 8489 §14.16: a domain name (used by a (D)TLS client to check
		// the alternate server's certificate), at most 255 bytes.
		if len(domain) > 255 || strings.ContainsAny(domain, " :/\t") || strings.HasPrefix(domain, ".") {
			return nil, fieldErr("alternate_domain", "%q is not a domain name", domain)
		}
		if len(servers) == 0 {
			return nil, fieldErr("alternate_domain", "needs alternate_servers")
		}
	}
	return a, nil
}

// pick returns the next alternate server of family index fi, round robin.
func (a *alternates) pick(fi int) (netip.AddrPort, bool) {
	l := a.byFamily[fi]
	if len(l) == 0 {
		return netip.AddrPort{}, false
	}
	return l[int(a.rr.Add(1)-1)%len(l)], true
}

// Redirect reasons, the label of isthmus_relay_alternate_redirects_total.
const (
	redirectDraining = "draining"
	redirectTotal    = "total"
	redirectUser     = "user"
	redirectPorts    = "ports"
)

// fullReason says why a new allocation of userID would be refused right
// now (the 486/508 cases), or "". It is a fast pre-check: the generator
// still enforces every limit under its locks.
func (s *Server) fullReason(userID string, fam netaddr.Family) string {
	if s.draining.Load() {
		return redirectDraining
	}
	lim := s.limits.Load()
	if lim.userQuota > 0 && s.gen.userCount(userID) >= lim.userQuota {
		return redirectUser
	}
	if lim.maxAllocations > 0 && s.pool.inUse() >= lim.maxAllocations {
		return redirectTotal
	}
	if s.familyPortsFull(fam) {
		return redirectPorts
	}
	return ""
}

// familyPortsFull reports whether every relay IP of family fam has used
// all of min_port..max_port (each relay IP has its own pool).
func (s *Server) familyPortsFull(fam netaddr.Family) bool {
	ps := s.pool
	seen := false
	for _, ip := range ps.ips {
		if netaddr.FamilyOf(ip) != fam {
			continue
		}
		seen = true
		if ps.byIP[ip].inUse() < ps.len() {
			return false
		}
	}
	return seen
}

// requestedFamily is the relayed family an Allocate asks for: IPv4 unless
// REQUESTED-ADDRESS-FAMILY says IPv6 (RFC 6156 §4.2).
func requestedFamily(msg *stun.Message) netaddr.Family {
	if v, err := msg.Get(stun.AttrRequestedAddressFamily); err == nil && len(v) == 4 && v[0] == 0x02 {
		return netaddr.IPv6
	}
	return netaddr.IPv4
}

// tryAlternate answers an authenticated Allocate with 300 Try Alternate
// when alternate servers are configured and this relay would refuse it.
// The answer is signed with the request's key: RFC 8489 §14.8 says a 300
// "MUST be protected with the MESSAGE-INTEGRITY attribute", and clients
// (coturn's uclient among them) check it before they follow it.
func (g *gate) tryAlternate(msg *stun.Message, t fiveTuple, userID string, key []byte) (verdict, bool) {
	s := g.srv
	alt := s.alt.Load()
	if alt == nil {
		return verdict{}, false
	}
	if _, has := s.allocs.owner(t.key()); has {
		return verdict{}, false // pion answers 437 for a second Allocate
	}
	reason := s.fullReason(userID, requestedFamily(msg))
	if reason == "" {
		return verdict{}, false
	}
	fi := 0
	if c := addrPortOf(t.src).Addr(); c.Is6() && !c.Is4In6() {
		fi = 1
	}
	to, ok := alt.pick(fi)
	if !ok {
		return verdict{}, false // none of the client's family: the 486/508 goes out
	}
	extra := []stun.Setter{&stun.AlternateServer{IP: to.Addr().AsSlice(), Port: int(to.Port())}}
	if alt.domain != "" {
		extra = append(extra, stun.RawAttribute{Type: stun.AttrAlternateDomain, Value: []byte(alt.domain)})
	}
	reply := buildError(msg, stun.CodeTryAlternate, key, extra...)
	if reply == nil {
		return verdict{}, false
	}
	s.opsMetrics.redirects.WithLabelValues(reason).Inc()
	s.denyLog.Info("allocate redirected (300 Try Alternate)", slog.String("client", t.src.String()),
		slog.String("reason", reason), slog.String("alternate", to.String()))
	return verdict{reply: reply}, true
}
