package sipua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/isthmusrelay/isthmus/sipaddr"
	"github.com/isthmusrelay/isthmus/siplocate"
)

// Defaults for Config fields left zero.
const (
	DefaultExpires        = time.Hour
	DefaultAttemptTimeout = 8 * time.Second
	DefaultUserAgent      = "isthmus-sipua"
)

// Errors a caller may test with errors.Is.
var (
	// ErrNoTarget means the server's URI located to no UDP target of the
	// UA's family (an IPv6-only UA and a proxy with A records only).
	ErrNoTarget = errors.New("sipua: no reachable UDP target of the UA's family")
	// ErrRejected means the far end or a proxy answered with a final
	// non-2xx response; the *ResponseError carries it.
	ErrRejected = errors.New("sipua: request rejected")
)

// ResponseError is a final non-2xx response to a request.
type ResponseError struct {
	Method string
	Code   int
	Reason string
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("sipua: %s: %d %s", e.Method, e.Code, e.Reason)
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *ResponseError) Unwrap() error { return ErrRejected }

// Config is a UA's identity, its local address and its servers.
type Config struct {
	// AOR is the address of record, "sip:alice@example.org": From of
	// every request and To of REGISTER. Required.
	AOR string
	// Listen is the local UDP address SIP is sent from and received on.
	// It must be a specific address (Via and Contact carry it); port 0
	// picks one. Its family is the UA's family: only servers of that family
	// are tried. Required.
	Listen netip.AddrPort
	// Proxy is the outbound proxy, a SIP URI located per RFC 3263
	// ("sip:example.org", "sip:[2001:db8::1]:5060"), sent to as a
	// pre-loaded Route (RFC 3261 §8.1.2). Empty sends each request to the
	// server its Request-URI locates to.
	Proxy string
	// Registrar is the REGISTER Request-URI; empty means the AOR's domain
	// ("sip:example.org"). REGISTER goes to the Proxy when one is set.
	Registrar string
	// Username and Password answer digest challenges (RFC 3261 §22, 401
	// and 407); Username defaults to the AOR's user.
	Username, Password string
	// Expires is the registration lifetime asked for; zero means
	// DefaultExpires.
	Expires time.Duration
	// AttemptTimeout bounds one REGISTER attempt to one target before
	// the next is tried; zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// Resolver locates servers (RFC 3263); nil means one reading
	// /etc/resolv.conf. Numeric hosts need no DNS.
	Resolver *siplocate.Resolver
	// OnInvite is called, on its own goroutine, with every new incoming
	// INVITE; it answers with Incoming.Answer or refuses with Reject. An
	// INVITE left unanswered when it returns gets 480. Nil refuses every
	// call with 480 (Temporarily Unavailable).
	OnInvite func(*Incoming)
	// UserAgent is the User-Agent header; empty means DefaultUserAgent.
	UserAgent string
	// Logger receives the UA's logs and sipgo's; nil discards them.
	Logger *slog.Logger
}

// UA is a SIP user agent bound to one UDP socket. It is safe for
// concurrent use.
type UA struct {
	cfg     Config
	log     *slog.Logger
	aor     sip.Uri
	aorHost sipaddr.Host
	local   netip.AddrPort
	conn    *net.UDPConn
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	contact sip.ContactHeader
	dcc     *sipgo.DialogClientCache
	dsc     *sipgo.DialogServerCache
	res     *siplocate.Resolver

	serveDone chan struct{}
	closeOnce sync.Once
}

