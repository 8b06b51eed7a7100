//go:build linux

package relay

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// certWarnBefore is how long before its NotAfter a loaded certificate is
// warned about: ACME clients renew 30 days ahead, so a certificate this
// close to expiry means renewal has failed for a while.
const certWarnBefore = 14 * 24 * time.Hour

// certStore holds the TLS certificate served to new handshakes. Reload
// swaps it (tls.Config.GetCertificate reads it per handshake), so a renewed
// certificate is served without a restart while connections already up
// keep theirs (coturn reloads on SIGUSR2, eturnal on reload).
type certStore struct {
	cur      atomic.Pointer[tls.Certificate]
	register sync.Once // the not-after gauge, on the first certificate
}

// get is the tls.Config GetCertificate callback.
func (c *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// loadCert reads tls_cert and tls_key, parses the leaf and returns it with
// its NotAfter.
func loadCert(certFile, keyFile string) (*tls.Certificate, time.Time, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, time.Time{}, err
	}
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, time.Time{}, err
		}
		cert.Leaf = leaf
	}
	return &cert, leaf.NotAfter, nil
}

// installCert makes cert the one new handshakes get, exports its expiry
// and warns when it is expired or close to it.
func (s *Server) installCert(cert *tls.Certificate, notAfter time.Time, now time.Time) {
	s.certs.cur.Store(cert)
	s.certs.register.Do(func() { _ = s.reg.Register(s.metrics.certNotAfter) })
	s.metrics.certNotAfter.Set(float64(notAfter.Unix()))
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		s.log.Warn("TLS certificate has expired: clients will refuse TURN over TLS", slog.String("tls_cert", s.cfg.TLSCert),
			slog.Time("not_after", notAfter), slog.Duration("expired_for", -left))
	case left < certWarnBefore:
		s.log.Warn("TLS certificate expires soon: renew it and send SIGHUP", slog.String("tls_cert", s.cfg.TLSCert),
			slog.Time("not_after", notAfter), slog.Duration("expires_in", left))
	default:
		s.log.Info("TLS certificate loaded", slog.String("tls_cert", s.cfg.TLSCert), slog.Time("not_after", notAfter))
	}
}

// reloadCert re-reads the running tls_cert and tls_key (the paths are
// restart-only; renewal rewrites the files in place). A file that does not
// load leaves the old certificate serving.
func (s *Server) reloadCert() {
	if s.cfg.TLSCert == "" {
		return
	}
	cert, notAfter, err := loadCert(s.cfg.TLSCert, s.cfg.TLSKey)
	if err != nil {
		s.log.Error("TLS certificate reload failed; the old certificate stays", slog.String("tls_cert", s.cfg.TLSCert), slog.Any("error", err))
		return
	}
	s.installCert(cert, notAfter, time.Now())
}
