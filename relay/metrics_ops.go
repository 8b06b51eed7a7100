//go:build linux

package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// BuildVersion is the version isthmus_relay_build_info reports; the
// command sets it from its link-time version. Empty means the module
// version from the build information.
var BuildVersion string

// opsMetrics are the operational series kept apart from the data path's
// table in metrics.go: fleet redirects, build and reload state, port pool,
// kernel socket drops, allocation lifetimes, Binding requests and stream
// connections. Label names follow metrics.go: family is a relayed or
// transport address family (ip4/ip6), client_family a client's.
type opsMetrics struct {
	redirects     *prometheus.CounterVec
	reloadOK      prometheus.Gauge
	reloadTime    prometheus.Gauge
	allocDuration prometheus.Histogram
	bindings      [2]prometheus.Counter // by familyIndex
	bindingsVec   *prometheus.CounterVec
	collectors    []prometheus.Collector
	kernel        *kernelDrops
}

func newOpsMetrics(reg prometheus.Registerer) (*opsMetrics, error) {
	const ns, sub = "isthmus", "relay"
	m := &opsMetrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alternate_redirects_total",
			Help: "Allocates answered 300 Try Alternate (alternate_servers) instead of 486/508, by why this relay could not take them: draining, total (max_allocations), user (user_quota), ports."},
			[]string{"reason"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "config_last_reload_successful",
			Help: "1 when the last reload (SIGHUP) applied, 0 when its configuration was refused; 1 before any reload."}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last configuration applied: the start, or the last successful reload."}),
		allocDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name:    "allocation_duration_seconds",
			Help:    "Lifetime of ended allocations, from creation to deletion (expiry, refresh 0, drain or close).",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800}}),
		bindingsVec: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "stun_binding_requests_total",
			Help: "STUN Binding requests received (RFC 8489; answered by pion, no credentials), by the client's family."},
			[]string{"family"}),
	}
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
	for _, r := range []string{redirectDraining, redirectTotal, redirectUser, redirectPorts} {
		m.redirects.WithLabelValues(r)
	}
	for _, f := range families {
		m.bindings[familyIndex(f)] = m.bindingsVec.WithLabelValues(f.Label())
	}
	m.collectors = []prometheus.Collector{m.redirects, m.reloadOK, m.reloadTime, m.allocDuration, m.bindingsVec, buildInfo()}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	return m, nil
}

// registerServer adds the series read from the running server at scrape
// time (port pool, stream connections, kernel drops). Called once the
// listeners and the pool exist.
func (m *opsMetrics) registerServer(s *Server, reg prometheus.Registerer) error {
	m.kernel = &kernelDrops{srv: s, gone: map[string]uint64{}, last: map[uint64]sockDrops{}}
	cs := []prometheus.Collector{&serverGauges{srv: s}, m.kernel}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	m.collectors = append(m.collectors, cs...)
	return nil
}

func (m *opsMetrics) unregister(reg prometheus.Registerer) {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		reg.Unregister(c)
	}
}

// reloaded records a reload's outcome.
func (m *opsMetrics) reloaded(ok bool) {
	if !ok {
		m.reloadOK.Set(0)
		return
	}
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
}

// binding counts a STUN Binding request from a client of family f.
func (m *opsMetrics) binding(f netaddr.Family) {
	if f == netaddr.IPv4 || f == netaddr.IPv6 {
		m.bindings[familyIndex(f)].Inc()
	}
}

// buildInfo is isthmus_relay_build_info{version,revision,goversion} 1.
func buildInfo() prometheus.Collector {
	version, revision := BuildVersion, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "unknown"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "isthmus", Subsystem: "relay", Name: "build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()}})
	g.Set(1)
	return g
}

// serverGauges reads the port pool and the stream listeners at scrape
// time: no bookkeeping on the allocation or connection paths.
type serverGauges struct{ srv *Server }

var (
	descPorts = prometheus.NewDesc("isthmus_relay_port_pool_ports",
		"Relay ports (min_port..max_port, shared by all relay IPs) by state: in_use (bound by allocations) or free.",
		[]string{"state"}, nil)
	descPortsUsage = prometheus.NewDesc("isthmus_relay_port_pool_usage_ratio",
		"Share of the relay port pool in use, 0..1; at 1 new allocations get 508 (or 300 with alternate_servers).", nil, nil)
	descStreams = prometheus.NewDesc("isthmus_relay_stream_connections",
		"Open TURN connections over TCP and TLS, by transport and the listener's family.",
		[]string{"transport", "family"}, nil)
)

func (g *serverGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPorts
	ch <- descPortsUsage
	ch <- descStreams
}

