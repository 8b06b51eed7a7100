package siplocate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// ErrNotFound means DNS holds no server for the URI: no usable NAPTR or SRV
// record and no address record, or the name does not exist.
var ErrNotFound = errors.New("siplocate: no server found")

// ErrUnavailable means the domain says the service is not offered: its
// only SRV record has target "." (RFC 2782). No A/AAAA fallback is tried.
var ErrUnavailable = errors.New("siplocate: service not available at this domain")

// maxNAPTR bounds the NAPTR records used per lookup, and maxHosts the
// distinct SRV target names resolved per Locate: a hostile zone must not
// turn one Locate into thousands of queries.
const (
	maxNAPTR        = 16
	maxHosts        = 32
	parallelLookups = 8
	sourceProbePort = 9 // discard; a connected UDP socket sends nothing
)

// Resolver locates the servers a SIP, TURN or STUN URI designates. The
// zero value asks the servers in /etc/resolv.conf. A Resolver is safe for
// concurrent use; its fields must not change while it is in use.
type Resolver struct {
	// Server is the DNS server to ask, "host:port" (port 53 when left
	// out). Empty means the nameservers of ResolvConf, tried in order.
	Server string
	// ResolvConf is the resolv.conf(5) file read when Server is empty;
	// empty means /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds one query to one server; zero means 2 s. The whole
	// Locate is bounded by its context.
	Timeout time.Duration
	// Transports lists the transports the client supports, most preferred
	// first; empty means DefaultTransports. Records for other transports
	// are skipped (RFC 3263 §4.1), and the order decides between SRV
	// results of different transports.
	Transports []Transport
	// SourceAddr returns the source address the host would use towards
	// dst, and false when dst is unreachable; RFC 6724 ordering needs it.
	// Nil asks the kernel's routing table (a connected UDP socket; nothing
	// is sent).
	SourceAddr func(dst netip.Addr) (netip.Addr, bool)
	// Logger receives debug logs of every query and decision; nil
	// discards them.
	Logger *slog.Logger

	// intn, when set, replaces the RFC 2782 random draw (tests).
	intn func(n uint32) uint32
}

// Target is one place to send a request to, in the order to try them.
type Target struct {
	// Transport is what to reach AddrPort over.
	Transport Transport
	// AddrPort is the server's transport address.
	AddrPort netip.AddrPort
	// Host is the name AddrPort came from: the SRV target, or the URI's
	// host (or maddr). Empty when the URI named an address.
	Host string
	// Priority and Weight are the SRV record's; zero without SRV.
	Priority, Weight uint16
	// SRV is the SRV owner name queried, e.g. "_sips._tcp.example.org.";
	// empty when no SRV record was used.
	SRV string
	// NAPTR is the NAPTR record that led to SRV, in presentation form
	// ("10 50 \"s\" \"SIP+D2U\" \"\" _sip._udp.example.org."); empty when
	// none did.
	NAPTR string
}

// String is one line: "udp [2001:db8::10]:5060 via SRV _sip._udp.example.org. 10 60 sip1.example.org.".
func (t Target) String() string {
	return t.Transport.String() + " " + t.AddrPort.String() + " " + t.From()
}

// From says which records produced the target.
func (t Target) From() string {
	var b strings.Builder
	if t.NAPTR != "" {
		b.WriteString("NAPTR " + t.NAPTR + " -> ")
	}
	switch {
	case t.SRV != "":
		fmt.Fprintf(&b, "SRV %s %d %d %s", t.SRV, t.Priority, t.Weight, t.Host)
	case t.Host != "":
		b.WriteString("A/AAAA " + t.Host)
	default:
		b.WriteString("numeric host")
	}
	return b.String()
}

func (r *Resolver) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return discardLogger
}

var discardLogger = slog.New(slog.DiscardHandler)

// Locate returns the targets for uri in the order RFC 3263 (sip:, sips:),
// RFC 5928 (turn:, turns:) or RFC 8489 §8 (stun:, stuns:) says to try them:
//
//   - a numeric host needs no DNS; an explicit port skips NAPTR and SRV
//     and uses the host's A/AAAA records (RFC 3263 §4.2, RFC 5928 §3);
//   - otherwise NAPTR records (when the scheme has them and the URI names
//     no transport) lead to SRV names; without usable NAPTR records, the
//     SRV names of the transports the URI and the client allow are asked;
//     without SRV records, the host's A/AAAA at the default port;
//   - SRV records are ordered by priority and weighted random (RFC 2782);
//   - each SRV target's addresses are ordered by RFC 6724 destination
//     address selection, then the families interleaved as RFC 8305 §4
//     says, so a broken family costs one attempt, not all of them.
//
// A sips: URI yields TLS targets only (_sips._tcp, SIPS+D2T). Errors wrap
// ErrBadURI, ErrUnsupportedTransport, ErrNotFound, ErrUnavailable or ErrDNS.
func (r *Resolver) Locate(ctx context.Context, uri string) ([]Target, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return r.LocateURI(ctx, u)
}

