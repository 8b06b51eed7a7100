package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/relay"
)

// A credential minted by isthmus cred (secret on the command line or in a
// file, text or JSON) has the REST scheme's shape and authenticates an
// Allocate at a relay with that secret.
func TestCredMintsRESTCredential(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := runCred([]string{"--secret-file", secretFile, "--user", "alice", "--ttl", "1h", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("cred --json = %d: %s", code, errOut.String())
	}
	var got struct{ Username, Password string }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("cred --json output %q: %v", out.String(), err)
	}
	exp, user, _ := strings.Cut(got.Username, ":")
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || user != "alice" || time.Until(time.Unix(sec, 0)) < 59*time.Minute || got.Password != relay.RESTPassword("s3cret", got.Username) {
		t.Fatalf("credential %+v: want expiry:alice an hour ahead, HMAC-SHA1 password", got)
	}
	out.Reset()
	if code := runCred([]string{"--secret", "s3cret", "--user", "alice", "--ttl", "10m"}, &out, &errOut); code != 0 ||
		!strings.HasPrefix(out.String(), "username: ") || !strings.Contains(out.String(), "\npassword: ") {
		t.Fatalf("cred text output = %d %q", code, out.String())
	}
	for _, bad := range [][]string{{"--user", "a"}, {"--secret", "s", "--secret-file", secretFile}, {"--secret", "s", "--ttl", "-1s"}} {
		if code := runCred(bad, &out, &errOut); code != exitConfig {
			t.Errorf("cred %v = %d, want %d", bad, code, exitConfig)
		}
	}
	srv := startTestRelay(t, slog.New(slog.DiscardHandler), func(c *relay.Config) {
		c.Users = nil
		c.AuthSecrets = []string{"s3cret"}
	})
	allocateAs(t, srv.ListenAddrs()[0], got.Username, got.Password)
}

// The REST scheme on a vector computed outside Go (coturn's scheme, by
// openssl): printf 1700000000:bob | openssl dgst -sha1 -hmac north-secret
// -binary | base64. The HMAC is also recomputed here with crypto/hmac, not
// with the relay's helper.
func TestCredKnownVector(t *testing.T) {
	defer func(f func() time.Time) { credNow = f }(credNow)
	credNow = func() time.Time { return time.Unix(1700000000-3600, 0) }
	var out, errOut bytes.Buffer
	if code := runCred([]string{"--secret", "north-secret", "--user", "bob", "--ttl", "1h"}, &out, &errOut); code != 0 {
		t.Fatalf("cred = %d: %s", code, errOut.String())
	}
	const want = "username: 1700000000:bob\npassword: XEHgnuLSroMN7pTIvQpQN2UbPxc=\n"
	if out.String() != want {
		t.Fatalf("cred printed %q, want %q", out.String(), want)
	}
	mac := hmac.New(sha1.New, []byte("north-secret"))
	mac.Write([]byte("1700000000:bob"))
	if got := base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != "XEHgnuLSroMN7pTIvQpQN2UbPxc=" {
		t.Fatalf("crypto/hmac gives %s for the openssl vector", got)
	}

	out.Reset()
	if code := runCred([]string{"--secret", "north-secret", "--user", "bob", "--ttl", "1h", "--json",
		"--uri", "turn:relay.example.net:3478?transport=udp", "--uri", "turns:relay.example.net:5349?transport=tcp"}, &out, &errOut); code != 0 {
		t.Fatalf("cred --json = %d: %s", code, errOut.String())
	}
	var got struct {
		Username, Password string
		TTL                int64
		URIs               []string
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Username != "1700000000:bob" || got.Password != "XEHgnuLSroMN7pTIvQpQN2UbPxc=" || got.TTL != 3600 || len(got.URIs) != 2 {
		t.Fatalf("cred --json = %s", out.String())
	}
}
