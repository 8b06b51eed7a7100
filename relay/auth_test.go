package relay

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 8489 long-term key
	"crypto/sha1" //nolint:gosec // the TURN REST API is HMAC-SHA1
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// The TURN REST password is base64(HMAC-SHA1(secret, username)). RFC 2202
// gives HMAC-SHA1 test vectors that nobody here computed; this one is from
// RFC 2202 section 3, test case 2.
func TestRESTPasswordRFC2202Vector(t *testing.T) {
	want, _ := hex.DecodeString("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
	got, err := base64.StdEncoding.DecodeString(RESTPassword("Jefe", "what do ya want for nothing?"))
	if err != nil {
		t.Fatal(err)
	}
	if !hmac.Equal(got, want) {
		t.Fatalf("RESTPassword = %x, want RFC 2202 HMAC-SHA1 %x", got, want)
	}
}

// coturnCredential computes a credential the way coturn documents it for
// use-auth-secret (turnserver.conf: "temporary-password = base64_encode(
// hmac-sha1(shared-secret, temporary-username))", username
// "timestamp:userid"), written independently of RESTCredential.
func coturnCredential(secret, user string, expiry int64) (string, string) {
	username := strconv.FormatInt(expiry, 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	fmt.Fprint(mac, username)
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func longTermRequest(t *testing.T, user, realm, password string) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(user), stun.NewRealm(realm), stun.NewNonce("nonce"),
		stun.NewLongTermIntegrity(user, realm, password), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAuthenticate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	users := []staticUser{
		{name: "alice", key: longTermKey("alice", "example.org", "wonderland")},
	}
	bobKey := md5.Sum([]byte("bob:example.org:builder")) //nolint:gosec // RFC 8489 long-term key
	u, err := parseUser("bob:key="+hex.EncodeToString(bobKey[:]), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	users = append(users, u)
	creds := newCredentials("example.org", users, []string{"old-secret", "new-secret"})

	validUser, validPass := coturnCredential("new-secret", "carol", now.Add(time.Hour).Unix())
	oldUser, oldPass := coturnCredential("old-secret", "carol", now.Add(time.Hour).Unix())
	expUser, expPass := coturnCredential("new-secret", "carol", now.Add(-time.Second).Unix())
	bareUser := strconv.FormatInt(now.Add(time.Minute).Unix(), 10)
	barePass := RESTPassword("new-secret", bareUser)
	mintedUser, mintedPass := RESTCredential("old-secret", "dave", now.Add(time.Minute))

	tests := []struct {
		name, user, realm, pass string
		wantID, wantReason      string
	}{
		{"static user, plaintext", "alice", "example.org", "wonderland", "alice", ""},
		{"static user, precomputed key", "bob", "example.org", "builder", "bob", ""},
		{"static user, wrong password", "alice", "example.org", "rabbit", "", authBadIntegrity},
		{"unknown user", "mallory", "example.org", "x", "", authUnknownUser},
		{"wrong realm", "alice", "other.org", "wonderland", "", authWrongRealm},
		{"coturn REST credential, current secret", validUser, "example.org", validPass, "carol", ""},
		{"coturn REST credential, previous secret (rotation)", oldUser, "example.org", oldPass, "carol", ""},
		{"REST username without user part", bareUser, "example.org", barePass, bareUser, ""},
		{"RESTCredential output", mintedUser, "example.org", mintedPass, "dave", ""},
		{"expired REST credential", expUser, "example.org", expPass, "", authExpired},
		{"REST credential, password of another username", validUser, "example.org", barePass, "", authBadIntegrity},
		{"REST credential, unknown secret", validUser, "example.org", RESTPassword("guess", validUser), "", authBadIntegrity},
		{"REST username with garbage expiry", "soon:carol", "example.org", "x", "", authUnknownUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := longTermRequest(t, tt.user, tt.realm, tt.pass)
			id, key, reason := creds.authenticate(m, now)
			if reason != tt.wantReason || id != tt.wantID {
				t.Fatalf("authenticate = (%q, %q), want (%q, %q)", id, reason, tt.wantID, tt.wantReason)
			}
			if reason == "" && stun.MessageIntegrity(key).Check(m) != nil {
				t.Fatal("returned key does not verify the request")
			}
		})
	}
	// A request without USERNAME is malformed, not an unknown user.
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	if _, _, reason := creds.authenticate(m, now); reason != authMalformed {
		t.Errorf("no USERNAME: reason %q, want %q", reason, authMalformed)
	}
}

func TestVerifiedKeysBounded(t *testing.T) {
	var v verifiedKeys
	now := time.Now()
	src := &fakeAddr{"192.0.2.1:1"}
	v.put(src, "alice", verifiedKey{userID: "alice", key: []byte{1}, at: now})
	if e, ok := v.take(src, "alice", now); !ok || e.userID != "alice" {
		t.Fatal("hand-over lost")
	}
	if _, ok := v.take(src, "alice", now); ok {
		t.Fatal("a verified key must be used once")
	}
	// Stale entries (requests pion rejected before asking) are pruned.
	old := now.Add(-time.Minute)
	for i := 0; i < verifiedPruneAt; i++ {
		v.put(&fakeAddr{fmt.Sprintf("192.0.2.1:%d", i)}, "u", verifiedKey{at: old})
	}
	v.put(src, "alice", verifiedKey{at: now})
	if n := len(v.m); n > 1 {
		t.Errorf("%d entries after pruning, want 1", n)
	}
	if _, ok := v.take(src, "alice", now.Add(verifiedTTL+time.Second)); ok {
		t.Error("expired hand-over used")
	}
}

type fakeAddr struct{ s string }

func (a *fakeAddr) Network() string { return "udp" }
func (a *fakeAddr) String() string  { return a.s }
