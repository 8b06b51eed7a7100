package siplocate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrNXDomain means a name does not exist (RCODE 3, NXDOMAIN).
var ErrNXDomain = errors.New("siplocate: no such domain")

// ErrDNS means no configured DNS server gave a usable answer: every one
// timed out, failed (SERVFAIL, REFUSED...) or could not be reached.
var ErrDNS = errors.New("siplocate: DNS query failed")

const (
	// defaultQueryTimeout bounds one query to one server, over UDP and
	// then, on truncation, over TCP.
	defaultQueryTimeout = 2 * time.Second
	// ednsUDPSize is the EDNS(0) buffer size we advertise: the DNS Flag
	// Day 2020 value, small enough to avoid IP fragmentation. Longer
	// answers come back truncated and are retried over TCP.
	ednsUDPSize = 1232
	// maxCNAMEHops bounds alias chains, including re-queries for chains
	// the server did not follow itself.
	maxCNAMEHops = 8
	// defaultResolvConf is read when Resolver.Server is empty.
	defaultResolvConf = "/etc/resolv.conf"
)

// answer is what one lookup found: the records of the asked type owned by
// the name the CNAME chain ends at.
type answer struct {
	rrs   []dns.RR
	owner string // the chain's end, fully qualified
}

// servers returns the DNS servers to ask, in order.
func (r *Resolver) servers() ([]string, error) {
	if r.Server != "" {
		return []string{withDefaultPort(r.Server)}, nil
	}
	path := r.ResolvConf
	if path == "" {
		path = defaultResolvConf
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: no Server set and %s unreadable: %w", ErrDNS, path, err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no Server set and no nameserver in %s", ErrDNS, path)
	}
	return out, nil
}

func withDefaultPort(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), "53")
}

// lookup asks for name's records of type qtype, following CNAMEs. A name
// with no records of the type (NODATA) is an empty answer, not an error;
// NXDOMAIN is ErrNXDomain.
func (r *Resolver) lookup(ctx context.Context, servers []string, name string, qtype uint16) (answer, error) {
	name = dns.CanonicalName(name)
	qname := name
	seen := map[string]bool{name: true}
	for range maxCNAMEHops {
		resp, err := r.exchange(ctx, servers, qname, qtype)
		if err != nil {
			return answer{}, err
		}
		rrs, end, err := chase(resp, qname, qtype, seen)
		if err != nil {
			return answer{}, fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], name, err)
		}
		if len(rrs) > 0 {
			return answer{rrs: rrs, owner: end}, nil
		}
		if resp.Rcode == dns.RcodeNameError {
			// With a chain, NXDOMAIN is about its last name (RFC 6604 §2).
			return answer{owner: end}, fmt.Errorf("%w: %s %s", ErrNXDomain, dns.TypeToString[qtype], end)
		}
		if end == qname {
			return answer{owner: end}, nil // NODATA
		}
		// The server gave the alias but not what it points to (a
		// non-recursive server, or a chain leaving its zone): ask again.
		qname = end
	}
	return answer{}, fmt.Errorf("%w: %s %s: more than %d CNAMEs", ErrDNS, dns.TypeToString[qtype], name, maxCNAMEHops)
}

// chase walks the CNAME chain from qname through resp's answer section and
// returns the records of type qtype at its end. Records owned by names not
// on the chain are ignored: a server has no business sending them.
func chase(resp *dns.Msg, qname string, qtype uint16, seen map[string]bool) ([]dns.RR, string, error) {
	cur := qname
	for range maxCNAMEHops + 1 {
		var rrs []dns.RR
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				rrs = append(rrs, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME && next == "" {
				next = dns.CanonicalName(c.Target)
			}
		}
		if len(rrs) > 0 || next == "" {
			return rrs, cur, nil
		}
		if seen[next] {
			return nil, cur, fmt.Errorf("%w: CNAME loop at %s", ErrDNS, next)
		}
		seen[next] = true
		cur = next
	}
	return nil, cur, fmt.Errorf("%w: more than %d CNAMEs", ErrDNS, maxCNAMEHops)
}

// exchange sends one question to each server in turn until one answers
// with NOERROR or NXDOMAIN. A truncated UDP answer (TC) is asked again over
// TCP (RFC 7766 §5).
func (r *Resolver) exchange(ctx context.Context, servers []string, qname string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsUDPSize, false)
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = defaultQueryTimeout
	}
	var errs []error
	for _, srv := range servers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		resp, err := r.exchangeOne(ctx, m, srv, timeout)
		if err != nil {
			r.logger().Debug("siplocate: DNS query failed", "server", srv, "name", qname, "type", dns.TypeToString[qtype], "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", srv, err))
			continue
		}
		r.logger().Debug("siplocate: DNS answer", "server", srv, "name", qname, "type", dns.TypeToString[qtype],
			"rcode", dns.RcodeToString[resp.Rcode], "answers", len(resp.Answer))
		return resp, nil
	}
	return nil, fmt.Errorf("%w: %s %s: %w", ErrDNS, dns.TypeToString[qtype], qname, errors.Join(errs...))
}

func (r *Resolver) exchangeOne(ctx context.Context, m *dns.Msg, srv string, timeout time.Duration) (*dns.Msg, error) {
	resp, err := r.exchangeNet(ctx, m, srv, "udp", timeout)
	if err == nil && resp.Truncated {
		r.logger().Debug("siplocate: truncated answer, retrying over TCP", "server", srv, "name", m.Question[0].Name)
		resp, err = r.exchangeNet(ctx, m, srv, "tcp", timeout)
		if err == nil && resp.Truncated {
			return nil, errors.New("truncated answer over TCP")
		}
	}
	if err != nil {
		return nil, err
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	return nil, fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
}

func (r *Resolver) exchangeNet(ctx context.Context, m *dns.Msg, srv, network string, timeout time.Duration) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: network, UDPSize: ednsUDPSize}
	resp, _, err := c.ExchangeContext(ctx, m, srv)
	if err != nil {
		return nil, fmt.Errorf("over %s: %w", network, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) ||
		resp.Question[0].Qtype != m.Question[0].Qtype {
		return nil, fmt.Errorf("over %s: answer to another question", network)
	}
	return resp, nil
}
