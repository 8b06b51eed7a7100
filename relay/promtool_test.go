package relay

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"testing"
)

// TestPromtoolCheckMetrics: a live relay's /metrics, data plane on and
// off, passes `promtool check metrics` (naming, help, types, units).
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	for _, plane := range []string{"on", "off"} {
		t.Run("data_plane "+plane, func(t *testing.T) {
			s := startTestServer(t, func(c *Config) { c.Metrics = "127.0.0.1:0"; c.DataPlane = plane })
			resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
			}
			if !bytes.Contains(body, []byte(`isthmus_relay_packets_total{direction="client_to_peer",family="ip4",path="dataplane"}`)) {
				t.Errorf("/metrics lacks the data plane path of packets_total:\n%s", body)
			}
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = bytes.NewReader(body)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}
		})
	}
}
