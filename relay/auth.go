//go:build linux

package relay

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // TURN REST API (coturn use-auth-secret) is defined with HMAC-SHA1.
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Auth failure reasons, used as the "reason" metric label.
const (
	authUnknownUser  = "unknown_user"
	authExpired      = "expired"
	authBadIntegrity = "bad_integrity"
	authWrongRealm   = "wrong_realm"
	authMalformed    = "malformed"
	// authStreamTimeout: a TCP/TLS connection sent no authenticated
	// request within defaultStreamAuthTimeout and was closed.
	authStreamTimeout = "stream_timeout"
	// authStaleNonce: a nonce not minted for the request's 5-tuple (a
	// replay) or expired; answered 438.
	authStaleNonce = "stale_nonce"
	// authThrottled: the source failed too often (throttle.go); dropped.
	authThrottled = "throttled"
)

// longTermKey is the RFC 8489 §9.2.2 long-term key MD5(username:realm:password).
func longTermKey(user, realm, password string) []byte {
	return turn.GenerateAuthKey(user, realm, password)
}

// RESTPassword returns the TURN REST API password for username, as coturn's
// use-auth-secret computes it: base64(HMAC-SHA1(secret, username)).
func RESTPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// RESTCredential mints a time-limited TURN REST API credential for user,
// valid until expiry: username "expiry:user" (or just "expiry" when user is
// empty) and its password. coturn with use-auth-secret accepts the same pair.
func RESTCredential(secret, user string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	return username, RESTPassword(secret, username)
}

// credentials is one immutable snapshot of users and secrets; Reload swaps
// the whole snapshot atomically.
type credentials struct {
	realm   string
	users   map[string][]byte
	secrets []string
}

func newCredentials(realm string, users []staticUser, secrets []string) *credentials {
	c := &credentials{realm: realm, users: make(map[string][]byte, len(users)), secrets: secrets}
	for _, u := range users {
		c.users[u.name] = u.key
	}
	return c
}

// lookup returns the user ID and every key the username may be signed with
// (one per REST secret), or a failure reason.
func (c *credentials) lookup(username, realm string, now time.Time) (userID string, keys [][]byte, reason string) {
	if realm != c.realm {
		return "", nil, authWrongRealm
	}
	if k, ok := c.users[username]; ok {
		return username, [][]byte{k}, ""
	}
	if len(c.secrets) == 0 {
		return "", nil, authUnknownUser
	}
	// TURN REST API: "expiry" or "expiry:user", expiry in Unix seconds.
	expS, user, hasUser := strings.Cut(username, ":")
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil || exp <= 0 {
		return "", nil, authUnknownUser
	}
	if exp < now.Unix() {
		return "", nil, authExpired
	}
	userID = username
	if hasUser && user != "" {
		// The user part, so quotas and refreshes follow the user across
		// renewed credentials.
		userID = user
	}
	keys = make([][]byte, 0, len(c.secrets))
	for _, s := range c.secrets {
		keys = append(keys, longTermKey(username, realm, RESTPassword(s, username)))
	}
	return userID, keys, ""
}

// verifiedKey is what the request gate learned for one request: pion's
// AuthHandler only sees the username, so with several REST secrets it could
// not know which one signed the request. The gate checks MESSAGE-INTEGRITY
// against each candidate and leaves the winner here for the AuthHandler,
// which runs next for the same request.
type verifiedKey struct {
	userID string
	key    []byte
	at     time.Time
}

// verifiedKeys is the hand-over from gate to AuthHandler (control path only).
type verifiedKeys struct {
	mu sync.Mutex
	m  map[string]verifiedKey
}

const (
	verifiedTTL = 10 * time.Second
	// verifiedPruneAt is the map size above which stale entries (requests
	// pion rejected before asking the AuthHandler, e.g. stale nonce) are
	// pruned; it bounds memory under a flood.
	verifiedPruneAt = 4096
)

func verifiedID(src net.Addr, username string) string { return src.String() + "\x00" + username }

func (v *verifiedKeys) put(src net.Addr, username string, e verifiedKey) {
	id := verifiedID(src, username)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[string]verifiedKey)
	}
	if len(v.m) >= verifiedPruneAt {
		for k, old := range v.m {
			if e.at.Sub(old.at) > verifiedTTL {
				delete(v.m, k)
			}
		}
		if len(v.m) >= 4*verifiedPruneAt {
			clear(v.m)
		}
	}
	v.m[id] = e
}

func (v *verifiedKeys) take(src net.Addr, username string, now time.Time) (verifiedKey, bool) {
	id := verifiedID(src, username)
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[id]
	if ok {
		delete(v.m, id)
	}
	if !ok || now.Sub(e.at) > verifiedTTL {
		return verifiedKey{}, false
	}
	return e, true
}

// authenticate checks a decoded request's long-term credentials: the
// username is known (or a valid unexpired REST username), the realm is ours
// and MESSAGE-INTEGRITY matches one candidate key.
func (c *credentials) authenticate(m *stun.Message, now time.Time) (userID string, key []byte, reason string) {
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil || !m.Contains(stun.AttrNonce) {
		return "", nil, authMalformed
	}
	userID, keys, reason := c.lookup(string(user), string(realm), now)
	if reason != "" {
		return "", nil, reason
	}
	for _, k := range keys {
		if stun.MessageIntegrity(k).Check(m) == nil {
			return userID, k, ""
		}
	}
	return "", nil, authBadIntegrity
}
