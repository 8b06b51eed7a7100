package siplocate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// ErrNoStreamTarget means the URI resolved, but to no TCP or TLS target
// of the asked family: nothing to connect to.
var ErrNoStreamTarget = errors.New("siplocate: no TCP or TLS target")

const (
	// DefaultAttemptDelay is RFC 8305 §8's default Connection Attempt
	// Delay: how long an attempt runs alone before the next one starts.
	DefaultAttemptDelay = 250 * time.Millisecond
	// minAttemptDelay is RFC 8305 §5's floor: "MUST NOT be less than 10 ms"
	// lest the client flood the network.
	minAttemptDelay = 10 * time.Millisecond
)

// Dialer connects to the server a URI designates over TCP or TLS, racing
// the located targets as RFC 8305 (Happy Eyeballs v2) §5 says: attempts
// start in target order, one every AttemptDelay or at once when the
// previous one fails; the first to connect (and, for TLS, to finish the
// handshake) wins and every other is cancelled or closed.
type Dialer struct {
	// Resolver locates the URI's targets; nil means a zero Resolver.
	Resolver *Resolver
	// AttemptDelay is the RFC 8305 Connection Attempt Delay; zero means
	// DefaultAttemptDelay, and less than 10 ms counts as 10 ms.
	AttemptDelay time.Duration
	// NetDialer makes each TCP connection; nil means a zero net.Dialer.
	NetDialer *net.Dialer
	// TLSConfig is used for TLS targets; ServerName, when empty, is the
	// URI's host: RFC 5922 §4 (SIP) and RFC 7065 §3 (TURN) check the
	// certificate against the domain in the URI, not the SRV target.
	TLSConfig *tls.Config
	// Logger receives one debug line per attempt; nil discards them.
	Logger *slog.Logger
}

// DialContext locates uri and connects to it over TCP or TLS with Happy
// Eyeballs. network is "tcp" (either family), "tcp4" or "tcp6". UDP
// targets are skipped; use Iterate for them.
func (r *Resolver) DialContext(ctx context.Context, network, uri string) (net.Conn, error) {
	return (&Dialer{Resolver: r, Logger: r.Logger}).DialContext(ctx, network, uri)
}

// DialContext is Dial without the winning Target, in net.Dialer's shape.
func (d *Dialer) DialContext(ctx context.Context, network, uri string) (net.Conn, error) {
	c, _, err := d.Dial(ctx, network, uri)
	return c, err
}

// Dial locates uri and races its TCP and TLS targets of the family
// network allows ("tcp", "tcp4", "tcp6"). It returns the connection and
// the target it reached; a TLS target yields a *tls.Conn with the
// handshake done.
func (d *Dialer) Dial(ctx context.Context, network, uri string) (net.Conn, Target, error) {
	keep, err := familyFilter(network)
	if err != nil {
		return nil, Target{}, err
	}
	u, err := ParseURI(uri)
	if err != nil {
		return nil, Target{}, err
	}
	r := d.Resolver
	if r == nil {
		r = &Resolver{}
	}
	ts, err := r.LocateURI(ctx, u)
	if err != nil {
		return nil, Target{}, err
	}
	var stream []Target
	for _, t := range ts {
		if t.Transport.Stream() && keep(t) {
			stream = append(stream, t)
		}
	}
	if len(stream) == 0 {
		return nil, Target{}, fmt.Errorf("%w: %s over %s (%d targets located)", ErrNoStreamTarget, u, network, len(ts))
	}
	return d.Race(ctx, u.Host, stream)
}

func familyFilter(network string) (func(Target) bool, error) {
	switch network {
	case "", "tcp":
		return func(Target) bool { return true }, nil
	case "tcp4":
		return func(t Target) bool { return t.AddrPort.Addr().Is4() }, nil
	case "tcp6":
		return func(t Target) bool { return t.AddrPort.Addr().Is6() }, nil
	}
	return nil, fmt.Errorf("siplocate: dial: network %q: want tcp, tcp4 or tcp6", network)
}

// attemptResult is one finished connection attempt.
type attemptResult struct {
	conn net.Conn
	idx  int
	err  error
}

// Race connects to targets (TCP or TLS) in order with RFC 8305 §5
// staggering and returns the first that succeeds. serverName is the TLS
// identity to check when TLSConfig has none. The losers are cancelled, or
// closed if they connected too, before Race returns.
func (d *Dialer) Race(ctx context.Context, serverName string, targets []Target) (net.Conn, Target, error) {
	if len(targets) == 0 {
		return nil, Target{}, ErrNoStreamTarget
	}
	delay := d.AttemptDelay
	if delay == 0 {
		delay = DefaultAttemptDelay
	}
	delay = max(delay, minAttemptDelay)
	log := d.Logger
	if log == nil {
		log = discardLogger
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attemptResult, len(targets))
	next, running := 0, 0
	start := func() {
		i := next
		next++
		running++
		log.Debug("siplocate: connection attempt", "n", i+1, "target", targets[i].String())
		go func() {
			c, err := d.attempt(ctx, targets[i], serverName)
			results <- attemptResult{conn: c, idx: i, err: err}
		}()
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	start()

	var errs []error
	for running > 0 {
		var tick <-chan time.Time
		if next < len(targets) {
			tick = timer.C
		}
		select {
		case <-tick:
			start()
			timer.Reset(delay)
		case res := <-results:
			running--
			if res.err == nil {
				log.Debug("siplocate: connected", "n", res.idx+1, "target", targets[res.idx].String())
				cancel()
				d.reap(results, running, log)
				return res.conn, targets[res.idx], nil
			}
			log.Debug("siplocate: attempt failed", "n", res.idx+1, "target", targets[res.idx].String(), "err", res.err)
			errs = append(errs, fmt.Errorf("%s %s: %w", targets[res.idx].Transport, targets[res.idx].AddrPort, res.err))
			// RFC 8305 §5: a failed attempt starts the next one at once.
			if next < len(targets) {
				start()
				timer.Reset(delay)
			}
		}
	}
	return nil, Target{}, fmt.Errorf("siplocate: dial: all %d attempts failed: %w", len(targets), errors.Join(errs...))
}

// reap waits for the n attempts still running after a winner was picked
// (their context is cancelled) and closes any that connected anyway.
func (d *Dialer) reap(results <-chan attemptResult, n int, log *slog.Logger) {
	for range n {
		if res := <-results; res.conn != nil {
			log.Debug("siplocate: closing a connection that lost the race", "n", res.idx+1)
			_ = res.conn.Close()
		}
	}
}

func (d *Dialer) attempt(ctx context.Context, t Target, serverName string) (net.Conn, error) {
	nd := d.NetDialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	c, err := nd.DialContext(ctx, "tcp", t.AddrPort.String())
	if err != nil {
		return nil, err
	}
	if t.Transport != TLS {
		return c, nil
	}
	var cfg *tls.Config
	if d.TLSConfig != nil {
		cfg = d.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}
