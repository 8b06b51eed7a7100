package pionlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// formatCounter counts how often it is formatted.
type formatCounter struct{ n *int }

func (c formatCounter) String() string { *c.n++; return "x" }

func TestDisabledLevelNeverFormats(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: LevelTrace}))
	f := Factory{Log: log, Levels: Levels{
		Trace: Off, Debug: Off,
		Info: slog.LevelDebug, Warn: slog.LevelInfo, Error: slog.LevelWarn,
	}}
	l := f.NewLogger("turn")
	formatted := 0
	arg := formatCounter{&formatted}
	l.Tracef("per packet %v", arg)
	l.Debugf("per packet %v", arg)
	if formatted != 0 || buf.Len() != 0 {
		t.Fatalf("disabled levels formatted %d times and wrote %q", formatted, buf.String())
	}
	l.Warnf("warned %v", arg)
	if formatted != 1 || !strings.Contains(buf.String(), `"level":"INFO"`) || !strings.Contains(buf.String(), `"pion":"turn"`) {
		t.Fatalf("pion Warn should log once at info with the scope: formatted %d, wrote %q", formatted, buf.String())
	}
}

func TestOnFormatRunsWhateverTheLevel(t *testing.T) {
	const drop = "dropped %v"
	hits := 0
	f := Factory{Log: slog.New(slog.DiscardHandler), Levels: Levels{Debug: Off, Info: Off},
		OnFormat: map[string]func(){drop: func() { hits++ }}}
	l := f.NewLogger("turn")
	l.Debugf(drop, 1)
	l.Infof(drop, 2)
	l.Infof("something else %v", 3)
	if hits != 2 {
		t.Fatalf("OnFormat ran %d times, want 2", hits)
	}
}
