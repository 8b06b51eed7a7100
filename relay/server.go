package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/isthmusrelay/isthmus/internal/logsample"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// ErrRestartRequired is wrapped by Reload when the new configuration changes
// fields that only a restart applies (listeners, relay IPs, ports, realm,
// TLS, buffers, metrics address, log level). The reloadable part is applied
// anyway.
var ErrRestartRequired = errors.New("relay: reload: some fields need a restart")

// ErrClosed is returned by Reload and Drain after Close.
var ErrClosed = errors.New("relay: server closed")

// Server is a running TURN relay. Create it with New, stop it with Drain and
// Close.
type Server struct {
	cfg     Config
	res     *resolved
	log     *slog.Logger
	denyLog *slog.Logger
	reg     prometheus.Registerer

	turn    *turn.Server
	metrics *metrics
	// opsMetrics are the operational series of metrics_ops.go.
	opsMetrics *opsMetrics
	gen        *addrGenerator
	pool       *portPools
	hooks      hooks
	gate       *gate

	creds    atomic.Pointer[credentials]
	policy   atomic.Pointer[netaddr.PeerPolicy]
	limits   atomic.Pointer[limits]
	certs    certStore                  // TLS certificate of new handshakes (tlscert.go)
	fdCap    int                        // allocations the descriptor limit holds (quota.go); 0 = no cap
	alt      atomic.Pointer[alternates] // nil: no alternate_servers
	verified verifiedKeys
	allocs   allocTracker

	draining atomic.Bool
	closed   atomic.Bool
	idle     chan struct{}

	udp         []*net.UDPConn
	listeners   []net.Listener
	listenAddrs []netip.AddrPort
	relayIPs    []relayIP
	own         []netip.Addr

	http        *http.Server
	metricsAddr string
	wg          sync.WaitGroup
	readers     sync.WaitGroup

	mu        sync.Mutex // serialises Reload
	closeOnce sync.Once
	closeErr  error

	checkOnly bool // Check: probe addresses against the host's, bind nothing
}

// New validates cfg, binds every listener and starts serving. log receives
// structured logs (its level is the caller's; only cfg.LogLevel LogTrace
// enables pion's per-packet logs, at LevelTrace); nil discards them. reg
// receives the isthmus_relay_* metrics; nil means a private registry. When
// cfg.Metrics is set, it serves Handler.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:     cfg,
		res:     res,
		log:     log,
		denyLog: slog.New(logsample.New(log.Handler(), 10, time.Second)),
		reg:     reg,
		idle:    make(chan struct{}, 1),
		allocs:  allocTracker{live: map[allocKey]liveAlloc{}},
	}
	s.gate = newGate(s, cfg)
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	if s.opsMetrics, err = newOpsMetrics(reg); err != nil {
		s.metrics.unregister(reg)
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.cleanupFailedStart()
		}
	}()

	s.hooks = defaultHooks()
	if installHooks != nil {
		s.hooks = installHooks(s)
		if s.hooks.err != nil {
			return nil, s.hooks.err
		}
	}
	s.creds.Store(newCredentials(cfg.Realm, res.users, res.secrets))
	s.limits.Store(&limits{maxAllocations: cfg.MaxAllocations, userQuota: cfg.UserQuota, bandwidth: cfg.AllocationBandwidth})
	s.alt.Store(res.alternates)

	if err := s.pickRelayIPs(); err != nil {
		return nil, err
	}
	bufs := sockBufs{recv: cfg.RecvBuffer, send: cfg.SendBuffer, mark: forcedMark(cfg.DSCP)}
	s.pool = newPortPools(res.minPort, res.maxPort, s.relayIPs)
	s.gen = newAddrGenerator(s.relayIPs, s.pool, sockBufs{recv: cfg.RelayRecvBuffer, send: cfg.SendBuffer, mark: forcedMark(cfg.DSCP)}, s)
	s.policy.Store(newPeerPolicy(res, cfg.AllowLoopbackPeers, s.own))

	sc := turn.ServerConfig{
		LoggerFactory:       pionLogs(log, res.logLevel == LevelTrace, &s.metrics.drops),
		Realm:               cfg.Realm,
		AuthHandler:         s.authHandle,
		QuotaHandler:        s.allowAllocation,
		StrictAddressFamily: true, // RFC 6156: no REQUESTED-ADDRESS-FAMILY means IPv4
	}
	if err := s.bindListeners(&sc, bufs); err != nil {
		return nil, err
	}
	s.fdCap = descriptorCap(nofileLimit(), len(s.udp)+len(s.listeners))
	s.limits.Store(s.newLimits(cfg))
	sc.EventHandler = chainEvents(s.ownEvents(), s.hooks.events)
	if s.turn, err = turn.NewServer(sc); err != nil {
		return nil, fmt.Errorf("relay: start pion/turn: %w", err)
	}
	if cfg.Metrics != "" {
		if err := s.startHTTP(cfg.Metrics); err != nil {
			return nil, err
		}
	}
	if err := s.opsMetrics.registerServer(s, reg); err != nil {
		return nil, err
	}
	ok = true

	listen := make([]string, 0, len(s.listenAddrs))
	for _, a := range s.ListenAddrs() {
		listen = append(listen, a.String())
	}
	relays := make([]string, 0, len(s.relayIPs))
	for _, r := range s.relayIPs {
		if r.advertise != r.bind {
			relays = append(relays, r.bind.String()+"="+r.advertise.String())
		} else {
			relays = append(relays, r.bind.String())
		}
	}
	s.log.Info("relay ready", slog.Any("listen", listen), slog.Any("relay_ips", relays), slog.String("metrics", s.metricsAddr), slog.String("realm", cfg.Realm), slog.Int("min_port", res.minPort), slog.Int("max_port", res.maxPort), slog.Int("udp_sockets_per_address", s.socketsPerAddress()),
		slog.Int("relay_ports_per_ip", s.pool.len()), slog.Int("relay_addresses", s.pool.total()), slog.Int("max_allocations", s.limits.Load().maxAllocations),
		slog.Int("descriptor_cap", s.fdCap), slog.Int("user_quota", cfg.UserQuota))
	return s, nil
}

