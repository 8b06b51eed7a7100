//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// Metric label values. There is deliberately no user label: REST usernames
// are unbounded, and per-user series grew coturn's memory without bound.
const (
	dirClientToPeer = "client_to_peer"
	dirPeerToClient = "peer_to_client"
)

var families = []netaddr.Family{netaddr.IPv4, netaddr.IPv6}

// dirCounters are the per-packet counters of one relay family, bound to
// their label values once at start-up.
type dirCounters struct {
	toPeerPackets, toPeerBytes     prometheus.Counter
	fromPeerPackets, fromPeerBytes prometheus.Counter
}

// dropCounters are isthmus_relay_drops_total bound per reason.
type dropCounters struct {
	bandwidth    prometheus.Counter // over allocation_bandwidth
	sendError    prometheus.Counter // the kernel refused a relay send
	requestError prometheus.Counter // pion could not handle a client datagram
	gateReject   prometheus.Counter // answered by the request gate (401/403/400/440/442)
	noPermission prometheus.Counter // a peer datagram with no permission (pion drops it)
	oversized    prometheus.Counter // a client datagram over pion's 1600-byte MTU
	peerPolicy   prometheus.Counter // to or from a permitted peer a reloaded policy denies, or to a non-relayed port of a relay IP
	// badFingerprint: a request whose FINGERPRINT does not match, discarded
	// unanswered (RFC 8489 §7.3).
	badFingerprint prometheus.Counter
	// authThrottled: a signed request from a source over its wrong-password
	// budget, dropped unanswered (throttle.go).
	authThrottled prometheus.Counter
}

// metrics holds every collector of one Server.
type metrics struct {
	allocations     *prometheus.GaugeVec
	allocationsMade *prometheus.CounterVec
	packets         *prometheus.CounterVec
	bytes           *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	peerDenials     *prometheus.CounterVec
	quotaRejections *prometheus.CounterVec
	dropsVec        *prometheus.CounterVec
	streamCloses    *prometheus.CounterVec
	draining        prometheus.Gauge
	socketBuffer    *prometheus.GaugeVec
	certNotAfter    prometheus.Gauge

	dir   [2]*dirCounters // by familyIndex
	drops dropCounters
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "isthmus", "relay"
	m := &metrics{
		allocations: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "allocations", Help: "Live allocations by client address family and relayed address family (family)."},
			[]string{"client_family", "family"}),
		allocationsMade: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "allocations_created_total", Help: "Allocations created, by client address family and relayed address family (family)."},
			[]string{"client_family", "family"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "packets_total", Help: "Datagrams on relay sockets by relayed address family: sent to peers (client_to_peer), received from peers (peer_to_client; those then dropped are also in drops_total)."},
			[]string{"direction", "family"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_total", Help: "Payload bytes on relay sockets, as packets_total."},
			[]string{"direction", "family"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "auth_failures_total", Help: "Rejected credentials by reason (never by user)."},
			[]string{"reason"}),
		peerDenials: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "peer_denials_total", Help: "Permissions and channels refused by the peer policy (403), by reason."},
			[]string{"reason"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "quota_rejections_total", Help: "Allocations refused: user (486), total, ports, draining (508)."},
			[]string{"quota"}),
		dropsVec: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "drops_total", Help: "Datagrams not relayed, by reason."},
			[]string{"reason"}),
		streamCloses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "stream_closes_total", Help: "TCP/TLS connections the relay closed or refused: bad_frame, frame_too_large, truncated_frame, auth_timeout, unauthenticated_limit; accept_error counts failed accepts (e.g. out of descriptors), retried."},
			[]string{"reason"}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "draining", Help: "1 while the relay drains (no new allocations)."}),
		socketBuffer: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "socket_buffer_bytes", Help: "Socket buffer the kernel granted the listeners, by kind."},
			[]string{"kind"}),
		// Registered when TLS is on (installCert): a 0 without TLS would
		// read as a certificate expired in 1970.
		certNotAfter: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "tls_cert_not_after_seconds", Help: "NotAfter of the TLS certificate served to new handshakes, Unix seconds (only with TLS)."}),
	}
	for _, c := range []prometheus.Collector{m.allocations, m.allocationsMade, m.packets, m.bytes,
		m.authFailures, m.peerDenials, m.quotaRejections, m.dropsVec, m.streamCloses, m.draining, m.socketBuffer} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	for _, f := range families {
		l := f.Label()
		m.dir[familyIndex(f)] = &dirCounters{
			toPeerPackets:   m.packets.WithLabelValues(dirClientToPeer, l),
			toPeerBytes:     m.bytes.WithLabelValues(dirClientToPeer, l),
			fromPeerPackets: m.packets.WithLabelValues(dirPeerToClient, l),
			fromPeerBytes:   m.bytes.WithLabelValues(dirPeerToClient, l),
		}
		for _, cf := range families {
			m.allocations.WithLabelValues(cf.Label(), l)
			m.allocationsMade.WithLabelValues(cf.Label(), l)
		}
	}
	m.drops = dropCounters{
		bandwidth:    m.dropsVec.WithLabelValues("bandwidth"),
		sendError:    m.dropsVec.WithLabelValues("send_error"),
		requestError: m.dropsVec.WithLabelValues("request_error"),
		gateReject:   m.dropsVec.WithLabelValues("rejected_request"),
		noPermission: m.dropsVec.WithLabelValues("no_permission"),
		oversized:    m.dropsVec.WithLabelValues("oversized"),
		peerPolicy:   m.dropsVec.WithLabelValues("peer_policy"),

		badFingerprint: m.dropsVec.WithLabelValues("bad_fingerprint"),
		authThrottled:  m.dropsVec.WithLabelValues("auth_throttled"),
	}
	for _, r := range streamCloseReasons {
		m.streamCloses.WithLabelValues(r)
	}
	for _, r := range []string{authUnknownUser, authExpired, authBadIntegrity, authWrongRealm, authMalformed, authStreamTimeout, authStaleNonce, authThrottled} {
		m.authFailures.WithLabelValues(r)
	}
	for _, q := range []string{"user", "total", "ports", "draining"} {
		m.quotaRejections.WithLabelValues(q)
	}
	return m, nil
}

