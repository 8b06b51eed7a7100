package relay_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/internal/testcert"

	"github.com/isthmusrelay/isthmus/relay"
)

// TestOpsMetrics: the operational series move with what they count.
func TestOpsMetrics(t *testing.T) {
	// 100 ports on each of the two relay IPs (127.0.0.1, ::1).
	r := startRelay(t, func(c *relay.Config) { c.MinPort, c.MaxPort = 50000, 50099 })
	if n, _ := r.metricSum(t, []string{"isthmus_relay_build_info"}); n != 1 {
		t.Errorf("build_info = %v, want 1", n)
	}
	if n, _ := r.metricSum(t, []string{"port_pool_ports"}, "state=free"); n != 200 {
		// One pool of 100 ports per relay IP (127.0.0.1 and ::1).
		t.Errorf("port_pool_ports{state=free} = %v, want 200", n)
	}

	// STUN Binding, both families.
	for _, fam := range []string{"4", "6"} {
		c := dialSTUN(t, "udp", r.addr(fam), "", "")
		if res := c.request(stun.MethodBinding); res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("Binding: %s", describe(res))
		}
	}
	if n, _ := r.metricSum(t, []string{"stun_binding_requests_total"}, "family=ip4"); n != 1 {
		t.Errorf("stun_binding_requests_total{family=ip4} = %v, want 1", n)
	}
	if n, _ := r.metricSum(t, []string{"stun_binding_requests_total"}, "family=ip6"); n != 1 {
		t.Errorf("stun_binding_requests_total{family=ip6} = %v, want 1", n)
	}

	// An allocation over TCP: a port in use, one TCP connection, then a
	// duration observed when it ends.
	c := dialSTUN(t, "tcp", r.addr("6"), testUser, testPassword)
	c.mustAllocate()
	if n, _ := r.metricSum(t, []string{"port_pool_ports"}, "state=in_use"); n != 1 {
		t.Errorf("port_pool_ports{state=in_use} = %v, want 1", n)
	}
	if n, _ := r.metricSum(t, []string{"port_pool_usage_ratio"}); n != 0.005 {
		t.Errorf("port_pool_usage_ratio = %v, want 0.005 (1 of 200)", n)
	}
	if n, _ := r.metricSum(t, []string{"stream_connections"}, "transport=tcp", "family=ip6"); n != 1 {
		t.Errorf("stream_connections{transport=tcp,family=ip6} = %v, want 1", n)
	}
	time.Sleep(20 * time.Millisecond)
	c.release()
	if !waitUntil(ioTimeout, func() bool { return histCount(t, r, "isthmus_relay_allocation_duration_seconds") == 1 }) {
		t.Errorf("allocation_duration_seconds count = %d, want 1", histCount(t, r, "isthmus_relay_allocation_duration_seconds"))
	}

	// Reloads: a refused configuration sets last_reload_successful to 0, a
	// good one back to 1 with a newer timestamp.
	t0, _ := r.metricSum(t, []string{"config_last_reload_success_timestamp_seconds"})
	bad := testConfig()
	bad.MinPort = 0
	if err := r.srv.Reload(bad); err == nil {
		t.Fatal("Reload accepted min_port 0")
	}
	if n, _ := r.metricSum(t, []string{"config_last_reload_successful"}); n != 0 {
		t.Errorf("after a refused reload: config_last_reload_successful = %v, want 0", n)
	}
	good := testConfig()
	good.MinPort, good.MaxPort = 50000, 50099
	time.Sleep(10 * time.Millisecond)
	if err := r.srv.Reload(good); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if n, _ := r.metricSum(t, []string{"config_last_reload_successful"}); n != 1 {
		t.Errorf("after a good reload: config_last_reload_successful = %v, want 1", n)
	}
	if t1, _ := r.metricSum(t, []string{"config_last_reload_success_timestamp_seconds"}); t1 <= t0 {
		t.Errorf("reload timestamp %v not after %v", t1, t0)
	}
	if _, found := r.metricSum(t, []string{"kernel_drops_total"}, "socket=listener", "family=ip4"); !found {
		t.Error("no isthmus_relay_kernel_drops_total")
	}
}

func histCount(t *testing.T, r *testRelay, name string) uint64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestPromtoolCheckMetrics: a live relay's /metrics passes promtool's
// lint (names, units, help, counter suffixes), with every series present,
// with the data plane on and off (the one counter table exports both
// paths).
func TestPromtoolCheckMetrics(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for _, plane := range []relay.DataPlane{relay.DataPlaneOn, relay.DataPlaneOff} {
		t.Run("data_plane "+string(plane), func(t *testing.T) { promtoolCheck(t, plane) })
	}
}

func promtoolCheck(t *testing.T, plane relay.DataPlane) {
	r := startRelay(t, func(c *relay.Config) { c.Metrics = "127.0.0.1:0"; c.DataPlane = plane })
	c := dialSTUN(t, "udp", r.addr("4"), testUser, testPassword)
	c.mustAllocate()
	c.release()
	res, err := http.Get("http://" + r.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	for _, name := range []string{"isthmus_relay_build_info", "isthmus_relay_port_pool_ports", "isthmus_relay_config_last_reload_successful",
		"isthmus_relay_kernel_drops_total", "isthmus_relay_allocation_duration_seconds_bucket", "isthmus_relay_stun_binding_requests_total",
		"isthmus_relay_stream_connections", "isthmus_relay_alternate_redirects_total",
		`isthmus_relay_packets_total{direction="client_to_peer",family="ip4",path="dataplane"}`,
		`isthmus_relay_drops_total{reason="send_error"}`} {
		if !bytes.Contains(body, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		var ours []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "isthmus_") {
				ours = append(ours, l)
			}
		}
		t.Errorf("promtool check metrics: %v\n%s", err, out)
		if len(ours) == 0 {
			t.Log("(no isthmus_ series named)")
		}
	}
}

// A TURN-over-TLS connection counts as transport=tls, not tcp.
func TestStreamConnectionsTLS(t *testing.T) {
	certFile, keyFile, pool := testcert.Loopback(t)
	r := startRelay(t, func(c *relay.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	var tlsAddr netip.AddrPort
	for _, a := range r.srv.ListenAddrs() {
		if a.Addr().Is4() && a.Port() != r.addr("4").Port() {
			tlsAddr = a
		}
	}
	if !tlsAddr.IsValid() {
		t.Fatalf("no IPv4 TLS address in %v", r.srv.ListenAddrs())
	}
	tc, err := tls.Dial("tcp", tlsAddr.String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, _, err := allocateOver(t, turn.NewSTUNConn(tc), tlsAddr, turn.RequestedAddressFamilyIPv4, testUser, testPassword); err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	if n, _ := r.metricSum(t, []string{"stream_connections"}, "transport=tls", "family=ip4"); n != 1 {
		t.Errorf("stream_connections{transport=tls,family=ip4} = %v, want 1", n)
	}
	if n, _ := r.metricSum(t, []string{"stream_connections"}, "transport=tcp"); n != 0 {
		t.Errorf("stream_connections{transport=tcp} = %v, want 0", n)
	}
}
