package relay

import (
	"flag"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// A setting is described once, on its Config field: every field has a YAML
// key, a flag and help, docs/relay.md has its row, the generated flag sets
// the field, and the YAML key loads into it. A new setting therefore takes
// the field (with its tags and any validation) and the docs row; this test
// fails when either is missing.
func TestEveryFieldIsWiredByItsTags(t *testing.T) {
	docs, err := os.ReadFile("../docs/relay.md")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		key, name, usage := yamlKey(f), f.Tag.Get("flag"), f.Tag.Get("usage")
		if key == "" || name == "" || usage == "" {
			t.Errorf("%s: yaml %q flag %q usage %q: every field needs all three", f.Name, key, name, usage)
			continue
		}
		if !strings.Contains(string(docs), "`"+key+"`") || !strings.Contains(string(docs), "`--"+name) {
			t.Errorf("%s: docs/relay.md has no row with `%s` and `--%s`", f.Name, key, name)
		}
		if arg := f.Tag.Get("arg"); arg != "" && !strings.Contains(usage, arg) {
			t.Errorf("%s: arg %q does not occur in its usage", f.Name, arg)
		}
	}
}

// Each flag sets its field; a repeated list flag replaces the list; flags
// not given leave the file's (here: hand-set) values.
func TestFlagsSetTheirFields(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := BindFlags(fs, DefaultConfig())
	if err := fs.Parse([]string{"--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--min-port", "40000",
		"--allow-loopback-peers", "--raw-send", "off", "--log-level", "debug", "--drain-timeout", "2s",
		"--external-ip", "127.0.0.1=192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Realm = "from-file"
	f.Apply(&cfg)
	if !slices.Equal(cfg.Listen, []string{"127.0.0.1:0", "[::1]:0"}) || cfg.MinPort != 40000 || !cfg.AllowLoopbackPeers ||
		cfg.RawSend != RawSendOff || cfg.LogLevel != LogDebug || cfg.DrainTimeout != 2*time.Second ||
		!slices.Equal(cfg.ExternalIPs, []string{"127.0.0.1=192.0.2.1"}) {
		t.Errorf("flags not applied: %+v", cfg)
	}
	if cfg.Realm != "from-file" || cfg.MaxPort != DefaultConfig().MaxPort {
		t.Errorf("a flag not given changed its field: realm %q max_port %d", cfg.Realm, cfg.MaxPort)
	}
	if err := fs.Parse([]string{"--min-port", "lots"}); err == nil {
		t.Error("--min-port lots accepted")
	}
}

// Reload's restart list is exactly the fields tagged reload:"restart":
// changing each of them is reported and undone, changing any other field is
// applied.
func TestRestartTagIsHonoured(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		old := DefaultConfig()
		next := old
		v := reflect.ValueOf(&next).Elem().Field(i)
		switch v.Kind() {
		case reflect.Slice:
			v.Set(reflect.ValueOf([]string{"changed"}))
		case reflect.String:
			v.SetString("changed")
		case reflect.Int, reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Bool:
			v.SetBool(!v.Bool())
		default:
			t.Fatalf("%s: kind %s not covered by this test", f.Name, v.Kind())
		}
		got := restartFields(old, next)
		kept := keepRestartFields(next, old)
		if f.Tag.Get("reload") == "restart" {
			if !slices.Equal(got, []string{yamlKey(f)}) {
				t.Errorf("%s: restartFields = %v, want [%s]", f.Name, got, yamlKey(f))
			}
			if !reflect.DeepEqual(kept, old) {
				t.Errorf("%s: the running value was not kept", f.Name)
			}
		} else {
			if len(got) != 0 {
				t.Errorf("%s is reloadable, but restartFields = %v", f.Name, got)
			}
			if !reflect.DeepEqual(kept, next) {
				t.Errorf("%s: the reloaded value was not applied", f.Name)
			}
		}
	}
	if got := restartFields(Config{Listen: nil}, Config{Listen: []string{}}); len(got) != 0 {
		t.Errorf("nil and empty lists differ: %v", got)
	}
}