func (s *Server) socketsPerAddress() int {
	if s.res.listenerSKs > 0 {
		return s.res.listenerSKs
	}
	return runtime.GOMAXPROCS(0)
}

// pickRelayIPs resolves relay_ips (or detects them) and the advertised
// addresses, and collects the relay's own addresses for the peer policy.
func (s *Server) pickRelayIPs() error {
	ips := s.res.relayIPs
	if len(ips) == 0 {
		var fallback []netaddr.Family
		ips, fallback = detectRelayIPs(s.res.listen, interfaceAddrs())
		for _, f := range fallback {
			s.log.Warn("no usable global address for relaying: using loopback relay addresses; set relay_ips for a reachable relay", slog.String("family", f.String()))
		}
	}
	if len(ips) == 0 {
		return fieldErr("relay_ips", "no relay address found: set relay_ips")
	}
	for ra := range s.res.external {
		if !slices.Contains(ips, ra) {
			return fieldErr("external_ips", "%s is not a relay address (relay IPs: %v)", ra, ips)
		}
	}
	for _, ip := range ips {
		// Fail at start, naming the field, rather than at the first Allocate.
		// Check (isthmus relay --check) binds nothing: it asks whether the
		// address is one of this host's instead of binding it.
		err := s.probeRelayIP(ip)
		if err != nil {
			if len(s.res.relayIPs) == 0 && s.isListenIP(ip) {
				// Detected from a specific listen address: that is the
				// setting to fix.
				return fieldErr("listen", "%s is not an address of this host: %v", ip, err)
			}
			return fieldErr("relay_ips", "%s cannot be bound on this host: %v", ip, err)
		}
		adv := ip
		if e, ok := s.res.external[ip]; ok {
			adv = e
		}
		s.relayIPs = append(s.relayIPs, relayIP{bind: ip, advertise: adv})
	}
	for _, r := range nonGlobalRelayIPs(s.relayIPs) {
		if s.cfg.StrictRelayIPs {
			return fieldErr("strict_relay_ips", "relay IP %s (advertised as %s) is not a global address: set relay_ips to a global address, or external_ips to the public address it is reached by", r.bind, r.advertise)
		}
		if len(s.res.relayIPs) == 0 && !r.bind.IsLoopback() {
			s.log.Warn("relay IP detected is not a global address and no external_ips maps it: peers on the Internet cannot reach it; set relay_ips and external_ips (strict_relay_ips refuses to start)",
				slog.String("relay_ip", r.bind.String()))
		}
	}
	s.own = ownAddresses(s.res.listen, s.relayIPs, interfaceAddrs())
	return nil
}