// LocateURI is Locate for a parsed URI.
func (r *Resolver) LocateURI(ctx context.Context, u URI) ([]Target, error) {
	allowed, err := r.allowed(u)
	if err != nil {
		return nil, err
	}
	l := &locator{r: r, u: u, allowed: allowed, hosts: map[string]*hostAddrs{}, sources: map[netip.Addr]netip.Addr{}}
	ts, err := l.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return ts, nil
}

// allowed returns the services the URI and the client both allow, in the
// client's order of preference.
func (r *Resolver) allowed(u URI) ([]service, error) {
	prefs := r.Transports
	if len(prefs) == 0 {
		prefs = DefaultTransports
	}
	var out []service
	for _, t := range prefs {
		if u.Transport != 0 && t != u.Transport {
			continue
		}
		if sv, ok := serviceFor(u.Scheme, t); ok && !slices.ContainsFunc(out, func(s service) bool { return s.transport == t }) {
			out = append(out, sv)
		}
	}
	if len(out) == 0 {
		if u.Transport != 0 {
			return nil, fmt.Errorf("%w: %s over %s is not among the client's transports", ErrUnsupportedTransport, u.Scheme, u.Transport)
		}
		return nil, fmt.Errorf("%w: the client supports none of the transports of %s", ErrUnsupportedTransport, u.Scheme)
	}
	return out, nil
}

// fallback returns the services tried at the host's address records, when
// there is no SRV to say: for SIP the one transport RFC 3263 §4.1 names
// (UDP for sip:, TLS for sips:, or the URI's transport=); for TURN and
// STUN every allowed one (RFC 5928 §3 keeps the ordered transport list).
func (l *locator) fallback() []service {
	if l.u.Scheme != SchemeSIP && l.u.Scheme != SchemeSIPS {
		return l.allowed
	}
	def := services[l.u.Scheme][0]
	for _, sv := range l.allowed {
		if sv.transport == def.transport {
			return []service{sv}
		}
	}
	return l.allowed[:1]
}

// locator is the state of one Locate.
type locator struct {
	r       *Resolver
	u       URI
	allowed []service
	servers []string

	mu      sync.Mutex
	hosts   map[string]*hostAddrs
	sources map[netip.Addr]netip.Addr // invalid value: unreachable
}

// hostAddrs is one name's addresses, looked up once per Locate.
type hostAddrs struct {
	done  chan struct{}
	addrs []netip.Addr
	err   error
}

// srvRef is one SRV record to turn into targets, with where it came from.
type srvRef struct {
	sv    service
	rec   *dns.SRV
	owner string
	naptr string
}

