//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
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

// The counter table: every counter series the relay exports, whichever
// path counted it (pion's, through relayConn and the gate, or the data
// plane, whose per-core Stats are added at scrape time). One series per
// fact, one name per drop reason. A new counter is a constant below, a row
// in counterRows and its count site; docs/relay.md documents it.
type ctrID int

// Series of the counter table.
const (
	ctrPackets     ctrID = 0                                // + path*4 + direction*2 + family
	ctrBytes             = ctrPackets + 8                   // + path*4 + direction*2 + family
	ctrDrops             = ctrBytes + 8                     // + dropReason
	ctrSlowpath          = ctrDrops + ctrID(numDropReasons) // + socket: listener, relay
	ctrIndications       = ctrSlowpath + 2                  // + direction
	ctrWakeups           = ctrIndications + 2               // one
	ctrBatchCalls        = ctrWakeups + 1                   // + op: read, write, raw_write
	ctrReadErrors        = ctrBatchCalls + 3                // one
	numCtr               = ctrReadErrors + 1
)

// Paths, directions and families as counter-table offsets.
const (
	pathPion, pathPlane    = 0, 1
	dirToPeer, dirToClient = 0, 1
)

// pktID is the packets (or bytes, base ctrBytes) series of one path,
// direction and relayed family (familyIndex).
func pktID(base ctrID, path, dir, fam int) ctrID { return base + ctrID(path*4+dir*2+fam) }

// dropReason is a value of isthmus_relay_drops_total's reason label: the
// one vocabulary of both paths (the data plane's reasons map here by name).
type dropReason int

// Drop reasons.
const (
	dropBandwidth         dropReason = iota // over allocation_bandwidth
	dropSendError                           // the kernel refused a send (or the send buffer was full)
	dropRequestError                        // pion could not handle a client datagram
	dropRejectedRequest                     // answered by the request gate (401/403/400/440/442)
	dropNoPermission                        // a peer datagram with no permission
	dropOversized                           // a datagram over the read buffer (pion 1600 bytes, data plane SlotSize)
	dropPeerPolicy                          // to or from a permitted peer a reloaded policy denies
	dropBadFingerprint                      // FINGERPRINT mismatch, discarded unanswered (RFC 8489 §7.3)
	dropAuthThrottled                       // over the wrong-password budget (throttle.go)
	dropMalformed                           // ChannelData length beyond the datagram (RFC 8656 §12.5)
	dropNoAllocation                        // ChannelData or Send from a client without an allocation
	dropNoChannel                           // ChannelData on an unbound channel
	dropToUnpermittedPeer                   // a client's data toward a peer without a permission
	dropQueueFull                           // the data plane's queue to pion was full
	dropNoListener                          // no client-facing socket left for the allocation
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	"bandwidth", "send_error", "request_error", "rejected_request", "no_permission", "oversized",
	"peer_policy", "bad_fingerprint", "auth_throttled", "malformed", "no_allocation", "no_channel",
	"to_unpermitted_peer", "queue_full", "no_listener",
}

// counterRow is one series: its metric name, help and label pairs.
type counterRow struct {
	name, help string
	labels     []string // name, value, name, value...
}

// counterRows returns the table, indexed by ctrID.
func counterRows() [numCtr]counterRow {
	var t [numCtr]counterRow
	paths := [2]string{"pion", "dataplane"}
	dirs := [2]string{dirClientToPeer, dirPeerToClient}
	for path := range 2 {
		for dir := range 2 {
			for _, f := range families {
				l := []string{"direction", dirs[dir], "family", f.Label(), "path", paths[path]}
				t[pktID(ctrPackets, path, dir, familyIndex(f))] = counterRow{"isthmus_relay_packets_total",
					"Datagrams on relay sockets by relayed address family and the path that carried them: sent to peers (client_to_peer), received from peers (peer_to_client; those then dropped are also in drops_total).", l}
				t[pktID(ctrBytes, path, dir, familyIndex(f))] = counterRow{"isthmus_relay_bytes_total",
					"Payload bytes on relay sockets, as packets_total.", l}
			}
		}
	}
	for r := range numDropReasons {
		t[ctrDrops+ctrID(r)] = counterRow{"isthmus_relay_drops_total", "Datagrams not relayed, by reason.",
			[]string{"reason", dropReasonNames[r]}}
	}
	for i, sock := range []string{"listener", "relay"} {
		t[ctrSlowpath+ctrID(i)] = counterRow{"isthmus_relay_dataplane_slowpath_packets_total",
			"Datagrams the data plane handed to pion/turn (control plane), by socket kind.", []string{"socket", sock}}
	}
	for i, d := range dirs {
		t[ctrIndications+ctrID(i)] = counterRow{"isthmus_relay_dataplane_indications_total",
			"Send (client_to_peer) and Data (peer_to_client) indications the data plane relayed, included in packets_total.", []string{"direction", d}}
	}
	t[ctrWakeups] = counterRow{"isthmus_relay_dataplane_wakeups_total", "Data plane worker wake-ups (one batch of ready sockets each).", nil}
	for i, op := range []string{"read", "write", "raw_write"} {
		t[ctrBatchCalls+ctrID(i)] = counterRow{"isthmus_relay_dataplane_batch_calls_total",
			"Data plane batch socket calls (recvmmsg, sendmmsg); raw_write counts sendmmsg on raw sockets, not included in write.", []string{"op", op}}
	}
	t[ctrReadErrors] = counterRow{"isthmus_relay_dataplane_read_errors_total", "Failed data plane batch reads.", nil}
	return t
}

