package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Check validates cfg exactly as New would before it binds anything: the
// same resolve steps, the TLS certificate and key loaded and parsed, the
// relay IPs (configured or detected) and the specific listen and
// tls_listen addresses present on this host. It binds no socket, so a
// port already in use by a running relay is not an error: that is what
// checking a configuration beside the relay it will replace looks like.
// The error names the field, as New's does; log (nil discards) gets the
// same warnings a start would log (certificate near expiry, non-global
// relay IPs).
func Check(cfg Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res, err := cfg.resolve()
	if err != nil {
		return err
	}
	s := &Server{cfg: cfg, res: res, log: log, checkOnly: true}
	host := interfaceAddrs()
	for _, l := range []struct {
		field string
		aps   []netip.AddrPort
	}{{"listen", res.listen}, {"tls_listen", res.tlsListen}} {
		if l.field == "tls_listen" && cfg.TLSCert == "" {
			continue
		}
		for _, ap := range l.aps {
			if a := ap.Addr(); !a.IsUnspecified() && !a.IsLoopback() && !slices.Contains(host, a) {
				return fieldErr(l.field, "%s is not an address of this host", a)
			}
		}
	}
	if cfg.Metrics != "" {
		// New binds it (a busy port is exit 1 there, not a config error);
		// an IP this host does not have is the field's mistake.
		host, _, _ := net.SplitHostPort(cfg.Metrics)
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() && !ip.IsLoopback() && !slices.Contains(interfaceAddrs(), ip.Unmap()) {
			return fieldErr("metrics", "%s is not an address of this host", ip)
		}
	}
	if err := s.pickRelayIPs(); err != nil {
		return err
	}
	if cfg.TLSCert != "" {
		_, notAfter, err := loadCert(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fieldErr("tls_cert", "%v", err)
		}
		if left := time.Until(notAfter); left <= 0 {
			log.Warn("TLS certificate has expired: clients will refuse TURN over TLS", slog.String("tls_cert", cfg.TLSCert), slog.Time("not_after", notAfter))
		} else if left < certWarnBefore {
			log.Warn("TLS certificate expires soon", slog.String("tls_cert", cfg.TLSCert), slog.Time("not_after", notAfter), slog.Duration("expires_in", left))
		}
	}
	return nil
}

// probeRelayIP reports why ip cannot be a relay address: New binds it on
// an ephemeral port (the kernel's answer is the one that counts), Check
// only looks it up among the host's addresses.
func (s *Server) probeRelayIP(ip netip.Addr) error {
	if s.checkOnly {
		if !ip.IsLoopback() && !slices.Contains(interfaceAddrs(), ip) {
			return fmt.Errorf("not an address of any interface")
		}
		return nil
	}
	probe, err := net.ListenUDP(udpNetwork(ip), net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return err
	}
	return probe.Close()
}

// Redacted returns a copy of c fit to print: users keep their names with
// the password or key replaced by "***", auth_secrets are each "***".
// File paths (users_file, auth_secret_file, tls_key) are kept; their
// contents are never read into the copy.
func (c Config) Redacted() Config {
	out := c
	out.Users = make([]string, len(c.Users))
	for i, u := range c.Users {
		out.Users[i] = redactUser(u)
	}
	out.AuthSecrets = make([]string, len(c.AuthSecrets))
	for i := range c.AuthSecrets {
		out.AuthSecrets[i] = "***"
	}
	return out
}
