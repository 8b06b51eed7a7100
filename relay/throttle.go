//go:build linux

package relay

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Wrong-password throttling. A source (an IPv4 address, or an IPv6 /64) may
// fail authentication as one username authFailureBurst times at once and
// then once per authFailureEvery; past that its signed requests for that
// username are dropped unanswered, without checking them
// (counted as auth_failures_total{reason="throttled"} and
// drops_total{reason="auth_throttled"}) until the bucket refills. Answering
// every guess is what an online password search needs: unthrottled, one
// socket got 14,600 answers a second. The key includes the username so a
// guesser behind a NAT does not lock out the other users behind it. A
// guesser trying many usernames gets a bucket per username; the count of
// sources and usernames tracked is bounded (throttleMaxSources).
const (
	authFailureBurst = 10
	authFailureEvery = time.Second
	// throttleMaxSources bounds the sources tracked at once; past it the
	// idle ones (full buckets) are forgotten first.
	throttleMaxSources = 65536
)

// authThrottle keeps a token bucket per failing source. Only sources that
// failed are tracked, so a relay under no attack holds nothing.
type authThrottle struct {
	mu      sync.Mutex
	sources map[throttleKey]*rate.Limiter
}

type throttleKey struct {
	src  netip.Addr
	user string
}

// allow reports whether a request from src may be checked now. It takes no
// token: only failures do.
func (a *authThrottle) allow(src netip.Addr, user string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.sources[throttleKey{sourceKey(src), user}]
	return !ok || l.TokensAt(now) >= 1
}

// fail takes a token from src's bucket.
func (a *authThrottle) fail(src netip.Addr, user string, now time.Time) {
	k := throttleKey{sourceKey(src), user}
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.sources[k]
	if !ok {
		if a.sources == nil {
			a.sources = map[throttleKey]*rate.Limiter{}
		}
		if len(a.sources) >= throttleMaxSources {
			a.prune(now)
		}
		l = rate.NewLimiter(rate.Every(authFailureEvery), authFailureBurst)
		a.sources[k] = l
	}
	l.AllowN(now, 1)
}

// prune forgets sources whose bucket has refilled; if none has, it forgets
// half of them (an attacker spread over many sources then gets a fresh
// bucket sooner, but memory stays bounded).
func (a *authThrottle) prune(now time.Time) {
	for k, l := range a.sources {
		if l.TokensAt(now) >= authFailureBurst {
			delete(a.sources, k)
		}
	}
	if len(a.sources) < throttleMaxSources {
		return
	}
	n := 0
	for k := range a.sources {
		if n%2 == 0 {
			delete(a.sources, k)
		}
		n++
	}
}