// counter is one series of the table as a count site holds it.
type counter struct{ v *atomic.Uint64 }

// Inc adds one.
func (c counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c counter) Add(n uint64) { c.v.Add(n) }

// counterTable is the counter table as a prometheus.Collector: the relay's
// own counts plus, per scrape, what extra (the Forwarder's Stats) adds.
type counterTable struct {
	rows  [numCtr]counterRow
	descs [numCtr]*prometheus.Desc
	vals  [numCtr]atomic.Uint64
	extra atomic.Pointer[func(*[numCtr]uint64)]
}

func newCounterTable() *counterTable {
	t := &counterTable{rows: counterRows()}
	byName := map[string]*prometheus.Desc{}
	for i, r := range t.rows {
		d, ok := byName[r.name]
		if !ok {
			var names []string
			for j := 0; j < len(r.labels); j += 2 {
				names = append(names, r.labels[j])
			}
			d = prometheus.NewDesc(r.name, r.help, names, nil)
			byName[r.name] = d
		}
		t.descs[i] = d
	}
	return t
}

func (t *counterTable) at(id ctrID) counter { return counter{&t.vals[id]} }

func (t *counterTable) snapshot(v *[numCtr]uint64) {
	for i := range v {
		v[i] = t.vals[i].Load()
	}
	if f := t.extra.Load(); f != nil {
		(*f)(v)
	}
}

// Describe implements prometheus.Collector.
func (t *counterTable) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, d := range t.descs {
		if !seen[d] {
			seen[d] = true
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector: one snapshot per scrape.
func (t *counterTable) Collect(ch chan<- prometheus.Metric) {
	var v [numCtr]uint64
	t.snapshot(&v)
	for i, r := range t.rows {
		var values []string
		for j := 1; j < len(r.labels); j += 2 {
			values = append(values, r.labels[j])
		}
		ch <- prometheus.MustNewConstMetric(t.descs[i], prometheus.CounterValue, float64(v[i]), values...)
	}
}

// dirCounters are pion's path's per-packet counters of one relayed family.
type dirCounters struct {
	toPeerPackets, toPeerBytes     counter
	fromPeerPackets, fromPeerBytes counter
}

// dropCounters are the drop reasons pion's path and the gate count.
type dropCounters struct {
	bandwidth, sendError, requestError, gateReject, noPermission, oversized counter
	// peerPolicy: to or from a permitted peer a reloaded policy denies, or
	// to a non-relayed port of a relay IP.
	peerPolicy                    counter
	badFingerprint, authThrottled counter
}

// metrics holds every collector of one Server.
type metrics struct {
	ctrs            *counterTable
	allocations     *prometheus.GaugeVec
	allocationsMade *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	peerDenials     *prometheus.CounterVec
	quotaRejections *prometheus.CounterVec
	streamCloses    *prometheus.CounterVec
	draining        prometheus.Gauge
	socketBuffer    *prometheus.GaugeVec
	certNotAfter    prometheus.Gauge

	dir   [2]*dirCounters // by familyIndex
	drops dropCounters
}

// collectors is the one list register and unregister use.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.ctrs, m.allocations, m.allocationsMade, m.authFailures, m.peerDenials,
		m.quotaRejections, m.streamCloses, m.draining, m.socketBuffer}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "isthmus", "relay"
	m := &metrics{
		ctrs: newCounterTable(),
		allocations: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "allocations", Help: "Live allocations by client address family and relayed address family (family)."},
			[]string{"client_family", "family"}),
		allocationsMade: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "allocations_created_total", Help: "Allocations created, by client address family and relayed address family (family)."},
			[]string{"client_family", "family"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "auth_failures_total", Help: "Rejected credentials by reason (never by user)."},
			[]string{"reason"}),
		peerDenials: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "peer_denials_total", Help: "Permissions and channels refused by the peer policy (403), by reason."},
			[]string{"reason"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "quota_rejections_total", Help: "Allocations refused: user (486), total, ports, draining (508)."},
			[]string{"quota"}),
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
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, r := range m.collectors()[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	t := m.ctrs
	for _, f := range families {
		fi := familyIndex(f)
		m.dir[fi] = &dirCounters{
			toPeerPackets:   t.at(pktID(ctrPackets, pathPion, dirToPeer, fi)),
			toPeerBytes:     t.at(pktID(ctrBytes, pathPion, dirToPeer, fi)),
			fromPeerPackets: t.at(pktID(ctrPackets, pathPion, dirToClient, fi)),
			fromPeerBytes:   t.at(pktID(ctrBytes, pathPion, dirToClient, fi)),
		}
		for _, cf := range families {
			m.allocations.WithLabelValues(cf.Label(), f.Label())
			m.allocationsMade.WithLabelValues(cf.Label(), f.Label())
		}
	}
	drop := func(r dropReason) counter { return t.at(ctrDrops + ctrID(r)) }
	m.drops = dropCounters{
		bandwidth:      drop(dropBandwidth),
		sendError:      drop(dropSendError),
		requestError:   drop(dropRequestError),
		gateReject:     drop(dropRejectedRequest),
		noPermission:   drop(dropNoPermission),
		oversized:      drop(dropOversized),
		peerPolicy:     drop(dropPeerPolicy),
		badFingerprint: drop(dropBadFingerprint),
		authThrottled:  drop(dropAuthThrottled),
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
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
	reg.Unregister(m.certNotAfter) // registered by installCert, with TLS only
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
