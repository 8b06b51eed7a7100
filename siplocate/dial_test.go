package siplocate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/siplocate/dnstest"

	"github.com/isthmusrelay/isthmus/siplocate"
)

// Every test here dials loopback only: the zones answer ::1 and 127.0.0.1.

// recordHandler keeps the log records a Dialer writes, to check the order
// of its attempts without timing anything.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "n" || a.Key == "target" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	h.mu.Lock()
	h.msgs = append(h.msgs, b.String())
	h.mu.Unlock()
	return nil
}

func (h *recordHandler) attempts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.msgs {
		if strings.HasPrefix(m, "siplocate: connection attempt") || strings.HasPrefix(m, "siplocate: connected") {
			out = append(out, strings.TrimPrefix(m, "siplocate: "))
		}
	}
	return out
}

// samePort returns a port free on both 127.0.0.1 and ::1 (SRV gives one
// port for all of a target's addresses) and a TCP listener on 127.0.0.1.
func samePort(t *testing.T) (int, net.Listener) {
	t.Helper()
	for range 50 {
		l4, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err != nil {
			_ = l4.Close()
			if strings.Contains(err.Error(), "assign") {
				t.Skip("no ::1 on this host")
			}
			continue
		}
		_ = l6.Close()
		t.Cleanup(func() { _ = l4.Close() })
		return port, l4
	}
	t.Fatal("no port free on both loopbacks")
	return 0, nil
}

// heZone is a dual-stack server on loopback reached through SRV.
func heZone(t *testing.T, port int) *dnstest.Zone {
	return dnstest.Serve(t, "127.0.0.1",
		fmt.Sprintf("_sip._tcp.he.example.test. SRV 0 0 %d box.example.test.", port),
		fmt.Sprintf("_sips._tcp.he.example.test. SRV 0 0 %d box.example.test.", port),
		"box.example.test. AAAA ::1",
		"box.example.test. A 127.0.0.1")
}

// acceptAll accepts on l and hands every connection to handle.
func acceptAll(l net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

// TestDialFailedAttemptStartsNextAtOnce: RFC 8305 §5, a refused attempt
// does not wait for the Connection Attempt Delay. The delay is an hour: if
// the next attempt waited for it, the test's context would end first.
func TestDialFailedAttemptStartsNextAtOnce(t *testing.T) {
	port, l4 := samePort(t) // nothing listens on [::1]:port: refused
	acceptAll(l4, func(c net.Conn) { _ = c.Close() })
	z := heZone(t, port)
	logs := &recordHandler{}
	d := &siplocate.Dialer{
		Resolver:     &siplocate.Resolver{Server: z.Addr},
		AttemptDelay: time.Hour,
		Logger:       slog.New(logs),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, tg, err := d.Dial(ctx, "tcp", "sip:he.example.test;transport=tcp")
	if err != nil {
		t.Fatalf("Dial: %v (attempts %v)", err, logs.attempts())
	}
	defer c.Close()
	if got := tg.AddrPort.Addr().String(); got != "127.0.0.1" {
		t.Errorf("winner %v, want 127.0.0.1 after ::1 was refused", tg)
	}
	want := []string{
		fmt.Sprintf("connection attempt n=1 target=tcp [::1]:%d", port),
		fmt.Sprintf("connection attempt n=2 target=tcp 127.0.0.1:%d", port),
		fmt.Sprintf("connected n=2 target=tcp 127.0.0.1:%d", port),
	}
	if got := logs.attempts(); !prefixesMatch(got, want) {
		t.Errorf("attempts:\n got  %q\n want %q", got, want)
	}
}

func prefixesMatch(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			return false
		}
	}
	return true
}

// TestDialTLSStalledFamilyLoses: RFC 8305 §5 against a family that
// connects but never answers (a listener that accepts and stays silent,
// like a broken middlebox): after the Connection Attempt Delay the IPv4
// attempt starts and wins, the stalled IPv6 one is cancelled and its
// connection closed. The certificate names the URI's domain, not the SRV
// target: RFC 5922 §4.
func TestDialTLSStalledFamilyLoses(t *testing.T) {
	port, l4 := samePort(t)
	l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer l6.Close()
	cert, pool := selfSigned(t, "he.example.test")
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	acceptAll(l4, func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, srvCfg)
		if tc.Handshake() == nil {
			_, _ = io.Copy(io.Discard, tc)
		}
	})
	stalledClosed := make(chan error, 1)
	acceptAll(l6, func(c net.Conn) {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c) // never answers the ClientHello
		stalledClosed <- err
	})
	z := heZone(t, port)
	logs := &recordHandler{}
	d := &siplocate.Dialer{
		Resolver:     &siplocate.Resolver{Server: z.Addr},
		AttemptDelay: 50 * time.Millisecond,
		TLSConfig:    &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:       slog.New(logs),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, tg, err := d.Dial(ctx, "tcp", "sips:he.example.test")
	if err != nil {
		t.Fatalf("Dial: %v (attempts %v)", err, logs.attempts())
	}
	defer c.Close()
	if _, ok := c.(*tls.Conn); !ok || tg.Transport != siplocate.TLS || !tg.AddrPort.Addr().Is4() {
		t.Fatalf("got %T to %v, want a *tls.Conn to 127.0.0.1", c, tg)
	}
	want := []string{
		fmt.Sprintf("connection attempt n=1 target=tls [::1]:%d", port),
		fmt.Sprintf("connection attempt n=2 target=tls 127.0.0.1:%d", port),
		fmt.Sprintf("connected n=2 target=tls 127.0.0.1:%d", port),
	}
	if got := logs.attempts(); !prefixesMatch(got, want) {
		t.Errorf("attempts:\n got  %q\n want %q", got, want)
	}
	select {
	case err := <-stalledClosed:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the losing connection was left open")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the losing connection was not closed")
	}
}

// TestDialAllFail: every attempt failing is one error naming each.
func TestDialAllFail(t *testing.T) {
	port, l4 := samePort(t)
	_ = l4.Close() // nothing listens on either family
	z := heZone(t, port)
	d := &siplocate.Dialer{Resolver: &siplocate.Resolver{Server: z.Addr}}
	_, _, err := d.Dial(context.Background(), "tcp", "sip:he.example.test;transport=tcp")
	if err == nil || !strings.Contains(err.Error(), "all 2 attempts failed") ||
		!strings.Contains(err.Error(), "[::1]:"+strconv.Itoa(port)) || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("got %v, want both attempts named", err)
	}
}

// TestDialFamilyAndTransportFilter: tcp4 dials only IPv4; a UDP-only
// location has nothing to connect to.
func TestDialFamilyAndTransportFilter(t *testing.T) {
	port, l4 := samePort(t)
	acceptAll(l4, func(c net.Conn) { _ = c.Close() })
	z := heZone(t, port)
	r := &siplocate.Resolver{Server: z.Addr}
	c, err := r.DialContext(context.Background(), "tcp4", "sip:he.example.test;transport=tcp")
	if err != nil {
		t.Fatal(err)
	}
	if a := c.RemoteAddr().(*net.TCPAddr); a.IP.To4() == nil {
		t.Errorf("tcp4 reached %v", a)
	}
	_ = c.Close()
	_, err = r.DialContext(context.Background(), "tcp", "sip:127.0.0.1;transport=udp")
	if !errors.Is(err, siplocate.ErrNoStreamTarget) {
		t.Errorf("UDP-only URI: %v, want ErrNoStreamTarget", err)
	}
	if _, err := r.DialContext(context.Background(), "udp", "sip:127.0.0.1"); err == nil {
		t.Error("network udp accepted by DialContext")
	}
}

func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
