// Package relaytest starts the relay in-process for a test: loopback only,
// ephemeral listen ports, one relay IP per family, known credentials, its
// own metrics registry and its log kept in memory (printed when the test
// fails). Raw STUN/TURN requests go through internal/stuntest.
package relaytest

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"log/slog"

	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
	"github.com/isthmusrelay/isthmus/internal/stuntest"
	"github.com/isthmusrelay/isthmus/relay"
)

// Credentials and realm of the relays Start starts.
const (
	Realm    = "isthmus.test"
	User     = "alice"
	Password = "alice-pass"
	// Secret is a TURN REST shared secret (auth_secrets).
	Secret = "rest-secret-1"
)

// LogEnv, when set in the environment, prints a relay's whole log at the
// end of every test; otherwise only a failing test prints its last
// FailLogLines lines.
const LogEnv = "ISTHMUS_TEST_RELAY_LOG"

// FailLogLines is how much of the relay's log a failing test prints.
const FailLogLines = 60

// Config is the configuration Start begins with: listeners on 127.0.0.1:0
// and [::1]:0 (UDP and TCP on the same port each), relay IPs 127.0.0.1 and
// ::1, User:Password, Secret, loopback peers allowed, no metrics listener,
// debug logs.
func Config() relay.Config {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	cfg.RelayIPs = []string{"127.0.0.1", "::1"}
	cfg.Realm = Realm
	cfg.Users = []string{User + ":" + Password}
	cfg.AuthSecrets = []string{Secret}
	cfg.AllowLoopbackPeers = true
	cfg.Metrics = ""
	cfg.LogLevel = "debug"
	return cfg
}

// Relay is one in-process relay with the addresses it actually bound.
type Relay struct {
	Server *relay.Server
	// Registry holds the relay's metrics.
	Registry *prometheus.Registry
	// Logs is the relay's log output.
	Logs *lockedbuf.Buffer
	// V4 and V6 are the first listen address of each family; UDP and TCP
	// listen on the same address and port.
	V4, V6    netip.AddrPort
	closeOnce sync.Once
}

// Start starts a relay with Config, changed by mutate when not nil, fails
// tb when it does not start or lacks a listener of either family, and
// closes it when tb ends.
func Start(tb testing.TB, mutate func(*relay.Config)) *Relay {
	tb.Helper()
	cfg := Config()
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &lockedbuf.Buffer{}
	reg := prometheus.NewRegistry()
	srv, err := relay.New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	if err != nil {
		tb.Fatalf("relay.New(%+v): %v", cfg, err)
	}
	r := &Relay{Server: srv, Registry: reg, Logs: logs}
	tb.Cleanup(func() {
		r.Close(tb)
		switch {
		case os.Getenv(LogEnv) != "":
			tb.Logf("relay log:\n%s", logs.String())
		case tb.Failed():
			tb.Logf("relay log (last %d lines; %s=1 prints all):\n%s", FailLogLines, LogEnv, LastLines(logs.String(), FailLogLines))
		}
	})
	for _, ap := range srv.ListenAddrs() {
		switch {
		case ap.Addr().Unmap().Is4() && !r.V4.IsValid():
			r.V4 = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		case ap.Addr().Is6() && !ap.Addr().Is4In6() && !r.V6.IsValid():
			r.V6 = ap
		}
	}
	if !r.V4.IsValid() || !r.V6.IsValid() {
		tb.Fatalf("relay ListenAddrs() = %v, want one IPv4 and one IPv6 address", srv.ListenAddrs())
	}
	return r
}

// Close closes the relay once, reporting an error to tb; later calls do
// nothing.
func (r *Relay) Close(tb testing.TB) {
	r.closeOnce.Do(func() {
		if err := r.Server.Close(); err != nil {
			tb.Errorf("relay Close: %v", err)
		}
	})
}

// Addr returns the listen address of the given family ("4" or "6").
func (r *Relay) Addr(family string) netip.AddrPort {
	if family == "6" {
		return r.V6
	}
	return r.V4
}

// Dial connects a raw STUN client to server over network ("udp" or "tcp")
// with User and Password.
func (r *Relay) Dial(tb testing.TB, network string, server netip.AddrPort) *stuntest.Client {
	tb.Helper()
	return stuntest.Dial(tb, network, server, User, Password)
}

// MetricSum adds up every counter and gauge sample whose metric family name
// contains all of nameHas and whose labels contain all of labelHas (as
// name=value strings). found is false when no family name matched.
func (r *Relay) MetricSum(tb testing.TB, nameHas []string, labelHas ...string) (sum float64, found bool) {
	tb.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
families:
	for _, mf := range mfs {
		for _, s := range nameHas {
			if !strings.Contains(mf.GetName(), s) {
				continue families
			}
		}
		found = true
	samples:
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			for _, want := range labelHas {
				if !slices.Contains(labels, want) {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum, found
}

// WaitMetric waits up to stuntest.IOTimeout for MetricSum to satisfy ok:
// the relay may count a datagram just after forwarding it.
func (r *Relay) WaitMetric(tb testing.TB, ok func(float64) bool, nameHas []string, labelHas ...string) (float64, bool) {
	tb.Helper()
	end := time.Now().Add(stuntest.IOTimeout)
	for {
		sum, found := r.MetricSum(tb, nameHas, labelHas...)
		if found && ok(sum) {
			return sum, true
		}
		if time.Now().After(end) {
			return sum, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MetricNames lists every metric family name the relay registered (for
// failure messages).
func (r *Relay) MetricNames(tb testing.TB) []string {
	tb.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	names := make([]string, 0, len(mfs))
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