// New validates cfg, binds Listen and starts serving incoming requests.
func New(cfg Config) (*UA, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.AOR == "" {
		return nil, errors.New("sipua: Config.AOR: required")
	}
	a, err := sipaddr.ParseURI(cfg.AOR)
	if err != nil {
		return nil, fmt.Errorf("sipua: Config.AOR: %w", err)
	}
	if a.User == "" {
		return nil, fmt.Errorf("sipua: Config.AOR: %q has no user part", cfg.AOR)
	}
	if !cfg.Listen.IsValid() || cfg.Listen.Addr().IsUnspecified() {
		return nil, fmt.Errorf("sipua: Config.Listen: %v: need a specific address (Via and Contact carry it)", cfg.Listen)
	}
	for name, u := range map[string]string{"Proxy": cfg.Proxy, "Registrar": cfg.Registrar} {
		if u == "" {
			continue
		}
		if _, err := sipaddr.ParseURI(u); err != nil {
			return nil, fmt.Errorf("sipua: Config.%s: %w", name, err)
		}
	}
	if cfg.Expires == 0 {
		cfg.Expires = DefaultExpires
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.Username == "" {
		cfg.Username = a.User
	}
	u := &UA{cfg: cfg, log: log, aorHost: a.HostPort.Host, res: cfg.Resolver, serveDone: make(chan struct{})}
	if u.res == nil {
		u.res = &siplocate.Resolver{Logger: log}
	}
	u.aor = sip.Uri{Scheme: a.Scheme, User: a.User, Host: sipaddr.ToSipgoURIHost(a.HostPort.Host), Port: int(a.HostPort.Port)}

	// Our own socket, so the port is known before the first Via is
	// written and requests leave from the address the Contact names
	// (sipgo's UDP transport sends through the listener it serves).
	u.conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.Listen))
	if err != nil {
		return nil, fmt.Errorf("sipua: Config.Listen: %w", err)
	}
	u.local = u.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	u.local = netip.AddrPortFrom(u.local.Addr().Unmap(), u.local.Port())
	host := sipaddr.HostFromAddr(u.local.Addr())

	u.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent(a.User),
		sipgo.WithUserAgentHostname(u.aor.Host),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)),
	)
	if err != nil {
		u.conn.Close()
		return nil, fmt.Errorf("sipua: %w", err)
	}
	u.srv, err = sipgo.NewServer(u.ua, sipgo.WithServerLogger(log))
	if err == nil {
		// The Via host in sipgo's bare form (its writer brackets IPv6);
		// rport asks the server to say where it saw us from (RFC 3581).
		u.cli, err = sipgo.NewClient(u.ua,
			sipgo.WithClientHostname(sipaddr.ToSipgoViaHost(host)),
			sipgo.WithClientPort(int(u.local.Port())),
			sipgo.WithClientNAT(),
			// Every request leaves from our listening socket: sipgo's UDP
			// pool is keyed by local address for listeners, so without
			// this it opens a wildcard socket per destination (and in a
			// namespace without IPv4, an AF_INET one that cannot reach
			// an IPv6 server).
			sipgo.WithClientConnectionAddr(u.local.String()),
			sipgo.WithClientLogger(log))
	}
	if err != nil {
		u.ua.Close()
		u.conn.Close()
		return nil, fmt.Errorf("sipua: %w", err)
	}
	u.contact = sip.ContactHeader{Address: sip.Uri{
		Scheme: "sip", User: a.User,
		// Brackets for IPv6, mapped and zoned included (RFC 5118 §4.4,
		// §4.9): sipgo keeps a bracketed Uri.Host as is.
		Host: sipaddr.ToSipgoURIHost(host),
		Port: int(u.local.Port()),
	}}
	u.dcc = sipgo.NewDialogClientCache(u.cli, u.contact)
	u.dsc = sipgo.NewDialogServerCache(u.cli, u.contact)
	u.srv.OnInvite(u.onInvite)
	u.srv.OnAck(u.onAck)
	u.srv.OnBye(u.onBye)
	// The transaction layer answers CANCEL (200, then 487 to the INVITE);
	// the dialog sees it through its context. Without a handler sipgo
	// would also answer 405.
	u.srv.OnCancel(func(*sip.Request, sip.ServerTransaction) {})
	u.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	go func() {
		defer close(u.serveDone)
		if err := u.srv.ServeUDP(u.conn); err != nil && !errors.Is(err, net.ErrClosed) {
			u.log.Debug("sipua: serve ended", "err", err)
		}
	}()
	// ServeUDP registers the socket in sipgo's connection pool from its
	// own goroutine; a request sent before that opens a second socket on
	// the same address (EADDRINUSE). Wait for it, bounded.
	key := u.conn.LocalAddr().String()
	for deadline := time.Now().Add(2 * time.Second); ; {
		if _, err := u.ua.TransportLayer().GetConnection("udp", key); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = u.Close()
			return nil, fmt.Errorf("sipua: Config.Listen: %s: sipgo did not start serving", key)
		}
		time.Sleep(time.Millisecond)
	}
	log.Info("sipua: listening", "udp", u.local.String(), "contact", u.contact.Address.String())
	return u, nil
}

