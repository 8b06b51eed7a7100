//go:build linux

package relay_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/relay"
)

const metricsFDChildEnv = "ISTHMUS_TEST_METRICS_FD_CHILD"

// /metrics and /readyz must answer while the relay is out of descriptors,
// when the operator most needs them: the metrics listener keeps a spare
// descriptor for that. Without it every scrape hung until descriptors came
// back. The relay runs in a child whose descriptor limit is lowered; TCP
// connections to its TURN port use up the rest.
func TestMetricsServedWhileOutOfDescriptors(t *testing.T) {
	if os.Getenv(metricsFDChildEnv) != "" {
		metricsFDChild(t)
		return
	}
	waitLine := startFDChild(t, "TestMetricsServedWhileOutOfDescriptors", metricsFDChildEnv)
	turnAddr := waitLine("addr ", 20*time.Second)
	metricsAddr := waitLine("metrics ", 5*time.Second)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < 40; i++ {
		c, err := net.DialTimeout("tcp", turnAddr, ioTimeout)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	waitLine("exhausted", 10*time.Second)

	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 3; i++ { // the spare comes back after each scrape
		for _, path := range []string{"/metrics", "/readyz"} {
			res, err := client.Get("http://" + metricsAddr + path)
			if err != nil {
				t.Fatalf("scrape %d of %s while out of descriptors: %v", i+1, path, err)
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			switch path {
			case "/metrics":
				if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "isthmus_relay_") {
					t.Fatalf("/metrics while out of descriptors: %d\n%.300s", res.StatusCode, body)
				}
			case "/readyz":
				if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "too many open files") {
					t.Fatalf("/readyz while out of descriptors: %d %q, want 503 naming EMFILE", res.StatusCode, body)
				}
			}
		}
	}
}

// metricsFDChild runs the relay with /metrics, lowers the descriptor limit
// to what is open plus a few, and reports when the TURN listener's accepts
// fail (descriptors exhausted) until stdin closes.
func metricsFDChild(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) {
		c.ListenerSockets = 1
		c.Metrics = "127.0.0.1:0"
	})
	limitFDs(t, 12)
	fmt.Printf("addr %s\n", r.Addr("4"))
	fmt.Printf("metrics %s\n", r.Server.MetricsAddr())
	everyTickUntilStdinCloses(func() {
		if err := r.Server.Ready(); err != nil && strings.Contains(err.Error(), "too many open files") {
			fmt.Println("exhausted")
		}
	})
}
