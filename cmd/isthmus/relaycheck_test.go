package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/isthmusrelay/isthmus/internal/testcert"
	"github.com/isthmusrelay/isthmus/relay"
)

// isthmus relay --check: a good configuration (TLS files loaded) exits 0
// and prints the effective settings as YAML without the secrets, even
// when its port is taken (it binds nothing); a bad field exits 2 naming
// it; an address this host does not have and an unreadable key are
// caught, as a start would catch them.
func TestRelayCheck(t *testing.T) {
	certFile, keyFile, _ := testcert.Loopback(t)
	// The port is in use while --check runs: a running relay being
	// replaced holds it, and --check must not care.
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.LocalAddr().(*net.UDPAddr).Port
	busyTCP, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	cfgFile := filepath.Join(t.TempDir(), "relay.yaml")
	conf := "listen: [\"127.0.0.1:" + strconv.Itoa(port) + "\"]\nrelay_ips: [127.0.0.1]\ntls_listen: [\"127.0.0.1:" + strconv.Itoa(port) + "\"]\n" +
		"tls_cert: " + certFile + "\ntls_key: " + keyFile + "\nusers: [\"alice:pa55word-alice\"]\nauth_secrets: [rest-s3cret]\nuser_quota: 7\n"
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := runRelay([]string{"--check", "--config", cfgFile, "--max-allocations", "99", "--metrics", busyTCP.Addr().String()}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("--check = %d, want 0; stderr: %s", code, errOut.String())
	}
	for _, secret := range []string{"pa55word-alice", "rest-s3cret"} {
		if strings.Contains(out.String()+errOut.String(), secret) {
			t.Errorf("--check printed the secret %q:\n%s", secret, out.String())
		}
	}
	var got relay.Config
	if err := yaml.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--check output is not YAML: %v\n%s", err, out.String())
	}
	if got.UserQuota != 7 || got.MaxAllocations != 99 || len(got.Users) != 1 || got.Users[0] != "alice:***" ||
		len(got.AuthSecrets) != 1 || got.AuthSecrets[0] != "***" || got.TLSCert != certFile || got.Realm == "" {
		t.Errorf("--check effective config wrong (file, flag override, defaults, redaction):\n%s", out.String())
	}

	for _, tc := range []struct {
		args  []string
		field string
	}{
		{[]string{"--config", cfgFile, "--min-port", "70000"}, "min_port"},
		{[]string{"--config", cfgFile, "--listen", "127.0.0.1:bad"}, "listen"},
		// 192.0.2.1 (TEST-NET-1) is on no interface of the root namespace.
		{[]string{"--config", cfgFile, "--relay-ip", "192.0.2.1"}, "relay_ips"},
		{[]string{"--config", cfgFile, "--listen", "192.0.2.1:3478", "--relay-ip", "127.0.0.1"}, "listen"},
		{[]string{"--config", cfgFile, "--tls-key", certFile}, "tls_cert"},
		{[]string{"--config", cfgFile, "--metrics", "192.0.2.1:9641"}, "metrics"},
	} {
		out.Reset()
		errOut.Reset()
		code := runRelay(append([]string{"--check"}, tc.args...), &out, &errOut)
		if code != exitConfig || !strings.Contains(errOut.String(), tc.field+":") {
			t.Errorf("--check %v = %d, stderr %q; want %d naming %s", tc.args, code, errOut.String(), exitConfig, tc.field)
		}
		if out.Len() != 0 {
			t.Errorf("--check %v printed a config for a bad one: %s", tc.args, out.String())
		}
	}
}
