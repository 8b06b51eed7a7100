package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/relay"
)

func TestRelayImportCoturn(t *testing.T) {
	in := "../../internal/coturnconf/testdata/carrier-turnserver.conf"
	out := filepath.Join(t.TempDir(), "relay.yaml")
	var stdout, stderr bytes.Buffer
	if code := runRelay([]string{"import-coturn", in, "-o", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	report := stderr.String()
	for _, want := range []string{"mapped (", "changed in meaning (", "not mapped (", "order is reversed", "wrote " + out} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "north-2026-q4-secret") {
		t.Error("the report shows a REST secret")
	}
	cfg, err := relay.LoadConfigFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("imported file does not validate: %v", err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (it holds secrets)", st.Mode().Perm())
	}
	// Without -o the YAML goes to stdout; Debian's file has no credentials,
	// which the report says.
	stdout.Reset()
	stderr.Reset()
	if code := runRelay([]string{"import-coturn", "../../internal/coturnconf/testdata/debian-4.6.1-turnserver.conf"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "# Translated from coturn's") || !strings.Contains(stderr.String(), "no credentials") {
		t.Errorf("stdout %q\nstderr %q", stdout.String(), stderr.String())
	}
	if code := runRelay([]string{"import-coturn"}, &stdout, &stderr); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
	if code := runRelay([]string{"import-coturn", "/nonexistent/turnserver.conf"}, &stdout, &stderr); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
}