// isListenIP reports whether ip is one of the specific listen addresses.
func (s *Server) isListenIP(ip netip.Addr) bool {
	for _, ap := range s.res.listen {
		if ap.Addr() == ip {
			return true
		}
	}
	return false
}

// ownAddresses are the addresses the peer policy denies as the relay's own:
// relay and advertised IPs, specific listen IPs, and, when a listener is a
// wildcard (the default), every address of the host (ifAddrs): the relay
// answers on all of them, so a peer there would loop the relay into itself
// or reach, from inside, services the host's firewall keeps from the
// Internet. Loopback addresses are left to the loopback rule; addresses
// added to the host after start are not included.
func ownAddresses(listen []netip.AddrPort, relays []relayIP, ifAddrs []netip.Addr) []netip.Addr {
	var own []netip.Addr
	for _, r := range relays {
		own = appendUnique(own, r.bind, r.advertise)
	}
	wildcard := false
	for _, ap := range listen {
		if ap.Addr().IsUnspecified() {
			wildcard = true
		} else {
			own = appendUnique(own, ap.Addr().Unmap())
		}
	}
	if wildcard {
		for _, a := range ifAddrs {
			// Loopback stays with its own rule (allow_loopback_peers).
			if a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() {
				own = appendUnique(own, a.Unmap().WithZone(""))
			}
		}
	}
	return own
}

func appendUnique(l []netip.Addr, as ...netip.Addr) []netip.Addr {
	for _, a := range as {
		if !slices.Contains(l, a) {
			l = append(l, a)
		}
	}
	return l
}

// bindListeners creates every listener socket (listen.go) and hands it to
// pion behind the request gate. It is the one place listeners reach pion.
func (s *Server) bindListeners(sc *turn.ServerConfig, bufs sockBufs) error {
	n := s.socketsPerAddress()
	var granted bufResult
	for _, ap := range s.res.listen {
		conns, tl, g, err := listenPair(ap, n, bufs)
		if err != nil {
			if ap.Addr().IsUnspecified() && isFamilyUnavailable(err) && len(s.res.listen) > 1 {
				s.log.Warn("address family unavailable on this host; skipping listener", slog.Any("error", err), slog.String("listen", ap.String()))
				continue
			}
			return listenError("listen", ap.String(), err)
		}
		granted = g
		s.udp = append(s.udp, conns...)
		bound := netip.AddrPortFrom(ap.Addr(), conns[0].LocalAddr().(*net.UDPAddr).AddrPort().Port())
		s.listenAddrs = append(s.listenAddrs, bound)
		for _, c := range conns {
			s.readers.Add(1)
			sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
				PacketConn:            &gatedPacketConn{PacketConn: s.hooks.wrapListener(c), gate: s.gate, done: s.readers.Done},
				RelayAddressGenerator: s.gen,
				PermissionHandler:     s.permit,
			})
		}
		s.addStreamListener(sc, markTCP(tl, bufs.mark))
	}
	if len(s.udp) == 0 {
		return fieldErr("listen", "no listener could be bound")
	}
	s.metrics.socketBuffer.WithLabelValues("recv").Set(float64(granted.recv))
	s.metrics.socketBuffer.WithLabelValues("send").Set(float64(granted.send))
	if bufs.recv > 0 && granted.recv < bufs.recv {
		s.log.Warn("kernel granted a smaller receive buffer (raise net.core.rmem_max or run with CAP_NET_ADMIN)", slog.Int("asked", bufs.recv), slog.Int("granted", granted.recv))
	} else {
		s.log.Info("socket buffers", slog.Int("recv_buffer", granted.recv), slog.Int("send_buffer", granted.send))
	}

	if s.cfg.TLSCert != "" {
		cert, notAfter, err := loadCert(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fieldErr("tls_cert", "%v", err)
		}
		s.installCert(cert, notAfter, time.Now())
		tc := &tls.Config{GetCertificate: s.certs.get, MinVersion: tls.VersionTLS12}
		for _, ap := range s.res.tlsListen {
			tl, err := listenTCP(ap, forcedMark(s.cfg.DSCP))
			if err != nil {
				if ap.Addr().IsUnspecified() && isFamilyUnavailable(err) {
					s.log.Warn("address family unavailable; skipping TLS listener", slog.Any("error", err), slog.String("tls_listen", ap.String()))
					continue
				}
				return listenError("tls_listen", ap.String(), err)
			}
			s.listenAddrs = append(s.listenAddrs, netip.AddrPortFrom(ap.Addr(), uint16(tl.Addr().(*net.TCPAddr).Port))) //nolint:gosec // a port
			s.addStreamListener(sc, tls.NewListener(markTCP(tl, forcedMark(s.cfg.DSCP)), tc))
		}
	}
	return nil
}

