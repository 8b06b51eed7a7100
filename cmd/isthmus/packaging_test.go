package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/sdnotify/sdnotifytest"
)

// The relay process speaks Type=notify: READY=1 once serving, WATCHDOG=1
// at half of WATCHDOG_USEC, RELOADING=1 with MONOTONIC_USEC then READY=1
// around SIGHUP, STOPPING=1 on SIGTERM.
func TestRelaySdNotify(t *testing.T) {
	sock, recv := sdnotifytest.Listen(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")
	p := relayTestConfigFile(t, "listen: [\"127.0.0.1:0\"]\nlistener_sockets: 1\nusers: [\"a:b\"]\n")
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- runRelay([]string{"--config", p, "--drain-timeout", "1s"}, &bytes.Buffer{}, stderr) }()

	// next skips watchdog pings until a datagram with prefix arrives.
	next := func(prefix string) string {
		t.Helper()
		for i := 0; i < 50; i++ {
			if m := recv(); strings.HasPrefix(m, prefix) {
				return m
			}
		}
		t.Fatalf("no %q notification", prefix)
		return ""
	}
	if m := next("READY=1"); !strings.Contains(m, "STATUS=serving on 1 addresses") {
		t.Errorf("ready: %q", m)
	}
	next("WATCHDOG=1")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m := next("RELOADING=1"); !regexp.MustCompile(`\nMONOTONIC_USEC=\d+$`).MatchString(m) {
		t.Errorf("reloading: %q", m)
	}
	if m := next("READY=1"); !strings.Contains(m, "STATUS=reloaded") {
		t.Errorf("after reload: %q", m)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if m := next("STOPPING=1"); !strings.Contains(m, "STATUS=draining 0 allocations") {
		t.Errorf("stopping: %q", m)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not stop on SIGTERM")
	}
}

// Secrets from files and the environment: no generated credential, the
// file's entries counted, ISTHMUS_AUTH_SECRET replacing the YAML list,
// and a bad file an exit-2 error naming the field.
func TestRelaySecretsFromFilesAndEnv(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	secrets := filepath.Join(dir, "secrets")
	if err := os.WriteFile(users, []byte("# static users\nalice:a\n\nbob:key=00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secrets, []byte("s-new\ns-old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := relayTestConfigFile(t, "users_file: "+users+"\nauth_secrets: [from-yaml]\n")
	t.Setenv("ISTHMUS_AUTH_SECRET", "from-env")
	t.Setenv("ISTHMUS_AUTH_SECRET_FILE", secrets)
	cfg := relayTestLoad(t, "--config", p)
	if len(cfg.AuthSecrets) != 1 || cfg.AuthSecrets[0] != "from-env" || cfg.AuthSecretFile != secrets || cfg.UsersFile != users {
		t.Errorf("env overrides: auth_secrets %v auth_secret_file %q users_file %q", cfg.AuthSecrets, cfg.AuthSecretFile, cfg.UsersFile)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if noCredentials(cfg) {
		t.Error("credentials in files counted as none: a password would be generated")
	}

	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runRelay([]string{"--config", p, "--listen", "127.0.0.1:0", "--listener-sockets", "1", "--drain-timeout", "1s"}, &bytes.Buffer{}, stderr)
	}()
	waitFor(t, stderr, `"message":"relay ready"`)
	if strings.Contains(stderr.String(), "generated") {
		t.Errorf("a credential was generated although users_file is set:\n%s", stderr.String())
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d", code)
	}

	if err := os.WriteFile(users, []byte("no-colon-here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := runRelay([]string{"--config", p}, &bytes.Buffer{}, &out); code != 2 || !strings.Contains(out.String(), "users_file") || strings.Contains(out.String(), "no-colon-here") {
		t.Errorf("bad users_file: exit %d, %q (want 2, naming users_file, not quoting the line)", code, out.String())
	}
}

func TestHealth(t *testing.T) {
	p := relayTestConfigFile(t, "listen: [\"127.0.0.1:0\"]\nlistener_sockets: 1\nusers: [\"a:b\"]\n")
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runRelay([]string{"--config", p, "--metrics", "127.0.0.1:0", "--drain-timeout", "3s"}, &bytes.Buffer{}, stderr)
	}()
	waitFor(t, stderr, `"message":"relay ready"`)
	m := regexp.MustCompile(`"metrics":"(127\.0\.0\.1:\d+)"`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no metrics address in\n%s", stderr.String())
	}
	var out, errb bytes.Buffer
	if code := runHealth([]string{"--url", "http://" + m[1] + "/readyz"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "ready") {
		t.Errorf("healthy relay: exit %d, %q %q", code, out.String(), errb.String())
	}
	// Nothing listening: 1.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	_ = l.Close()
	if code := runHealth([]string{"-q", "--url", "http://" + dead + "/readyz"}, &out, &errb); code != 1 {
		t.Errorf("nothing listening: exit %d, want 1", code)
	}
	if code := runHealth([]string{"--url", "ftp://x"}, &out, &errb); code != 2 {
		t.Errorf("bad url: exit %d, want 2", code)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
}
