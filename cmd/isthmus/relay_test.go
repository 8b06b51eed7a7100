package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/relay"
)

func relayTestConfigFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func relayTestLoad(t *testing.T, args ...string) relay.Config {
	t.Helper()
	var stderr bytes.Buffer
	fs, f := newRelayFlagSet(&stderr)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v\n%s", args, err, stderr.String())
	}
	cfg, err := f.load(fs)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A flag given on the command line overrides the YAML file; a repeated flag
// replaces the YAML list; a flag not given leaves the file's value.
func TestRelayFlagsOverrideYAML(t *testing.T) {
	p := relayTestConfigFile(t, `
listen: ["127.0.0.1:3478", "[::1]:3478"]
realm: from-file.example
users: ["alice:a", "bob:b"]
min_port: 40000
allow_loopback_peers: true
drain_timeout: 7s
`)
	cfg := relayTestLoad(t, "--config", p, "--listen", "127.0.0.1:0", "--user", "carol:c", "--user", "dave:d",
		"--min-port", "41000", "--allow-loopback-peers=false")
	if !reflect.DeepEqual(cfg.Listen, []string{"127.0.0.1:0"}) {
		t.Errorf("listen = %v, want the flag's list only", cfg.Listen)
	}
	if !reflect.DeepEqual(cfg.Users, []string{"carol:c", "dave:d"}) {
		t.Errorf("users = %v, want the repeated flags replacing the file's list", cfg.Users)
	}
	if cfg.MinPort != 41000 || cfg.AllowLoopbackPeers {
		t.Errorf("min_port %d allow_loopback_peers %v: flags did not win", cfg.MinPort, cfg.AllowLoopbackPeers)
	}
	if cfg.Realm != "from-file.example" || time.Duration(cfg.DrainTimeout) != 7*time.Second {
		t.Errorf("realm %q drain_timeout %v: file values lost although no flag was given", cfg.Realm, time.Duration(cfg.DrainTimeout))
	}
	if cfg.MaxPort != relay.DefaultConfig().MaxPort {
		t.Errorf("max_port %d: default lost", cfg.MaxPort)
	}

	// Without --config the flags apply over the embedded defaults.
	cfg = relayTestLoad(t, "--relay-ip", "127.0.0.1", "--relay-ip", "::1", "--external-ip", "127.0.0.1=192.0.2.1",
		"--auth-secret", "s1", "--metrics", "127.0.0.1:0", "--drain-timeout", "2s")
	if len(cfg.Listen) != 2 || len(cfg.RelayIPs) != 2 || len(cfg.ExternalIPs) != 1 || cfg.AuthSecrets[0] != "s1" ||
		cfg.Metrics != "127.0.0.1:0" || time.Duration(cfg.DrainTimeout) != 2*time.Second {
		t.Errorf("flags over defaults: %+v", cfg)
	}
}

// Every configuration field has a flag whose help names its YAML twin.
func TestRelayHelpDocumentsEveryField(t *testing.T) {
	var stderr bytes.Buffer
	if code := runRelay([]string{"--help"}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	help := stderr.String()
	typ := reflect.TypeOf(relay.Config{})
	for i := 0; i < typ.NumField(); i++ {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if !strings.Contains(help, "YAML "+tag+")") && !strings.Contains(help, "YAML "+tag+";") {
			t.Errorf("--help does not document a flag for YAML field %q", tag)
		}
	}
}

func TestRelayBadConfigExitCode(t *testing.T) {
	for _, args := range [][]string{
		{"--min-port", "0", "--user", "a:b"},
		{"--listen", "nowhere", "--user", "a:b"},
		{"--config", relayTestConfigFile(t, "realms: typo\n")},
		{"--no-such-flag"},
		{"extra-argument"},
	} {
		var stderr bytes.Buffer
		if code := runRelay(args, &bytes.Buffer{}, &stderr); code != 2 {
			t.Errorf("%v: exit code %d, want 2\n%s", args, code, stderr.String())
		}
	}
}

// waitFor waits up to 10 s for s to appear in l (a process's
// stderr), and fails the test with what it holds otherwise.
func waitFor(t *testing.T, l *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(l.String(), s) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q in stderr:\n%s", s, l.String())
}

// The real process contract: "relay ready" with listen and metrics fields,
// a generated credential when none is configured, SIGHUP reloads the file,
// SIGTERM drains and exits 0.
func TestRelaySignals(t *testing.T) {
	p := relayTestConfigFile(t, "listen: [\"127.0.0.1:0\"]\nlistener_sockets: 1\n")
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runRelay([]string{"--config", p, "--metrics", "127.0.0.1:0", "--drain-timeout", "1s"}, &bytes.Buffer{}, stderr)
	}()
	waitFor(t, stderr, `"message":"relay ready"`)
	waitFor(t, stderr, `isthmus relay: no credentials configured; generated user "isthmus" password "`)
	waitFor(t, stderr, `"listen":["127.0.0.1:`)
	waitFor(t, stderr, `"metrics":"127.0.0.1:`)

	if err := os.WriteFile(p, []byte("listen: [\"127.0.0.1:0\"]\nlistener_sockets: 1\nusers: [\"bob:b\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, stderr, `"users":1`)
	waitFor(t, stderr, `"message":"config reloaded"`)

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not stop on SIGTERM")
	}
	waitFor(t, stderr, `"message":"relay closed"`)
}