// listenPair binds the UDP sockets and the TCP listener of one listen
// address on the same port. With port 0 the kernel picks the UDP port, which
// may be taken for TCP: then it tries another, a few times.
func listenPair(ap netip.AddrPort, n int, bufs sockBufs) ([]*net.UDPConn, *net.TCPListener, bufResult, error) {
	const tries = 8
	var lastErr error
	for try := 0; try < tries; try++ {
		conns, g, err := listenUDP(ap, n, bufs)
		if err != nil {
			return nil, nil, g, err
		}
		port := conns[0].LocalAddr().(*net.UDPAddr).AddrPort().Port()
		tl, err := listenTCP(netip.AddrPortFrom(ap.Addr(), port), bufs.mark)
		if err == nil {
			return conns, tl, g, nil
		}
		for _, c := range conns {
			_ = c.Close()
		}
		lastErr = err
		if ap.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, bufResult{}, lastErr
}

func (s *Server) addStreamListener(sc *turn.ServerConfig, l net.Listener) {
	gl := &gatedListener{Listener: l, gate: s.gate, conns: map[*gatedStreamConn]struct{}{}}
	s.listeners = append(s.listeners, gl)
	sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
		Listener:              gl,
		RelayAddressGenerator: s.gen,
		PermissionHandler:     s.permit,
	})
}

// cleanupFailedStart releases what a failed New had bound.
func (s *Server) cleanupFailedStart() {
	if s.turn != nil {
		_ = s.turn.Close()
	} else {
		for _, c := range s.udp {
			_ = c.Close()
		}
		for _, l := range s.listeners {
			_ = l.Close()
		}
	}
	s.stopHTTP()
	if s.hooks.close != nil {
		_ = s.hooks.close() // the data plane's workers and sockets
	}
	s.wg.Wait()
	if s.metrics != nil {
		s.metrics.unregister(s.reg)
	}
	s.opsMetrics.unregister(s.reg)
}

// authHandle is the turn.AuthHandler. The request gate has normally already
// verified the request and left the key that signed it; otherwise the first
// candidate key is returned and pion checks it.
func (s *Server) authHandle(ra *turn.RequestAttributes) (string, []byte, bool) {
	now := time.Now()
	if e, ok := s.verified.take(ra.SrcAddr, ra.Username, now); ok {
		return e.userID, e.key, true
	}
	userID, keys, reason := s.creds.Load().lookup(ra.Username, ra.Realm, now)
	if reason != "" || len(keys) == 0 {
		return "", nil, false
	}
	return userID, keys[0], true
}

// ListenAddrs returns the bound UDP/TCP(/TLS) listen addresses, with the
// actual port when the configuration asked for port 0. All per-core UDP
// sockets of one address share its port; UDP and TCP of one listen address
// share it too.
func (s *Server) ListenAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(s.listenAddrs))
	for _, a := range s.listenAddrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// MetricsAddr returns the bound address of the metrics HTTP server, or ""
// when it is off.
func (s *Server) MetricsAddr() string { return s.metricsAddr }

// RelayIPs returns the addresses relayed transport addresses are bound on.
func (s *Server) RelayIPs() []netip.Addr {
	out := make([]netip.Addr, 0, len(s.relayIPs))
	for _, r := range s.relayIPs {
		out = append(out, r.bind)
	}
	return out
}

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return s.liveAllocations() }

func (s *Server) signalIdle() {
	select {
	case s.idle <- struct{}{}:
	default:
	}
}