func (l *locator) run(ctx context.Context) ([]Target, error) {
	name, addr := l.u.target()
	if addr.IsValid() {
		// RFC 3263 §4.2: "If TARGET is a numeric IP address, the client
		// uses that address."
		var ts []Target
		for _, sv := range l.fallback() {
			ts = append(ts, Target{Transport: sv.transport, AddrPort: netip.AddrPortFrom(addr, cmp.Or(l.u.Port, sv.port))})
		}
		l.r.logger().Debug("siplocate: numeric host", "uri", l.u.String(), "targets", len(ts))
		return ts, nil
	}
	var err error
	if l.servers, err = l.r.servers(); err != nil {
		return nil, err
	}
	if l.u.Port != 0 {
		// RFC 3263 §4.2, RFC 5928 §3: an explicit port means A/AAAA only.
		return l.addressTargets(ctx, name, l.fallback(), l.u.Port)
	}

	var errs []error
	refs, sawNAPTR, unavailable := []srvRef(nil), false, false
	if l.u.Transport == 0 && l.allowed[0].naptr != "" {
		var err error
		refs, sawNAPTR, unavailable, err = l.viaNAPTR(ctx, name)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !sawNAPTR {
		// RFC 3263 §4.1: "If no NAPTR records are found, the client
		// constructs SRV queries for those transport protocols it
		// supports"; with transport= given, for that one (§4.2).
		var err error
		var queries []srvQuery
		for _, sv := range l.allowed {
			queries = append(queries, srvQuery{sv: sv, name: sv.srv + "." + name})
		}
		refs, unavailable, err = l.querySRVs(ctx, queries)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(refs) > 0 {
		ts, err := l.srvTargets(ctx, refs)
		if len(ts) > 0 {
			return ts, nil
		}
		return nil, lastError(err, errs)
	}
	if unavailable {
		return nil, ErrUnavailable
	}
	// RFC 3263 §4.2: "If no SRV records were found, the client performs
	// an A or AAAA record lookup of the domain name."
	ts, err := l.addressTargets(ctx, name, l.fallback(), 0)
	if err != nil {
		return nil, lastError(err, errs)
	}
	return ts, nil
}

// lastError reports the failure of the last step, and how many earlier
// lookups failed too, rather than one line per query: a dead DNS server
// fails all of them the same way. errors.Is still finds every cause.
func lastError(last error, earlier []error) error {
	if len(earlier) == 0 {
		return last
	}
	return fmt.Errorf("%w (after %d earlier failed lookup steps)%w", last, len(earlier), hiddenErr{errors.Join(earlier...)})
}

// hiddenErr keeps an error in the chain for errors.Is without printing it.
type hiddenErr struct{ err error }

func (h hiddenErr) Error() string { return "" }
func (h hiddenErr) Unwrap() error { return h.err }

// viaNAPTR asks name's NAPTR records and the SRV records they point to.
// sawNAPTR reports whether any usable NAPTR record existed: then SRV names
// are not guessed (RFC 3263 §4.1).
func (l *locator) viaNAPTR(ctx context.Context, name string) (refs []srvRef, sawNAPTR, unavailable bool, err error) {
	ans, err := l.r.lookup(ctx, l.servers, name, dns.TypeNAPTR)
	if err != nil {
		if errors.Is(err, ErrNXDomain) {
			return nil, false, false, nil // the SRV and A/AAAA steps will say so
		}
		return nil, false, false, err
	}
	recs := usableNAPTRs(ans.rrs, l.allowed, l.r.logger())
	if len(recs) == 0 {
		return nil, false, false, nil
	}
	var queries []srvQuery
	for _, n := range recs {
		queries = append(queries, srvQuery{sv: n.sv, name: dns.CanonicalName(n.rec.Replacement), naptr: naptrText(n.rec)})
	}
	refs, unavailable, err = l.querySRVs(ctx, queries)
	return refs, true, unavailable, err
}

// naptrRef is a NAPTR record this client can follow, with its service.
type naptrRef struct {
	rec *dns.NAPTR
	sv  service
}

// usableNAPTRs keeps the records with flag "s", an empty regexp, a real
// replacement and a service among allowed (RFC 3263 §4.1: "discard any
// records whose services are not supported"), sorted by order and then
// preference (RFC 3403 §4.1). An S-NAPTR (RFC 3958) service field may list
// several protocols ("RELAY:turn.udp:turn.tcp"): one reference each.
func usableNAPTRs(rrs []dns.RR, allowed []service, log *slog.Logger) []naptrRef {
	var out []naptrRef
	for _, rr := range rrs {
		n, ok := rr.(*dns.NAPTR)
		if !ok {
			continue
		}
		if !strings.EqualFold(n.Flags, "s") || n.Regexp != "" || n.Replacement == "." || n.Replacement == "" {
			log.Debug("siplocate: NAPTR skipped: only flag \"s\" with a replacement is used", "naptr", naptrText(n))
			continue
		}
		matched := false
		for _, sv := range allowed {
			if naptrOffers(n.Service, sv.naptr) {
				out = append(out, naptrRef{rec: n, sv: sv})
				matched = true
			}
		}
		if !matched {
			log.Debug("siplocate: NAPTR skipped: service not supported", "naptr", naptrText(n))
		}
		if len(out) >= maxNAPTR {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b naptrRef) int {
		return cmp.Or(cmp.Compare(a.rec.Order, b.rec.Order), cmp.Compare(a.rec.Preference, b.rec.Preference))
	})
	return out
}

// naptrOffers reports whether a NAPTR service field offers want: equal for
// RFC 3263 ("SIP+D2U"), or the same S-NAPTR application service with want's
// protocol among the field's (RFC 3958 §6.5: "RELAY:turn.udp:turn.tcp").
func naptrOffers(field, want string) bool {
	if strings.EqualFold(field, want) {
		return true
	}
	app, proto, ok := strings.Cut(want, ":")
	if !ok {
		return false
	}
	parts := strings.Split(field, ":")
	if len(parts) < 2 || !strings.EqualFold(parts[0], app) {
		return false
	}
	for _, p := range parts[1:] {
		if strings.EqualFold(p, proto) {
			return true
		}
	}
	return false
}

func naptrText(n *dns.NAPTR) string {
	return strconv.Itoa(int(n.Order)) + " " + strconv.Itoa(int(n.Preference)) + " " +
		strconv.Quote(n.Flags) + " " + strconv.Quote(n.Service) + " " + strconv.Quote(n.Regexp) + " " + n.Replacement
}

// srvQuery is one SRV name to ask, for one service.
type srvQuery struct {
	sv    service
	name  string
	naptr string
}

// querySRVs asks every SRV name at once and returns the records in query
// order. unavailable reports that some name answered "." and no name gave
// a real record.
func (l *locator) querySRVs(ctx context.Context, qs []srvQuery) (refs []srvRef, unavailable bool, err error) {
	sets := make([]srvSet, len(qs))
	errs := make([]error, len(qs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelLookups)
	for i, q := range qs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ans, err := l.r.lookup(ctx, l.servers, q.name, dns.TypeSRV)
			if err != nil && !errors.Is(err, ErrNXDomain) {
				errs[i] = err
				return
			}
			sets[i] = toSRVSet(ans.rrs, l.intn())
		})
	}
	wg.Wait()
	for i, s := range sets {
		if s.unavailable {
			unavailable = true
			l.r.logger().Debug("siplocate: SRV target \".\": service not available", "srv", qs[i].name)
		}
		for _, rec := range s.records {
			refs = append(refs, srvRef{sv: qs[i].sv, rec: rec, owner: dns.CanonicalName(qs[i].name), naptr: qs[i].naptr})
		}
	}
	return refs, unavailable && len(refs) == 0, errors.Join(errs...)
}

