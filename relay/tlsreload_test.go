package relay_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
	"github.com/isthmusrelay/isthmus/internal/testcert"
	"github.com/isthmusrelay/isthmus/relay"
)

func certNotAfter(t *testing.T, certFile string) time.Time {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.NotAfter
}

// binding sends a STUN Binding request over an established TLS connection
// and waits for the answer: the connection still serves.
func binding(t *testing.T, c *tls.Conn) {
	t.Helper()
	m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write(m.Raw); err != nil {
		t.Fatalf("binding over the old TLS connection: %v", err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("binding over the old TLS connection: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if res.Decode() != nil || res.TransactionID != m.TransactionID {
		t.Fatalf("binding over the old TLS connection: bad answer")
	}
}

// Renewal rewrites tls_cert and tls_key in place and sends SIGHUP (Reload):
// new handshakes get the new certificate, connections already up keep
// working, the not-after gauge follows, and a certificate an hour from
// expiry is warned about. Before, Reload kept serving the certificate
// loaded at start until a restart.
func TestTLSCertificateReload(t *testing.T) {
	certFile, keyFile, pool1 := testcert.Loopback(t)
	var logs lockedbuf.Buffer
	cfg := testConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.RelayIPs = []string{"127.0.0.1"}
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.ListenerSockets = 1
	reg := prometheus.NewRegistry()
	srv, err := relay.New(cfg, slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	tlsAddr := srv.ListenAddrs()[1].String()
	if !strings.Contains(logs.String(), "TLS certificate expires soon") {
		t.Errorf("a certificate an hour from expiry was not warned about:\n%s", logs.String())
	}
	gauge := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "isthmus_relay_tls_cert_not_after_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("isthmus_relay_tls_cert_not_after_seconds not exported")
		return 0
	}
	if got, want := gauge(), float64(certNotAfter(t, certFile).Unix()); got != want {
		t.Errorf("not-after gauge = %v, want %v", got, want)
	}

	old, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool1, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Close() })
	oldDER := old.ConnectionState().PeerCertificates[0].Raw
	binding(t, old)

	// Renew: same paths, new contents; a second later so NotAfter differs.
	time.Sleep(1100 * time.Millisecond)
	cert2, key2, pool2 := testcert.Loopback(t)
	for _, cp := range [][2]string{{cert2, certFile}, {key2, keyFile}} {
		b, err := os.ReadFile(cp[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Reload(cfg); err != nil {
		t.Fatalf("Reload with the same paths: %v", err)
	}
	renewed, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool2, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake after renewal, trusting only the new certificate: %v", err)
	}
	defer renewed.Close()
	if bytes.Equal(renewed.ConnectionState().PeerCertificates[0].Raw, oldDER) {
		t.Fatal("a new handshake after Reload still gets the old certificate")
	}
	binding(t, old) // the connection made before the renewal is kept
	if got, want := gauge(), float64(certNotAfter(t, certFile).Unix()); got != want {
		t.Errorf("not-after gauge after reload = %v, want the new certificate's %v", got, want)
	}

	// A broken file keeps the renewed certificate serving.
	if err := os.WriteFile(certFile, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = srv.Reload(cfg)
	if !strings.Contains(logs.String(), "TLS certificate reload failed; the old certificate stays") {
		t.Errorf("a broken certificate file on reload was not logged")
	}
	again, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool2, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake after a failed reload: %v", err)
	}
	_ = again.Close()
}