func (m *metrics) quotaRejected(q string) { m.quotaRejections.WithLabelValues(q).Inc() }

// streamClosed counts a TCP/TLS connection closed or refused for reason.
func (s *Server) streamClosed(reason string) { s.metrics.streamCloses.WithLabelValues(reason).Inc() }

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range []prometheus.Collector{m.allocations, m.allocationsMade, m.packets, m.bytes,
		m.authFailures, m.peerDenials, m.quotaRejections, m.dropsVec, m.streamCloses, m.draining, m.socketBuffer, m.certNotAfter} {
		reg.Unregister(c)
	}
}

// Ready returns nil when the relay takes new allocations on every
// listener, else why not: draining, closed, or a TCP/TLS listener whose
// accepts keep failing (out of descriptors). /readyz serves it.
func (s *Server) Ready() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.draining.Load() {
		return errors.New("draining")
	}
	for _, l := range s.listeners {
		if gl, ok := l.(*gatedListener); ok {
			if err := gl.health(); err != nil {
				return fmt.Errorf("listener %s: %w", gl.Addr(), err)
			}
		}
	}
	return nil
}

// Handler serves /metrics (the registry New was given, when it is also a
// prometheus.Gatherer, else the default gatherer), /healthz (the process is
// up) and /readyz (Ready: listening and not draining, else 503). The
// Metrics setting serves it on its own listener; a program embedding the
// relay can leave Metrics empty and mount Handler on its own server.
func (s *Server) Handler() http.Handler {
	g, isG := s.reg.(prometheus.Gatherer)
	if !isG {
		g = prometheus.DefaultGatherer
	}
	mux := http.NewServeMux()
	// ContinueOnError: a collector that fails (the process collector
	// cannot open /proc while descriptors are exhausted) must not turn the
	// whole scrape into a 500.
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// startHTTP serves Handler on addr.
func (s *Server) startHTTP(addr string) error {
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return listenError("metrics", addr, err)
	}
	ln := newReserveListener(tl)
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.metricsAddr = ln.Addr().String()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", slog.Any("error", err))
		}
	}()
	return nil
}

func (s *Server) stopHTTP() {
	if s.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
}