func (l *locator) intn() func(uint32) uint32 {
	if l.r.intn != nil {
		return l.r.intn
	}
	return rand.Uint32N
}

// srvTargets resolves every SRV target and lists its addresses in order.
func (l *locator) srvTargets(ctx context.Context, refs []srvRef) ([]Target, error) {
	var names []string
	for _, ref := range refs {
		h := dns.CanonicalName(ref.rec.Target)
		if !slices.Contains(names, h) {
			if len(names) == maxHosts {
				l.r.logger().Debug("siplocate: too many SRV targets; rest ignored", "max", maxHosts)
				break
			}
			names = append(names, h)
		}
	}
	l.resolveHosts(ctx, names)
	var ts []Target
	var errs []error
	for _, ref := range refs {
		h := l.host(dns.CanonicalName(ref.rec.Target))
		if h == nil {
			continue
		}
		if h.err != nil {
			errs = append(errs, h.err)
		}
		for _, a := range l.order(h.addrs) {
			ts = append(ts, Target{
				Transport: ref.sv.transport, AddrPort: netip.AddrPortFrom(a, ref.rec.Port),
				Host: ref.rec.Target, Priority: ref.rec.Priority, Weight: ref.rec.Weight,
				SRV: ref.owner, NAPTR: ref.naptr,
			})
		}
	}
	ts = dedupe(ts)
	if len(ts) == 0 {
		return nil, fmt.Errorf("%w: no SRV target has an address: %w", ErrNotFound, errors.Join(errs...))
	}
	return ts, nil
}

// addressTargets is name's A/AAAA records at port (or each service's
// default port when 0), for every service in svs.
func (l *locator) addressTargets(ctx context.Context, name string, svs []service, port uint16) ([]Target, error) {
	fq := dns.CanonicalName(name)
	l.resolveHosts(ctx, []string{fq})
	h := l.host(fq)
	if len(h.addrs) == 0 {
		if h.err != nil {
			return nil, h.err
		}
		return nil, fmt.Errorf("%w: %s has no A or AAAA record", ErrNotFound, name)
	}
	addrs := l.order(h.addrs)
	var ts []Target
	for _, sv := range svs {
		for _, a := range addrs {
			ts = append(ts, Target{Transport: sv.transport, AddrPort: netip.AddrPortFrom(a, cmp.Or(port, sv.port)), Host: fq})
		}
	}
	return dedupe(ts), nil
}

