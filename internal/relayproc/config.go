package relayproc

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is one relay's settings, rendered as `isthmus relay` flags
// (IsthmusArgs) or as an equivalent turnserver.conf (CoturnConf), so a
// comparison runs both with the same settings.
type Config struct {
	// ListenIPs and Port are where clients reach the relay: every IP with
	// the one port, UDP and TCP.
	ListenIPs []netip.Addr
	Port      uint16
	// RelayIPs are the relayed addresses' IPs.
	RelayIPs []netip.Addr
	// MinPort and MaxPort bound the relayed ports; 0 keeps the relay's own
	// default.
	MinPort, MaxPort int
	// Realm and Users ("name:password") are the long-term credentials
	// (RFC 8489 §9.2).
	Realm string
	Users []string
	// AllowLoopbackPeers lets peers on 127.0.0.0/8 and ::1 through.
	AllowLoopbackPeers bool
	// AllowedPeers, when set, are the only peers allowed; everything else
	// is denied.
	AllowedPeers []netip.Prefix
	// Metrics is where `isthmus relay` serves /metrics (unset: not served).
	Metrics netip.AddrPort
	// LogLevel is `isthmus relay --log-level` (empty: its default).
	LogLevel string

	// TLSPort, Cert and Key configure coturn's TLS listener; TLSPort 0
	// says no-tls.
	TLSPort   int
	Cert, Key string
	// CoturnLog is coturn's log-file ("stdout", "/dev/null"); empty means
	// stdout.
	CoturnLog string
	// CoturnExtra lines are appended to turnserver.conf as given.
	CoturnExtra []string
}

// ListenAddrs are the relay's listening addresses, one per ListenIPs.
func (c Config) ListenAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(c.ListenIPs))
	for _, ip := range c.ListenIPs {
		out = append(out, netip.AddrPortFrom(ip, c.Port))
	}
	return out
}

// IsthmusArgs is the command line after the isthmus binary: "relay" and
// its flags.
func (c Config) IsthmusArgs() []string {
	args := []string{"relay"}
	for _, ap := range c.ListenAddrs() {
		args = append(args, "--listen", ap.String())
	}
	for _, ip := range c.RelayIPs {
		args = append(args, "--relay-ip", ip.String())
	}
	if c.Realm != "" {
		args = append(args, "--realm", c.Realm)
	}
	for _, u := range c.Users {
		args = append(args, "--user", u)
	}
	if c.AllowLoopbackPeers {
		args = append(args, "--allow-loopback-peers")
	}
	for _, p := range c.AllowedPeers {
		args = append(args, "--allow-peer", p.String())
	}
	if c.MinPort != 0 {
		args = append(args, "--min-port", strconv.Itoa(c.MinPort), "--max-port", strconv.Itoa(c.MaxPort))
	}
	if c.Metrics.IsValid() {
		args = append(args, "--metrics", c.Metrics.String())
	}
	if c.LogLevel != "" {
		args = append(args, "--log-level", c.LogLevel)
	}
	return args
}

// CoturnConf renders turnserver.conf with its files (user database, pid
// file) in dir: long-term credentials, no DTLS, no CLI, no multicast peers.
func (c Config) CoturnConf(dir string) string {
	lines := []string{"listening-port=" + strconv.Itoa(int(c.Port))}
	for _, ip := range c.ListenIPs {
		lines = append(lines, "listening-ip="+ip.String())
	}
	for _, ip := range c.RelayIPs {
		lines = append(lines, "relay-ip="+ip.String())
	}
	if c.MinPort != 0 {
		lines = append(lines, "min-port="+strconv.Itoa(c.MinPort), "max-port="+strconv.Itoa(c.MaxPort))
	}
	lines = append(lines, "lt-cred-mech", "realm="+c.Realm)
	for _, u := range c.Users {
		lines = append(lines, "user="+u)
	}
	if c.AllowLoopbackPeers {
		lines = append(lines, "allow-loopback-peers")
	}
	if len(c.AllowedPeers) > 0 {
		for _, p := range c.AllowedPeers {
			lines = append(lines, "allowed-peer-ip="+prefixRange(p))
		}
		// coturn checks allowed-peer-ip first: everything else is denied.
		lines = append(lines, "denied-peer-ip=0.0.0.0-255.255.255.255",
			"denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	}
	lines = append(lines, "no-multicast-peers")
	if c.TLSPort != 0 {
		lines = append(lines, fmt.Sprintf("tls-listening-port=%d", c.TLSPort), "cert="+c.Cert, "pkey="+c.Key)
	} else {
		lines = append(lines, "no-tls")
	}
	log := c.CoturnLog
	if log == "" {
		log = "stdout"
	}
	lines = append(lines, "no-dtls", "no-cli",
		"userdb="+filepath.Join(dir, "turndb"),
		"pidfile="+filepath.Join(dir, "turnserver.pid"),
		"log-file="+log,
		"simple-log")
	lines = append(lines, c.CoturnExtra...)
	return strings.Join(lines, "\n") + "\n"
}

// WriteCoturnConf writes CoturnConf(dir) to dir/turnserver.conf and returns
// its path.
func (c Config) WriteCoturnConf(dir string) (string, error) {
	path := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(path, []byte(c.CoturnConf(dir)), 0o600); err != nil {
		return "", fmt.Errorf("relayproc: coturn config: %w", err)
	}
	return path, nil
}

// prefixRange writes p as coturn's "first-last" address range.
func prefixRange(p netip.Prefix) string {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return p.Addr().String() + "-" + last.String()
}
