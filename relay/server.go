//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isthmusrelay/isthmus/internal/logsample"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/netaddr"
)

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
	fwd        Forwarder
	// planeEvents are the Forwarder's handlers alone, for the events the
	// relay itself raises (dual allocations' second family).
	planeEvents turn.EventHandler
	gate        *gate

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
	// relayed are the relay's bound and advertised relay IPs: allowed as
	// peers only on live relayed ports (relayedPortOK).
	relayed []netip.Addr

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
// cfg.Metrics is set, it serves Handler. opts (WithForwarder) replace
// what cfg selects.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Server, error) {
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

	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if s.fwd = o.forwarder; s.fwd == nil {
		if s.fwd, err = s.newForwarder(); err != nil {
			return nil, err
		}
	}
	s.planeEvents = s.fwd.Events(turn.EventHandler{})
	s.creds.Store(newCredentials(cfg.Realm, res.users, res.secrets))
	s.limits.Store(&limits{maxAllocations: cfg.MaxAllocations, userQuota: cfg.UserQuota, bandwidth: cfg.AllocationBandwidth})
	s.alt.Store(res.alternates)

	if err := s.pickRelayIPs(); err != nil {
		return nil, err
	}
	bufs := sockBufs{recv: cfg.RecvBuffer, send: cfg.SendBuffer, mark: forcedMark(cfg.DSCP)}
	s.pool = newPortPools(res.minPort, res.maxPort, s.relayIPs)
	s.gen = newAddrGenerator(s.relayIPs, s.pool, sockBufs{recv: cfg.RelayRecvBuffer, send: cfg.SendBuffer, mark: forcedMark(cfg.DSCP)}, s)
	s.policy.Store(newPeerPolicy(res, cfg.AllowLoopbackPeers, s.own, s.relayed))
	s.fwd.PionPeers(s.relayed)

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
	sc.EventHandler = s.fwd.Events(s.ownEvents())
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
	for _, r := range s.relayIPs {
		s.relayed = appendUnique(s.relayed, r.bind, r.advertise)
	}
	return nil
}

// ownAddresses are the addresses the peer policy denies as the relay's own:
// relay and advertised IPs, listen IPs, and every address of the host
// (ifAddrs), whichever listen addresses are configured: a peer there would
// loop the relay into itself or reach, from inside, services the host's
// firewall keeps from the Internet. Loopback addresses are left to the
// loopback rule; addresses added to the host after start are not included.
func ownAddresses(listen []netip.AddrPort, relays []relayIP, ifAddrs []netip.Addr) []netip.Addr {
	var own []netip.Addr
	for _, r := range relays {
		own = appendUnique(own, r.bind, r.advertise)
	}
	for _, ap := range listen {
		if !ap.Addr().IsUnspecified() {
			own = appendUnique(own, ap.Addr().Unmap())
		}
	}
	for _, a := range ifAddrs {
		// Loopback stays with its own rule (allow_loopback_peers).
		if a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() {
			own = appendUnique(own, a.Unmap().WithZone(""))
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
	if s.fwd != nil {
		_ = s.fwd.Close() // the data plane's workers and sockets
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
		if herr := s.fwd.Close(); herr != nil && err == nil {
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
