//go:build linux

package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
)

// The stream gate is the request gate for TCP and TLS clients: it accepts
// connections for pion, frames each stream itself (framer.go), runs the
// gate on every frame, and bounds what a connection that has not
// authenticated may cost: a deadline, a small frame limit, and a cap on how
// many such connections one source and all sources may hold at once.

// tlsHandshakeTimeout bounds a TLS client that never finishes its handshake.
const tlsHandshakeTimeout = 10 * time.Second

// defaultStreamAuthTimeout bounds how long a TCP or TLS connection may stay
// open before it sends a request with valid credentials. pion keeps a
// stream (a goroutine and its buffers) for as long as the client keeps it
// open, so without a bound idle unauthenticated connections would exhaust
// the relay's memory and descriptors. A real client authenticates within a
// round trip or two of connecting.
const defaultStreamAuthTimeout = 30 * time.Second

// Accept back-off after a failed accept (EMFILE, ENFILE, ENOBUFS): the
// listener keeps serving once descriptors free up instead of giving up, as
// net/http's Server does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Stream close reasons, the "reason" label of stream_closes_total.
const (
	streamBadFrame      = "bad_frame"
	streamFrameTooLarge = "frame_too_large"
	streamTruncated     = "truncated_frame"
	streamAuthTimeout   = "auth_timeout"
	streamUnauthLimit   = "unauthenticated_limit"
	streamAcceptError   = "accept_error"
)

var streamCloseReasons = []string{streamBadFrame, streamFrameTooLarge, streamTruncated,
	streamAuthTimeout, streamUnauthLimit, streamAcceptError}

// unauthStreams counts connections that have not authenticated yet, per
// source address and in total, against the configured caps.
type unauthStreams struct {
	mu       sync.Mutex
	perIP    map[netip.Addr]int
	total    int
	maxTotal int
	maxPerIP int
}

// sourceKey groups IPv6 sources by /64, the block one subscriber gets.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// admit counts a new connection from ip, or reports false when a cap is
// reached.
func (u *unauthStreams) admit(ip netip.Addr) bool {
	k := sourceKey(ip)
	u.mu.Lock()
	defer u.mu.Unlock()
	if (u.maxTotal > 0 && u.total >= u.maxTotal) || (u.maxPerIP > 0 && u.perIP[k] >= u.maxPerIP) {
		return false
	}
	if u.perIP == nil {
		u.perIP = map[netip.Addr]int{}
	}
	u.perIP[k]++
	u.total++
	return true
}

// release uncounts a connection admitted for ip.
func (u *unauthStreams) release(ip netip.Addr) {
	k := sourceKey(ip)
	u.mu.Lock()
	defer u.mu.Unlock()
	if n := u.perIP[k]; n > 1 {
		u.perIP[k] = n - 1
	} else {
		delete(u.perIP, k)
	}
	u.total--
}

// gatedListener wraps a TCP (or TLS) listener: it tracks accepted
// connections so Close can end them (pion leaves them to the client), and
// frames each stream so the gate sees whole STUN messages.
type gatedListener struct {
	net.Listener
	gate *gate

	mu     sync.Mutex
	conns  map[*gatedStreamConn]struct{}
	closed bool
	// acceptErr is the error of the last accept while it keeps failing,
	// nil once one succeeds; /readyz reports it.
	acceptErr atomic.Pointer[error]
}