// laddr is the UA's socket address in sipgo's form, for requests sipgo
// builds without the client's defaults (BYE).
func (u *UA) laddr() sip.Addr {
	a := u.local.Addr()
	return sip.Addr{IP: net.IP(a.AsSlice()), Port: int(u.local.Port()), Hostname: a.String()}
}

// LocalAddr is the UDP address the UA sends from and listens on.
func (u *UA) LocalAddr() netip.AddrPort { return u.local }

// Contact is the Contact URI the UA writes, e.g. "sip:alice@[2001:db8::10]:5060".
func (u *UA) Contact() string { return u.contact.Address.String() }

// Close stops serving and closes the socket. Calls in progress are not
// hung up; Hangup them first.
func (u *UA) Close() error {
	var err error
	u.closeOnce.Do(func() {
		err = u.ua.Close()
		_ = u.conn.Close()
		select {
		case <-u.serveDone:
		case <-time.After(2 * time.Second):
		}
	})
	return err
}

// targets locates uri and keeps the UDP targets of the UA's family, in
// siplocate's order (RFC 3263, RFC 6724).
func (u *UA) targets(ctx context.Context, uri string) ([]netip.AddrPort, error) {
	ts, err := u.res.Locate(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("sipua: locate %s: %w", uri, err)
	}
	var out []netip.AddrPort
	for _, t := range ts {
		ap := netip.AddrPortFrom(t.AddrPort.Addr().Unmap(), t.AddrPort.Port())
		if t.Transport != siplocate.UDP || ap.Addr().Is6() != u.local.Addr().Is6() {
			u.log.Debug("sipua: target skipped", "target", t.String(), "ua", u.local.String())
			continue
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s (%d targets located)", ErrNoTarget, uri, len(ts))
	}
	return out, nil
}

// routeHeader is the pre-loaded loose Route to a located proxy address.
func routeHeader(ap netip.AddrPort) sip.Header {
	hp := sipaddr.HostPortFromAddrPort(ap)
	return sip.NewHeader("Route", "<sip:"+hp.String()+";lr>")
}

// Registration is the outcome of a successful REGISTER.
type Registration struct {
	// Server is the registrar (or proxy) address that answered.
	Server netip.AddrPort
	// Expires is the lifetime the registrar granted (Contact expires or
	// Expires header), or the one asked for when it said neither.
	Expires time.Duration
	// Received is where the server saw the request come from, from the
	// response's Via received and rport (RFC 3581); invalid when it did not
	// say. It differs from the UA's address behind a NAT.
	Received netip.AddrPort
}

// Register binds the AOR to the UA's Contact at the registrar (RFC 3261
// §10), answering a digest challenge with Username and Password.
// Targets are tried in order, the next one after AttemptTimeout, a
// transport error or a 503.
func (u *UA) Register(ctx context.Context) (*Registration, error) {
	return u.register(ctx, u.cfg.Expires)
}

// Unregister removes the UA's binding (Expires: 0).
func (u *UA) Unregister(ctx context.Context) error {
	_, err := u.register(ctx, 0)
	return err
}

func (u *UA) register(ctx context.Context, expires time.Duration) (*Registration, error) {
	regURI := u.cfg.Registrar
	if regURI == "" {
		regURI = "sip:" + u.aorHost.String()
	}
	var ruri sip.Uri
	if err := sip.ParseUri(regURI, &ruri); err != nil {
		return nil, fmt.Errorf("sipua: Config.Registrar: %w", err)
	}
	where := regURI
	if u.cfg.Proxy != "" {
		where = u.cfg.Proxy
	}
	targets, err := u.targets(ctx, where)
	if err != nil {
		return nil, err
	}
	secs := strconv.Itoa(int(expires / time.Second))
	var last error
	for _, t := range targets {
		req := sip.NewRequest(sip.REGISTER, ruri)
		to := &sip.ToHeader{Address: u.aor}
		from := &sip.FromHeader{Address: u.aor, Params: sip.NewParams()}
		from.Params.Add("tag", sip.GenerateTagN(16))
		ct := u.contact
		ct.Params = sip.NewParams()
		ct.Params.Add("expires", secs)
		req.AppendHeader(to)
		req.AppendHeader(from)
		req.AppendHeader(&ct)
		req.AppendHeader(sip.NewHeader("Expires", secs))
		req.AppendHeader(sip.NewHeader("User-Agent", u.cfg.UserAgent))
		req.SetTransport("UDP")
		req.SetDestination(t.String())

		actx, cancel := context.WithTimeout(ctx, u.cfg.AttemptTimeout)
		res, err := u.cli.Do(actx, req, sipgo.ClientRequestRegisterBuild)
		if err == nil && (res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired) && u.cfg.Password != "" {
			res, err = u.cli.DoDigestAuth(actx, req, res, sipgo.DigestAuth{Username: u.cfg.Username, Password: u.cfg.Password})
		}
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sipua: REGISTER: %w", ctx.Err())
		}
		if err != nil {
			u.log.Warn("sipua: REGISTER attempt failed", "target", t.String(), "err", err)
			last = fmt.Errorf("sipua: REGISTER to %s: %w", t, err)
			continue
		}
		if res.StatusCode == sip.StatusServiceUnavailable {
			last = &ResponseError{Method: "REGISTER", Code: res.StatusCode, Reason: res.Reason}
			continue
		}
		if !res.IsSuccess() {
			return nil, &ResponseError{Method: "REGISTER", Code: res.StatusCode, Reason: res.Reason}
		}
		reg := &Registration{Server: t, Expires: grantedExpires(res, expires), Received: viaReceived(res)}
		u.log.Info("sipua: registered", "server", t.String(), "expires", reg.Expires, "received", reg.Received.String())
		return reg, nil
	}
	return nil, last
}