// Drain stops new allocations (they get 508 Insufficient Capacity: RFC 8656
// §7.2 has no "going away" code, and 508 is the server-wide "cannot
// allocate now" answer that makes clients try another server, whereas 486
// would blame the user's quota) and waits until every existing allocation
// has ended or ctx is done. Refreshes, permissions and channels keep working
// meanwhile. /readyz reports 503 from the start of the drain.
func (s *Server) Drain(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if !s.draining.Swap(true) {
		s.metrics.draining.Set(1)
		s.log.Info("draining: no new allocations", slog.Int("allocations", s.liveAllocations()))
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		n := s.liveAllocations()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("relay: drain: %d allocations still live: %w", n, ctx.Err())
		case <-s.idle:
		case <-tick.C:
		}
	}
}

// closeWait bounds how long Close waits for pion's read loops and
// allocations to finish after their sockets are closed.
const closeWait = 3 * time.Second

// Close stops the relay at once: listeners and every allocation are closed,
// the metrics server stops, and the metrics are unregistered. It waits
// (bounded) for pion's goroutines to let go of the sockets.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stopHTTP()
		err := s.turn.Close()
		done := make(chan struct{})
		go func() { s.readers.Wait(); close(done) }()
		deadline := time.NewTimer(closeWait)
		defer deadline.Stop()
		select {
		case <-done:
		case <-deadline.C:
		}
		s.gate.dual.closeAll() // dual allocations' IPv6 halves (dualalloc.go)
		// pion closes each allocation manager after its read loop ends;
		// relay sockets give their ports back as they close.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
	wait:
		for s.pool.inUse() > 0 {
			select {
			case <-deadline.C:
				break wait
			case <-tick.C:
			}
		}
		if herr := s.hooks.close(); herr != nil && err == nil {
			err = herr
		}
		s.wg.Wait()
		s.metrics.unregister(s.reg)
		s.opsMetrics.unregister(s.reg)
		if err != nil {
			s.closeErr = fmt.Errorf("relay: close: %w", err)
		}
		s.log.Info("relay closed")
	})
	return s.closeErr
}

// Reload applies a new configuration without dropping allocations: users,
// auth secrets, peer policy (allow/deny/loopback) and quotas are swapped
// atomically. The new peer policy also applies to live permissions: traffic
// to and from a peer it denies stops at once (the allocation stays). Fields that need a restart are left as they are and named
// in an error wrapping ErrRestartRequired (the rest is still applied).
func (s *Server) Reload(cfg Config) error {
	if s.closed.Load() {
		return ErrClosed
	}
	res, err := cfg.resolve()
	s.opsMetrics.reloaded(err == nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cfg
	restart := restartFields(old, cfg)
	// The realm is fixed inside pion for the server's life, so keys are
	// always computed with the running realm.
	s.creds.Store(newCredentials(old.Realm, reRealmUsers(cfg, old.Realm, res.users), res.secrets))
	pol := newPeerPolicy(res, cfg.AllowLoopbackPeers, s.own)
	s.policy.Store(pol)
	// Live permissions to peers the new policy denies stop relaying now
	// (data plane here, pion's path in relayConn), rather than when they
	// expire; the client's refresh of them is already answered 403.
	suspended := s.hooks.filterPeers(func(a netip.Addr) bool { return pol.Check(a).Allowed })
	s.limits.Store(s.newLimits(cfg))
	s.alt.Store(res.alternates)
	s.cfg = keepRestartFields(cfg, old)
	s.reloadCert()
	s.log.Info("config reloaded", slog.Int("users", len(res.users)), slog.Int("auth_secrets", len(res.secrets)), slog.Int("allocations", s.liveAllocations()), slog.Int("permissions_suspended", suspended), slog.Any("needs_restart", restart))
	if len(restart) > 0 {
		sort.Strings(restart)
		return fmt.Errorf("%w: %s", ErrRestartRequired, strings.Join(restart, ", "))
	}
	return nil
}

// reRealmUsers recomputes plaintext users' keys with the running realm.
func reRealmUsers(cfg Config, realm string, users []staticUser) []staticUser {
	if cfg.Realm == realm {
		return users
	}
	_, all, _ := cfg.fileSecrets() // read once more by resolve just before
	out := make([]staticUser, 0, len(all))
	for _, u := range all {
		if su, err := parseUser(u, realm); err == nil {
			out = append(out, su)
		}
	}
	return out
}