// health returns why the listener cannot take connections now, or nil.
func (l *gatedListener) health() error {
	if e := l.acceptErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Accept returns the next connection for pion. It never hands pion an
// error it would stop on while the listener is open: pion's accept loop
// ends at the first error, which would leave the port bound and dead.
func (l *gatedListener) Accept() (net.Conn, error) {
	backoff := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.isClosed() {
				return nil, err
			}
			l.acceptErr.Store(&err)
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			l.gate.srv.streamClosed(streamAcceptError)
			l.gate.srv.denyLog.Warn("accept failed; retrying", slog.Any("error", err), slog.String("listen", l.Addr().String()), slog.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		if backoff != 0 {
			l.acceptErr.Store(nil)
			l.gate.srv.log.Info("accepting again", slog.String("listen", l.Addr().String()))
		}
		backoff = 0
		gc, ok := l.admit(c)
		if !ok {
			continue
		}
		return gc, nil
	}
}

func (l *gatedListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// admit wraps c, or closes it when the unauthenticated-connection caps are
// reached or the listener is closing.
func (l *gatedListener) admit(c net.Conn) (*gatedStreamConn, bool) {
	g := l.gate
	src := addrPortOf(c.RemoteAddr()).Addr()
	if !g.unauth.admit(src) {
		g.srv.streamClosed(streamUnauthLimit)
		g.srv.denyLog.Info("unauthenticated stream limit reached; connection closed", slog.String("client", c.RemoteAddr().String()))
		_ = c.Close()
		return nil, false
	}
	gc := &gatedStreamConn{Conn: c, l: l, src: src, counted: true,
		framer: streamFramer{r: c},
		tuple:  fiveTuple{proto: streamProto(c), src: c.RemoteAddr(), dst: c.LocalAddr(), conn: c},
		authBy: time.Now().Add(time.Duration(g.streamAuthTimeout.Load()))}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		gc.uncount()
		_ = c.Close()
		return nil, false
	}
	l.conns[gc] = struct{}{}
	l.mu.Unlock()
	return gc, true
}

func streamProto(c net.Conn) string {
	if _, ok := c.(*tls.Conn); ok {
		return "tls"
	}
	return "tcp"
}

// Close closes the listener and every connection it accepted.
func (l *gatedListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[*gatedStreamConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
		c.uncount()
	}
	return err
}

func (l *gatedListener) forget(c *gatedStreamConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// gatedStreamConn hands pion the stream one frame at a time after the gate
// has seen it. pion frames it again with its own reader; the frames it gets
// are whole and within maxStreamFrame, which its reader handles.
type gatedStreamConn struct {
	net.Conn
	l       *gatedListener
	framer  streamFramer
	tuple   fiveTuple
	src     netip.Addr
	pending []byte
	msg     stun.Message
	// authBy is when the connection is closed unless it has sent an
	// authenticated request (authed) by then.
	authBy    time.Time
	authed    bool
	handshake bool

	mu      sync.Mutex
	counted bool // still counted in the gate's unauthenticated streams
	once    sync.Once
}

// uncount takes the connection out of the unauthenticated count, once.
func (c *gatedStreamConn) uncount() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counted {
		c.counted = false
		c.l.gate.unauth.release(c.src)
	}
}

// Read never returns 0 bytes without an error: pion's reader would spin on
// an empty read.
func (c *gatedStreamConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *gatedStreamConn) next() error {
	if tc, ok := c.Conn.(*tls.Conn); ok && !c.handshake {
		c.handshake = true
		ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	srv := c.l.gate.srv
	for {
		limit := maxStreamFrame
		if !c.authed {
			limit = maxUnauthFrame
			if err := c.Conn.SetReadDeadline(c.authBy); err != nil {
				return err
			}
		}
		frame, err := c.framer.next(limit)
		if err != nil {
			c.noteReadError(err)
			return err
		}
		v := c.l.gate.inspect(frame, c.tuple, &c.msg)
		if v.authed && !c.authed {
			c.authed = true
			c.uncount()
			if err := c.Conn.SetReadDeadline(time.Time{}); err != nil {
				return err
			}
		}
		switch {
		case v.drop, v.consumed:
			continue
		case v.reply != nil:
			if _, err := c.Conn.Write(v.reply); err != nil {
				return err
			}
			continue
		case v.rewrite != nil:
			c.pending = v.rewrite
			return nil
		}
		if len(frame) == 0 {
			srv.streamClosed(streamBadFrame) // cannot happen: frames are at least 4 bytes
			return errNotTURNFrame
		}
		c.pending = frame
		return nil
	}
}

// noteReadError counts why a stream ended, when it was the client's fault.
func (c *gatedStreamConn) noteReadError(err error) {
	srv := c.l.gate.srv
	switch {
	case errors.Is(err, errFrameTooLarge):
		srv.streamClosed(streamFrameTooLarge)
	case errors.Is(err, errTruncatedFrame):
		srv.streamClosed(streamTruncated)
	case errors.Is(err, errNotTURNFrame), errors.Is(err, errBadSTUNLength),
		errors.Is(err, errBadMagicCookie), errors.Is(err, errBadChannel):
		srv.streamClosed(streamBadFrame)
	case !c.authed && errors.Is(err, os.ErrDeadlineExceeded):
		srv.metrics.authFailures.WithLabelValues(authStreamTimeout).Inc()
		srv.streamClosed(streamAuthTimeout)
		return
	default:
		return
	}
	srv.denyLog.Info("stream closed", slog.String("client", c.RemoteAddr().String()), slog.String("proto", c.tuple.proto), slog.Any("error", err))
}

func (c *gatedStreamConn) Write(b []byte) (int, error) {
	if _, err := c.Conn.Write(c.l.gate.noteResponse(b, c.tuple)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *gatedStreamConn) Close() error {
	c.once.Do(func() {
		c.l.forget(c)
		c.uncount()
	})
	return c.Conn.Close()
}