// grantedExpires reads the lifetime the registrar granted (RFC 3261
// §10.2.4): the expires parameter of our Contact, else Expires.
func grantedExpires(res *sip.Response, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			if v, ok := c.Params.Get("expires"); ok {
				if n, err := strconv.Atoi(v); err == nil {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// viaReceived returns received:rport of the response's top Via, read
// with sipaddr: received= comes bare or bracketed (RFC 5118 §4.5).
func viaReceived(res *sip.Response) netip.AddrPort {
	v := res.Via()
	if v == nil {
		return netip.AddrPort{}
	}
	r, ok := v.Params.Get("received")
	if !ok {
		return netip.AddrPort{}
	}
	h, err := sipaddr.ParseReceived(r)
	if err != nil || !h.IsIP() {
		return netip.AddrPort{}
	}
	port := v.Port
	if p, ok := v.Params.Get("rport"); ok && p != "" {
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
			port = n
		}
	}
	return netip.AddrPortFrom(h.Addr().Unmap(), uint16(port))
}

// checkHosts applies RFC 5118 to what sipgo parsed of an incoming request:
// the Contact host and the top Via host must be valid references (sipgo
// does not look inside brackets).
func checkHosts(req *sip.Request) error {
	if c := req.Contact(); c != nil {
		if _, err := sipaddr.FromSipgoURIHost(c.Address.Host); err != nil {
			return fmt.Errorf("bad Contact host: %w", err)
		}
	}
	if v := req.Via(); v != nil {
		if _, err := sipaddr.FromSipgoViaHost(v.Host); err != nil {
			return fmt.Errorf("bad Via host: %w", err)
		}
	}
	if _, err := sipaddr.FromSipgoURIHost(req.Recipient.Host); err != nil {
		return fmt.Errorf("bad Request-URI host: %w", err)
	}
	return nil
}