func (l *locator) host(name string) *hostAddrs {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosts[name]
}

// resolveHosts looks up the A and AAAA records of every name, at most
// parallelLookups names at a time, each name once per Locate.
func (l *locator) resolveHosts(ctx context.Context, names []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelLookups)
	for _, n := range names {
		l.mu.Lock()
		h, ok := l.hosts[n]
		if !ok {
			h = &hostAddrs{done: make(chan struct{})}
			l.hosts[n] = h
		}
		l.mu.Unlock()
		if ok {
			wg.Go(func() { <-h.done })
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			defer close(h.done)
			h.addrs, h.err = l.lookupAddrs(ctx, n)
		})
	}
	wg.Wait()
}

// lookupAddrs asks AAAA and A at once. One family failing is not an error
// when the other answered: a name may well have one family only.
func (l *locator) lookupAddrs(ctx context.Context, name string) ([]netip.Addr, error) {
	var six, four answer
	var err6, err4 error
	var wg sync.WaitGroup
	wg.Go(func() { six, err6 = l.r.lookup(ctx, l.servers, name, dns.TypeAAAA) })
	wg.Go(func() { four, err4 = l.r.lookup(ctx, l.servers, name, dns.TypeA) })
	wg.Wait()
	var out []netip.Addr
	for _, rr := range six.rrs {
		if a, ok := rr.(*dns.AAAA); ok {
			if ip, ok := netip.AddrFromSlice(a.AAAA); ok {
				out = append(out, ip.Unmap()) // an AAAA of ::ffff:a.b.c.d is an IPv4 host
			}
		}
	}
	for _, rr := range four.rrs {
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				out = append(out, ip)
			}
		}
	}
	out = slices.Compact(out) // duplicates in one RRset are a zone error
	if len(out) > 0 {
		return out, nil
	}
	if err6 != nil && err4 != nil && errors.Is(err6, ErrNXDomain) && errors.Is(err4, ErrNXDomain) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err4)
	}
	switch {
	case err6 != nil && err4 != nil:
		return nil, fmt.Errorf("%w; %w", err6, err4)
	case err6 != nil:
		return nil, err6
	case err4 != nil:
		return nil, err4
	}
	return nil, fmt.Errorf("%w: %s has no A or AAAA record", ErrNotFound, name)
}

// order sorts one host's addresses by RFC 6724 and interleaves the
// families of the reachable ones (RFC 8305 §4, First Address Family Count
// 1); unreachable addresses go last.
func (l *locator) order(addrs []netip.Addr) []netip.Addr {
	ds := make([]netaddr.Destination, len(addrs))
	for i, a := range addrs {
		ds[i] = netaddr.Destination{Addr: a, Source: l.source(a)}
	}
	netaddr.SortDestinations(ds)
	var first, second, dead []netip.Addr
	for _, d := range ds {
		switch {
		case !d.Source.IsValid():
			dead = append(dead, d.Addr)
		case len(first) == 0 || first[0].Is4() == d.Addr.Is4():
			first = append(first, d.Addr)
		default:
			second = append(second, d.Addr)
		}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for i := 0; i < len(first) || i < len(second); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(second) {
			out = append(out, second[i])
		}
	}
	return append(out, dead...)
}

func (l *locator) source(dst netip.Addr) netip.Addr {
	l.mu.Lock()
	src, ok := l.sources[dst]
	l.mu.Unlock()
	if ok {
		return src
	}
	find := l.r.SourceAddr
	if find == nil {
		find = routeSource
	}
	src, reachable := find(dst)
	if !reachable {
		src = netip.Addr{}
	}
	l.mu.Lock()
	l.sources[dst] = src
	l.mu.Unlock()
	return src
}

// routeSource asks the kernel which source address it would use towards
// dst: connecting a UDP socket only consults the routing table.
func routeSource(dst netip.Addr) (netip.Addr, bool) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, sourceProbePort)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), true
}

// dedupe drops repeated (transport, address) pairs, keeping the first: two
// SRV records or NAPTR paths may lead to one server.
func dedupe(ts []Target) []Target {
	type key struct {
		t  Transport
		ap netip.AddrPort
	}
	seen := make(map[key]bool, len(ts))
	out := ts[:0]
	for _, t := range ts {
		k := key{t.Transport, t.AddrPort}
		if !seen[k] {
			seen[k] = true
			out = append(out, t)
		}
	}
	return out
}
