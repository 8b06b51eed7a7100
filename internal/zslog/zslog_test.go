package zslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// keys returns a JSON object's keys in order, and the object.
func keys(t *testing.T, line []byte) ([]string, map[string]any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	var ks []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	m := map[string]any{}
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "time")
	return ks, m
}

// A line written through slog and this handler has the keys, key order and
// values of the same line written with zerolog directly (the binary's
// contract with scripts that read its log).
func TestLineMatchesZerolog(t *testing.T) {
	base := func(b *bytes.Buffer) zerolog.Logger {
		return zerolog.New(b).Level(zerolog.DebugLevel).With().Timestamp().Str("component", "relay").Logger()
	}
	ap := netip.MustParseAddrPort("[2001:db8::1]:3478")
	err := errors.New("boom")

	var direct bytes.Buffer
	zl := base(&direct)
	zl.Warn().Err(err).Strs("listen", []string{"127.0.0.1:3478"}).Int("users", 2).
		Bool("raw_send", true).Dur("retry_in", 5*time.Millisecond).Stringer("client", ap).
		Str("realm", "isthmus").Msg("relay ready")

	var bridged bytes.Buffer
	slog.New(New(base(&bridged))).Warn("relay ready", slog.Any("error", err),
		slog.Any("listen", []string{"127.0.0.1:3478"}), slog.Int("users", 2), slog.Bool("raw_send", true),
		slog.Duration("retry_in", 5*time.Millisecond), slog.Any("client", ap), slog.String("realm", "isthmus"))

	dk, dm := keys(t, direct.Bytes())
	bk, bm := keys(t, bridged.Bytes())
	if !reflect.DeepEqual(dk, bk) {
		t.Errorf("keys differ:\nzerolog %v\nslog    %v", dk, bk)
	}
	if !reflect.DeepEqual(dm, bm) {
		t.Errorf("values differ:\nzerolog %s\nslog    %s", direct.String(), bridged.String())
	}
}

func TestLevelsAndContext(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(New(zerolog.New(&b).Level(zerolog.InfoLevel))).With("pion", "turn")
	log.Debug("hidden")
	log.Log(t.Context(), LevelTrace, "hidden too")
	if b.Len() != 0 {
		t.Fatalf("below the zerolog level: %q", b.String())
	}
	log.WithGroup("g").Error("shown", "k", 1, "error", error(nil))
	want := `{"level":"error","pion":"turn","g.k":1,"message":"shown"}` + "\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	if Level(LevelTrace) != zerolog.TraceLevel || Level(slog.LevelWarn) != zerolog.WarnLevel {
		t.Fatal("level mapping")
	}
}
