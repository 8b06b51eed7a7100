package main

import (
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/relay"
)

// stopRelay's watcher for a second signal must end with the drain, not stay
// blocked on a signal channel that never delivers again.
func TestStopRelayLeavesNoGoroutine(t *testing.T) {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.ListenerSockets = 1
	cfg.Users = []string{"alice:secret"}
	cfg.DrainTimeout = time.Second
	srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal)
	if code := stopRelay(srv, cfg, sigs, slog.New(slog.DiscardHandler)); code != 0 {
		t.Fatalf("stopRelay = %d, want 0", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "isthmus.stopRelay.func") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stopRelay's signal watcher still running after it returned:\n%s", stacks)
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling a goroutine dump, bounded by deadline
	}
}
