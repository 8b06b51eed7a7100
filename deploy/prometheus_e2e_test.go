//go:build e2e

package deploy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/isthmusrelay/isthmus/relay"
)

func needPromtool(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
}

// The alert rules pass promtool check rules and their unit tests.
func TestPrometheusRules(t *testing.T) {
	needPromtool(t)
	for _, args := range [][]string{
		{"check", "rules", "isthmus-relay.rules.yaml"},
		{"test", "rules", "isthmus-relay.rules.test.yaml"},
	} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// liveMetricNames starts a relay and returns the metric family names its
// /metrics serves (histograms with their _bucket/_sum/_count).
func liveMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.ListenerSockets = 1
	cfg.RelayIPs = []string{"127.0.0.1"}
	cfg.Users = []string{"a:b"}
	cfg.Metrics = "127.0.0.1:0"
	srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	names := map[string]bool{}
	for _, l := range strings.Split(string(body), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, _, _ := strings.Cut(l, "{")
		name, _, _ = strings.Cut(name, " ")
		names[name] = true
	}
	return names
}

// metricsNotYetServed are series the rules and dashboard use that the
// test's relay does not serve: the certificate expiry gauge exists only
// with TLS configured.
// isthmus_relay_peer_denials_total has a sample only after the first
// denial (its reasons are the policy's, not a fixed list).
var metricsNotYetServed = map[string]bool{
	"isthmus_relay_tls_cert_not_after_seconds": true,
	"isthmus_relay_peer_denials_total":         true,
}

var reMetric = regexp.MustCompile(`\bisthmus_[a-z0-9_]+`)

// The dashboard is valid JSON whose every query is valid PromQL (checked
// by promtool as recording rules, Grafana's variables substituted) and
// names only series a live relay serves.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("prometheus/isthmus-relay-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard: uid %q, %d panels", d.UID, len(d.Panels))
	}
	live := liveMetricNames(t)
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, m := range reMetric.FindAllString(tg.Expr, -1) {
				if !live[m] && !metricsNotYetServed[m] {
					t.Errorf("panel %q: %s is not served by the relay", p.Title, m)
				}
			}
		}
	}
	rules, _ := os.ReadFile("prometheus/isthmus-relay.rules.yaml")
	for _, m := range reMetric.FindAllString(string(rules), -1) {
		if !live[m] && !metricsNotYetServed[m] {
			t.Errorf("alert rules: %s is not served by the relay", m)
		}
	}
	needPromtool(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rs []rule
	sub := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	for i, e := range exprs {
		rs = append(rs, rule{Record: "dashboard:query" + string(rune('a'+i%26)) + ":" + strings.Repeat("x", i/26+1), Expr: sub.Replace(e)})
	}
	out, _ := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rs}}})
	p := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command("promtool", "check", "rules", p).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries as rules: %v\n%s", err, res)
	}
	t.Logf("%d dashboard queries checked", len(exprs))
}