func (g *serverGauges) Collect(ch chan<- prometheus.Metric) {
	s := g.srv
	if s.pool != nil {
		used, total := s.pool.inUse(), s.pool.total()
		ch <- prometheus.MustNewConstMetric(descPorts, prometheus.GaugeValue, float64(used), "in_use")
		ch <- prometheus.MustNewConstMetric(descPorts, prometheus.GaugeValue, float64(total-used), "free")
		if total > 0 {
			ch <- prometheus.MustNewConstMetric(descPortsUsage, prometheus.GaugeValue, float64(used)/float64(total))
		}
	}
	var n [2][2]int // [tcp, tls][family]
	for _, l := range s.listeners {
		gl, ok := l.(*gatedListener)
		if !ok {
			continue
		}
		t := 1 // tls.NewListener wraps the TCP listener
		switch gl.Listener.(type) {
		case *net.TCPListener, markedTCPListener:
			t = 0
		}
		fi := familyIndex(addrFamily(gl.Addr()))
		gl.mu.Lock()
		n[t][fi] += len(gl.conns)
		gl.mu.Unlock()
	}
	for t, name := range []string{"tcp", "tls"} {
		for _, f := range families {
			ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(n[t][familyIndex(f)]), name, f.Label())
		}
	}
}

// kernelDrops is isthmus_relay_kernel_drops_total: datagrams the kernel
// dropped on the relay's own UDP sockets (a full receive buffer:
// /proc/net/udp{,6} "drops", the per-socket form of RcvbufErrors), by
// socket kind (listener, relay) and family. Sockets are told apart from
// other processes' by the inodes of this process's descriptors; a closed
// relay socket's last count is kept, so the counter never goes back.
type kernelDrops struct {
	srv  *Server
	mu   sync.Mutex
	last map[uint64]sockDrops // by inode: the drops of open sockets at the last scrape
	gone map[string]uint64    // kind/family: drops of sockets since closed
}

type sockDrops struct {
	kind, family string
	drops        uint64
}

var descKernelDrops = prometheus.NewDesc("isthmus_relay_kernel_drops_total",
	"Datagrams the kernel dropped on the relay's UDP sockets (receive buffer full; /proc/net/udp drops), by socket (listener, relay) and family.",
	[]string{"socket", "family"}, nil)

func (k *kernelDrops) Describe(ch chan<- *prometheus.Desc) { ch <- descKernelDrops }

func (k *kernelDrops) Collect(ch chan<- prometheus.Metric) {
	inodes := ownSocketInodes()
	listenPorts := map[uint16]bool{}
	for _, ap := range k.srv.listenAddrs {
		listenPorts[ap.Port()] = true
	}
	now := map[uint64]sockDrops{}
	for _, f := range []struct{ path, family string }{{"/proc/net/udp", "ip4"}, {"/proc/net/udp6", "ip6"}} {
		readUDPTable(f.path, func(port uint16, inode, drops uint64) {
			if !inodes[inode] {
				return
			}
			kind := "relay"
			if listenPorts[port] {
				kind = "listener"
			}
			now[inode] = sockDrops{kind: kind, family: f.family, drops: drops}
		})
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for ino, d := range k.last {
		if _, open := now[ino]; !open {
			k.gone[d.kind+"/"+d.family] += d.drops
		}
	}
	k.last = now
	sum := map[string]uint64{}
	for key, v := range k.gone {
		sum[key] += v
	}
	for _, d := range now {
		sum[d.kind+"/"+d.family] += d.drops
	}
	for _, kind := range []string{"listener", "relay"} {
		for _, fam := range []string{"ip4", "ip6"} {
			ch <- prometheus.MustNewConstMetric(descKernelDrops, prometheus.CounterValue, float64(sum[kind+"/"+fam]), kind, fam)
		}
	}
}

// ownSocketInodes returns the inodes of this process's sockets
// (/proc/self/fd links "socket:[N]").
func ownSocketInodes() map[uint64]bool {
	out := map[uint64]bool{}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return out
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		l, err := os.Readlink("/proc/self/fd/" + n)
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 64); err == nil {
			out[ino] = true
		}
	}
	return out
}

// readUDPTable calls fn for each socket line of /proc/net/udp or udp6:
// "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt
// uid timeout inode ref pointer drops".
func readUDPTable(path string, fn func(port uint16, inode, drops uint64)) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 13 {
			continue
		}
		_, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err1 := strconv.ParseUint(portHex, 16, 16)
		inode, err2 := strconv.ParseUint(f[9], 10, 64)
		drops, err3 := strconv.ParseUint(f[12], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		fn(uint16(port), inode, drops)
	}
}
