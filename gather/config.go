package gather

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/pion/stun/v4"
	"log/slog"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
	"github.com/isthmusrelay/isthmus/siplocate"
)

// DefaultTimeout is the overall gathering deadline when Config.Timeout is
// zero. A dead STUN or TURN server costs at most this long; pion/ice on its
// own waits 5 s for STUN and 7.8 s for TURN.
const DefaultTimeout = 2 * time.Second

// ErrConfig wraps every configuration error NewAgent returns.
var ErrConfig = errors.New("gather: invalid config")

// Config says where an Agent looks for candidates.
type Config struct {
	// STUN lists STUN servers, "stun:HOST:PORT" (RFC 7064). Each is asked
	// over every usable local family for a server-reflexive candidate.
	STUN []string
	// TURN lists TURN servers, "turn:HOST:PORT?transport=udp|tcp" or
	// "turns:HOST:PORT" (RFC 7065). Each yields one relayed candidate per
	// entry of RelayFamilies.
	TURN []string
	// Username and Password are the TURN long-term credentials.
	Username, Password string
	// Timeout bounds the whole gathering; zero means DefaultTimeout.
	// Candidates not found by then are left out of the offer.
	Timeout time.Duration
	// Families limits the local families used; empty means every family
	// the host has a usable address (or route) for.
	Families []netaddr.Family
	// RelayFamilies lists the relayed-address families requested from
	// each TURN server; empty means both. The request goes over the same
	// family when the agent has it, else over the other one (an IPv6-only
	// agent asks over IPv6 for its IPv4 relay).
	RelayFamilies []netaddr.Family
	// IncludeLinkLocal adds link-local host candidates (fe80::/10,
	// 169.254/16); they are left out by default.
	IncludeLinkLocal bool
	// Interfaces limits host candidates to these interface names; empty
	// means all.
	Interfaces []string
	// HostAddrs, when set, replaces interface enumeration: exactly these
	// addresses become host candidates, loopback included (tests, or a
	// softphone that knows its addresses).
	HostAddrs []netip.Addr
	// TLSConfig is used for "turns:" servers; nil means a default config
	// with ServerName taken from the URL.
	TLSConfig *tls.Config
	// Locator finds the STUN and TURN servers' addresses (SRV and AAAA
	// included, see siplocate); nil means one using /etc/resolv.conf.
	Locator *siplocate.Resolver
	// Codecs are the audio codecs offered; empty means sdpcand.DefaultCodecs().
	Codecs []sdpcand.Codec
	// Logger receives the agent's logs (and pion's, shifted one level
	// down); nil discards them.
	Logger *slog.Logger
}

// server is one parsed STUN or TURN URL.
type server struct {
	raw string
	uri *stun.URI
}

func (s server) isTURN() bool {
	return s.uri.Scheme == stun.SchemeTypeTURN || s.uri.Scheme == stun.SchemeTypeTURNS
}

// relayProtocol is the transport to the TURN server as ICE names it:
// "udp", "tcp" or "tls".
func (s server) relayProtocol() string {
	if s.uri.Scheme == stun.SchemeTypeTURNS {
		return "tls"
	}
	if s.uri.Proto == stun.ProtoTypeTCP {
		return "tcp"
	}
	return "udp"
}

func parseServers(field string, urls []string, wantTURN bool) ([]server, error) {
	out := make([]server, 0, len(urls))
	for _, raw := range urls {
		u, err := stun.ParseURI(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %q: %w", ErrConfig, field, raw, err)
		}
		s := server{raw: raw, uri: u}
		if s.isTURN() != wantTURN {
			return nil, fmt.Errorf("%w: %s: %q: wrong scheme %s", ErrConfig, field, raw, u.Scheme)
		}
		if u.Scheme == stun.SchemeTypeSTUNS {
			return nil, fmt.Errorf("%w: %s: %q: stuns is not supported", ErrConfig, field, raw)
		}
		out = append(out, s)
	}
	return out, nil
}

func checkFamilies(field string, fams []netaddr.Family) ([]netaddr.Family, error) {
	if len(fams) == 0 {
		return []netaddr.Family{netaddr.IPv6, netaddr.IPv4}, nil
	}
	var out []netaddr.Family
	for _, f := range fams {
		if f != netaddr.IPv4 && f != netaddr.IPv6 {
			return nil, fmt.Errorf("%w: %s: unknown family %d", ErrConfig, field, f)
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}
