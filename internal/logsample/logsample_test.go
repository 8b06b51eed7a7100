package logsample

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A burst of n passes per period, the rest is dropped, derived loggers
// share the budget, and the next period gets a fresh one.
func TestBurstBoundsRecordsPerPeriod(t *testing.T) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, nil), 3, 50*time.Millisecond)
	log := slog.New(h)
	child := log.With("client", "x")
	for range 5 {
		log.Info("flood")
		child.Info("flood")
	}
	log.Debug("disabled, not counted")
	if n := strings.Count(buf.String(), "flood"); n != 3 {
		t.Fatalf("%d records passed in one period, want 3:\n%s", n, buf.String())
	}
	time.Sleep(60 * time.Millisecond)
	log.Info("next period")
	if !strings.Contains(buf.String(), "next period") {
		t.Fatalf("the next period's first record was dropped:\n%s", buf.String())
	}
}
