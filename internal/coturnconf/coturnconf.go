// Package coturnconf translates a coturn turnserver.conf into the relay's
// configuration (isthmus relay import-coturn) and says, option by option,
// what it mapped, what now means something else, and what it could not
// map. The traps an operator switching from coturn meets are named where
// they occur: coturn's external-ip order (public/private) is the reverse
// of ours (relayIP=advertisedIP), coturn lets allowed-peer-ip win over
// denied-peer-ip where we let deny win, coturn redirects every Allocate to
// alternate-server while we redirect only when full or draining, coturn
// logs to files and syslog where we log JSON to stderr, and we serve one
// realm.
package coturnconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/isthmusrelay/isthmus/relay"
)

// Kind is how an option was carried over.
type Kind int

// The kinds of Note.
const (
	// Mapped: the option has an equivalent with the same meaning.
	Mapped Kind = iota
	// Changed: carried over, but the relay's meaning differs (read the note).
	Changed
	// Unmapped: no equivalent; the option was left out.
	Unmapped
)

func (k Kind) String() string {
	switch k {
	case Mapped:
		return "mapped"
	case Changed:
		return "changed in meaning"
	}
	return "not mapped"
}

// Note is what became of one option line.
type Note struct {
	Line   int
	Option string
	Kind   Kind
	// To names the relay setting(s), empty when unmapped.
	To   string
	Text string
}

func (n Note) String() string {
	to := ""
	if n.To != "" {
		to = " -> " + n.To
	}
	if n.Line == 0 {
		return fmt.Sprintf("%s%s: %s", n.Option, to, n.Text)
	}
	return fmt.Sprintf("line %d: %s%s: %s", n.Line, n.Option, to, n.Text)
}

// Result is a translated configuration and its notes, in line order.
type Result struct {
	Config relay.Config
	// Set lists the YAML keys the translation set (the rest are defaults).
	Set   []string
	Notes []Note
}

// option is one line of turnserver.conf.
type option struct {
	line      int
	name, val string
	hasValue  bool
}

// parse reads coturn's syntax: "name=value", "name value" or a bare flag,
// '#' comments, an optional leading "--", quotes around the value.
func parse(r io.Reader) ([]option, error) {
	var out []option
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		l = strings.TrimPrefix(l, "--")
		name, val, ok := strings.Cut(l, "=")
		if !ok {
			name, val, ok = strings.Cut(l, " ")
		}
		name = strings.TrimSpace(name)
		val = strings.Trim(strings.TrimSpace(val), `"`)
		out = append(out, option{line: n, name: name, val: val, hasValue: ok && val != ""})
	}
	return out, sc.Err()
}

// unmappedReasons are coturn options with no relay equivalent, and why.
var unmappedReasons = map[string]string{
	"alt-listening-port":                "RFC 5780 NAT behaviour discovery is not offered",
	"alt-tls-listening-port":            "RFC 5780 NAT behaviour discovery is not offered",
	"no-rfc5780":                        "RFC 5780 is not offered anyway",
	"response-origin-only-with-rfc5780": "RFC 5780 is not offered",
	"no-stun-backward-compatibility":    "RFC 3489 STUN is not answered anyway",
	"dtls-listening-port":               "DTLS transport is not offered",
	"no-dtls":                           "DTLS transport is not offered anyway",
	"listening-device":                  "bind to addresses (listen) instead of a device",
	"relay-device":                      "bind to addresses (relay_ips) instead of a device",
	"relay-threads":                     "the data plane runs one worker per core (GOMAXPROCS)",
	"udp-self-balance":                  "SO_REUSEPORT per core is always on (listener_sockets)",
	"aux-server":                        "auxiliary servers are not offered",
	"tcp-proxy-port":                    "no TCP proxy mode",
	"no-tcp-relay":                      "TCP relaying (RFC 6062) is never offered",
	"no-udp-relay":                      "UDP relaying cannot be switched off",
	"server-relay":                      "no server-relay mode",
	"userdb":                            "no SQLite user database: use users_file (one name:password or name:key=hex per line)",
	"psql-userdb":                       "no SQL user database: use users_file or REST secrets",
	"mysql-userdb":                      "no SQL user database: use users_file or REST secrets",
	"mongo-userdb":                      "no MongoDB user database: use users_file or REST secrets",
	"redis-userdb":                      "no Redis user database: use users_file or REST secrets",
	"redis-statsdb":                     "no Redis statistics: scrape /metrics (Prometheus)",
	"oauth":                             "third-party authorization (RFC 7635) is not offered",
	"secret-key-file":                   "third-party authorization (RFC 7635) is not offered",
	"no-auth":                           "the relay never runs without authentication: set users or auth_secrets",
	"pkey-pwd":                          "encrypted private keys are not read: decrypt the key file",
	"cipher-list":                       "Go's TLS 1.2+ defaults are used",
	"ec-curve-name":                     "Go's TLS defaults are used",
	"dh-file":                           "no finite-field DH suites are offered",
	"no-tlsv1":                          "TLS 1.0 is never offered",
	"no-tlsv1_1":                        "TLS 1.1 is never offered",
	"no-tlsv1_2":                        "TLS 1.2 stays on (TLS 1.3 is preferred)",
	"CA-file":                           "client certificates are not asked for",
	"server-name":                       "not needed: the software attribute is not sent",
	"no-software-attribute":             "SOFTWARE is not sent anyway",
	"mobility":                          "TURN mobility (RFC 8016) is not offered",
	"no-stun":                           "STUN Binding is always answered",
	"stun-only":                         "TURN cannot be switched off",
	"secure-stun":                       "Binding requests are answered without credentials (RFC 8489)",
	"stale-nonce":                       "nonces are always bound to the 5-tuple and expire (438)",
	"fingerprint":                       "FINGERPRINT is always checked and sent when the client uses it",
	"channel-lifetime":                  "RFC 8656 lifetimes are fixed (10 min channels, 5 min permissions)",
	"permission-lifetime":               "RFC 8656 lifetimes are fixed (10 min channels, 5 min permissions)",
	"max-allocate-lifetime":             "the allocation lifetime is pion's RFC 8656 maximum (1 h)",
	"max-allocate-timeout":              "no allocate timeout setting",
	"allocation-default-address-family": "RFC 6156: no REQUESTED-ADDRESS-FAMILY is IPv4, always",
	"keep-address-family":               "RFC 6156 behaviour is always on",
	"check-origin-consistency":          "ORIGIN is not checked",
	"bps-capacity":                      "no server-wide bandwidth cap; allocation_bandwidth is per allocation",
	"cli-ip":                            "no telnet CLI: use /metrics, logs and signals",
	"cli-port":                          "no telnet CLI",
	"cli-password":                      "no telnet CLI",
	"cli-max-output-sessions":           "no telnet CLI",
	"no-cli":                            "there is no CLI anyway",
	"web-admin":                         "no web admin: use /metrics and /readyz",
	"web-admin-ip":                      "no web admin",
	"web-admin-port":                    "no web admin",
	"web-admin-listen-on-workers":       "no web admin",
	"acme-redirect":                     "no ACME redirect: renew with your ACME client and SIGHUP",
	"pidfile":                           "run under systemd (deploy/systemd) instead of a PID file",
	"proc-user":                         "run as a service user (systemd User=, deploy/systemd)",
	"proc-group":                        "run as a service user (systemd)",
	"log-binding":                       "Binding requests are counted (isthmus_relay_stun_binding_requests_total), not logged",
	"no-stdout-log":                     "logs go to stderr only (journald under systemd)",
	"simple-log":                        "one JSON log stream on stderr",
	"new-log-timestamp":                 "every JSON log line has a timestamp",
	"new-log-timestamp-format":          "the JSON timestamp format is fixed (RFC 3339)",
	"log-file":                          "logging to a file is not offered: logs are JSON lines on stderr (journald, or your container runtime)",
	"syslog":                            "syslog is not spoken: logs are JSON lines on stderr; under systemd journald forwards them to syslog",
	"syslog-facility":                   "syslog is not spoken (journald forwards stderr)",
	"no-multicast-peers":                "multicast peers are always refused (default peer policy)",
	"no-loopback-peers":                 "loopback peers are refused unless allow_loopback_peers",
	"lt-cred-mech":                      "long-term credentials are the only mechanism",
	"use-auth-secret":                   "REST secrets are used whenever auth_secrets is set",
	"no-udp":                            "UDP cannot be switched off: listen serves UDP and TCP",
	"no-tcp":                            "TCP cannot be switched off: listen serves UDP and TCP",
	"no-tls":                            "TLS is off unless tls_cert and tls_key are set",
	"dtls":                              "DTLS is not offered",
	"tls-alternate-server":              "alternate_servers apply to every transport; no TLS-only list",
	"prometheus-username-labels":        "there are never per-user metric labels",
	"verbose":                           "",
	"Verbose":                           "",
	"prometheus":                        "",
	"prometheus-port":                   "",
}

// alreadyBehaviour are coturn switches that turn on what the relay always
// does: they map to nothing to write.
var alreadyBehaviour = map[string]bool{
	"no-multicast-peers": true, "no-loopback-peers": true, "fingerprint": true, "lt-cred-mech": true,
	"use-auth-secret": true, "no-cli": true, "no-tlsv1": true, "no-tlsv1_1": true, "no-rfc5780": true,
	"no-stun-backward-compatibility": true, "no-software-attribute": true, "no-dtls": true, "stale-nonce": true,
}

// allowed is one allowed-peer-ip prefix and its line.
type allowed struct {
	p netip.Prefix
	o option
}

// Convert translates a turnserver.conf.
func Convert(r io.Reader) (*Result, error) {
	opts, err := parse(r)
	if err != nil {
		return nil, err
	}
	res := &Result{Config: relay.DefaultConfig()}
	c := &res.Config
	set := map[string]bool{}
	note := func(o option, k Kind, to, format string, args ...any) {
		res.Notes = append(res.Notes, Note{Line: o.line, Option: o.name, Kind: k, To: to, Text: fmt.Sprintf(format, args...)})
		for _, t := range strings.Split(to, ", ") {
			if t != "" {
				set[t] = true
			}
		}
	}
	var (
		listenIPs           []option
		port, tlsPort       = 3478, 5349
		portLine, tlsLine   option
		sawTLSPort          bool
		externals           []option
		allow               []allowed
		deny                []netip.Prefix
		realms              int
		prometheusOn        bool
		promLine, promPortL option
		promPort            = 9641
	)
	for _, o := range opts {
		need := func() bool {
			if !o.hasValue {
				note(o, Unmapped, "", "needs a value; ignored")
				return false
			}
			return true
		}
		switch o.name {
		case "listening-ip":
			if need() {
				if _, err := netip.ParseAddr(o.val); err != nil {
					note(o, Unmapped, "", "%q is not an IP address", o.val)
					continue
				}
				listenIPs = append(listenIPs, o)
			}
		case "listening-port":
			if need() {
				if p, err := strconv.Atoi(o.val); err == nil && p > 0 && p < 65536 {
					port, portLine = p, o
				} else {
					note(o, Unmapped, "", "%q is not a port", o.val)
				}
			}
		case "tls-listening-port":
			if need() {
				if p, err := strconv.Atoi(o.val); err == nil && p > 0 && p < 65536 {
					tlsPort, tlsLine, sawTLSPort = p, o, true
				} else {
					note(o, Unmapped, "", "%q is not a port", o.val)
				}
			}
		case "relay-ip":
			if need() {
				a, err := netip.ParseAddr(o.val)
				if err != nil {
					note(o, Unmapped, "", "%q is not an IP address", o.val)
					continue
				}
				c.RelayIPs = append(c.RelayIPs, a.String())
				note(o, Mapped, "relay_ips", "%s", a)
			}
		case "external-ip":
			if need() {
				externals = append(externals, o)
			}
		case "min-port", "max-port":
			if need() {
				p, err := strconv.Atoi(o.val)
				if err != nil || p < 1 || p > 65535 {
					note(o, Unmapped, "", "%q is not a port", o.val)
					continue
				}
				if o.name == "min-port" {
					c.MinPort = p
					note(o, Mapped, "min_port", "%d", p)
				} else {
					c.MaxPort = p
					note(o, Mapped, "max_port", "%d", p)
				}
			}
		case "realm":
			if need() {
				realms++
				if realms == 1 {
					c.Realm = o.val
					note(o, Mapped, "realm", "%s", o.val)
				} else {
					note(o, Unmapped, "", "one realm per relay: %q is not served (coturn serves several realms, keyed by user or origin; run one relay per realm)", o.val)
				}
			}
		case "user":
			if need() {
				name, secret, ok := strings.Cut(o.val, ":")
				if !ok || name == "" || secret == "" {
					note(o, Unmapped, "", "not name:password")
					continue
				}
				if hexKey, isKey := strings.CutPrefix(secret, "0x"); isKey {
					// turnadmin -k: the hex MD5(name:realm:password), as key= here.
					c.Users = append(c.Users, name+":key="+strings.ToLower(hexKey))
					note(o, Mapped, "users", "user %q with its 0x key as key= (the key was made with a realm: it must be this realm)", name)
				} else {
					c.Users = append(c.Users, name+":"+secret)
					note(o, Mapped, "users", "user %q (consider users_file: secrets out of the main file)", name)
				}
			}
		case "static-auth-secret":
			if need() {
				c.AuthSecrets = append(c.AuthSecrets, o.val)
				note(o, Mapped, "auth_secrets", "REST secret (value not shown; consider auth_secret_file)")
			}
		case "cert":
			if need() {
				c.TLSCert = o.val
				note(o, Mapped, "tls_cert", "%s (PEM; Go reads the chain from the same file)", o.val)
			}
		case "pkey":
			if need() {
				c.TLSKey = o.val
				note(o, Mapped, "tls_key", "%s", o.val)
			}
		case "allowed-peer-ip", "denied-peer-ip":
			if !need() {
				continue
			}
			ps, err := parseCoturnRange(o.val)
			if err != nil {
				note(o, Unmapped, "", "%v", err)
				continue
			}
			strs := make([]string, len(ps))
			for i, p := range ps {
				strs[i] = p.String()
			}
			if o.name == "allowed-peer-ip" {
				for _, p := range ps {
					allow = append(allow, allowed{p, o})
				}
				c.AllowPeers = append(c.AllowPeers, strs...)
				note(o, Mapped, "allow_peers", "%s", strings.Join(strs, " "))
			} else {
				deny = append(deny, ps...)
				c.DenyPeers = append(c.DenyPeers, strs...)
				note(o, Mapped, "deny_peers", "%s", strings.Join(strs, " "))
			}
		case "allow-loopback-peers":
			c.AllowLoopbackPeers = true
			note(o, Mapped, "allow_loopback_peers", "true")
		case "total-quota":
			if need() {
				if v, err := strconv.Atoi(o.val); err == nil && v >= 0 {
					c.MaxAllocations = v
					note(o, Mapped, "max_allocations", "%d (508 beyond, or 300 with alternate_servers)", v)
				} else {
					note(o, Unmapped, "", "%q is not a number", o.val)
				}
			}
		case "user-quota":
			if need() {
				if v, err := strconv.Atoi(o.val); err == nil && v >= 0 {
					c.UserQuota = v
					note(o, Mapped, "user_quota", "%d (486 beyond, or 300 with alternate_servers)", v)
				} else {
					note(o, Unmapped, "", "%q is not a number", o.val)
				}
			}
		case "max-bps":
			if need() {
				v, err := strconv.Atoi(o.val)
				if err != nil || v < 0 {
					note(o, Unmapped, "", "%q is not a number", o.val)
					continue
				}
				if v > 0 {
					// coturn counts each direction on its own; ours is both together.
					c.AllocationBandwidth = max(2*v, 1500)
				}
				note(o, Changed, "allocation_bandwidth", "%d bytes/s: coturn's max-bps caps each direction separately, allocation_bandwidth both together, so it is set to twice the value", c.AllocationBandwidth)
			}
		case "alternate-server":
			if !need() {
				continue
			}
			ap, err := netip.ParseAddrPort(o.val)
			if err != nil {
				a, aerr := netip.ParseAddr(o.val)
				if aerr != nil {
					note(o, Unmapped, "", "%q is not ip or ip:port (ALTERNATE-SERVER carries an address)", o.val)
					continue
				}
				ap = netip.AddrPortFrom(a, 3478)
			}
			c.AlternateServers = append(c.AlternateServers, ap.String())
			note(o, Changed, "alternate_servers", "%s: coturn redirects every Allocate to its alternate servers (load balancing); the relay redirects only Allocates it cannot take (draining, max_allocations, user_quota, no port)", ap)
		case "verbose", "Verbose":
			c.LogLevel = relay.LogDebug
			note(o, Mapped, "log_level", "debug")
		case "prometheus":
			prometheusOn, promLine = true, o
		case "prometheus-port":
			if p, err := strconv.Atoi(o.val); err == nil && p > 0 && p < 65536 {
				promPort, promPortL = p, o
			} else {
				note(o, Unmapped, "", "%q is not a port", o.val)
			}
		default:
			if why, known := unmappedReasons[o.name]; known {
				k := Unmapped
				if alreadyBehaviour[o.name] {
					k = Mapped
				}
				if strings.HasPrefix(why, "logging") || o.name == "syslog" || o.name == "log-file" {
					k = Changed
				}
				note(o, k, "", "%s", why)
			} else {
				note(o, Unmapped, "", "unknown to the importer; check coturn's documentation and docs/relay.md")
			}
		}
	}
	if len(listenIPs) > 0 || portLine.line > 0 {
		c.Listen = nil
		ips := make([]string, 0, len(listenIPs))
		for _, o := range listenIPs {
			ips = append(ips, o.val)
		}
		if len(ips) == 0 {
			ips = []string{"0.0.0.0", "::"}
		}
		for _, ip := range ips {
			c.Listen = append(c.Listen, netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String()) //nolint:gosec // checked
		}
		for _, o := range listenIPs {
			note(o, Mapped, "listen", "%s, UDP and TCP", netip.AddrPortFrom(netip.MustParseAddr(o.val), uint16(port))) //nolint:gosec // checked
		}
		if portLine.line > 0 {
			note(portLine, Mapped, "listen", "port %d", port)
		}
	}
	if c.TLSCert != "" {
		for _, ap := range c.Listen {
			a := netip.MustParseAddrPort(ap).Addr()
			c.TLSListen = append(c.TLSListen, netip.AddrPortFrom(a, uint16(tlsPort)).String()) //nolint:gosec // checked
		}
		set["tls_listen"] = true
		if sawTLSPort {
			note(tlsLine, Mapped, "tls_listen", "port %d on every listen address", tlsPort)
		}
	} else if sawTLSPort {
		note(tlsLine, Unmapped, "", "no cert/pkey: TLS stays off")
	}
	translateExternals(res, externals, note)
	for _, a := range allow {
		for _, d := range deny {
			if a.p.Overlaps(d) {
				note(a.o, Changed, "allow_peers, deny_peers",
					"%s overlaps denied %s: coturn lets allowed-peer-ip win, the relay lets deny win; remove %s from deny_peers if it must stay allowed", a.p, d, a.p)
			}
		}
	}
	if prometheusOn {
		c.Metrics = netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(promPort)).String() //nolint:gosec // checked
		note(promLine, Mapped, "metrics", "%s (/metrics, /healthz, /readyz; no per-user labels)", c.Metrics)
		if promPortL.line > 0 {
			note(promPortL, Mapped, "metrics", "port %d", promPort)
		}
	} else if promPortL.line > 0 {
		note(promPortL, Unmapped, "", "prometheus is off: metrics stays off")
	}
	if realms > 1 {
		res.Notes = append(res.Notes, Note{Option: "realm", Kind: Changed, To: "realm", Text: fmt.Sprintf("%d realms configured, one kept", realms)})
	}
	if c.Realm == relay.DefaultRealm {
		res.Notes = append(res.Notes, Note{Option: "realm", Kind: Changed, To: "realm", Text: "no realm in the file: " + relay.DefaultRealm + " (coturn derives one from the host name)"})
	}
	sort.SliceStable(res.Notes, func(i, j int) bool {
		li, lj := res.Notes[i].Line, res.Notes[j].Line
		if li == 0 {
			li = 1 << 30
		}
		if lj == 0 {
			lj = 1 << 30
		}
		return li < lj
	})
	for k := range set {
		res.Set = append(res.Set, k)
	}
	sort.Strings(res.Set)
	return res, nil
}

// translateExternals maps coturn's external-ip forms: "public" (for the
// one relay address of its family) and "public/private". The relay's
// external_ips are "relayIP=advertisedIP": private first.
func translateExternals(res *Result, ext []option, note func(option, Kind, string, string, ...any)) {
	c := &res.Config
	for _, o := range ext {
		pubS, privS, pair := strings.Cut(o.val, "/")
		pub, err := netip.ParseAddr(strings.TrimSpace(pubS))
		if err != nil {
			note(o, Unmapped, "", "%q: public address is not an IP address (host names are not resolved)", o.val)
			continue
		}
		var priv netip.Addr
		if pair {
			if priv, err = netip.ParseAddr(strings.TrimSpace(privS)); err != nil {
				note(o, Unmapped, "", "%q: private address is not an IP address", o.val)
				continue
			}
		} else {
			var same []netip.Addr
			for _, s := range c.RelayIPs {
				if a := netip.MustParseAddr(s); a.Is4() == pub.Is4() {
					same = append(same, a)
				}
			}
			if len(same) != 1 {
				note(o, Unmapped, "", "%s without /private needs exactly one relay-ip of its family (found %d): write external_ips as relayIP=%s", pub, len(same), pub)
				continue
			}
			priv = same[0]
		}
		if priv.Is4() != pub.Is4() {
			note(o, Unmapped, "", "%q mixes families", o.val)
			continue
		}
		c.ExternalIPs = append(c.ExternalIPs, priv.String()+"="+pub.String())
		if len(c.RelayIPs) > 0 && !slices.Contains(c.RelayIPs, priv.String()) {
			c.RelayIPs = append(c.RelayIPs, priv.String())
		}
		note(o, Changed, "external_ips", "%s=%s: coturn writes public/private, external_ips is relayIP=advertisedIP (private first): the order is reversed", priv, pub)
	}
}

// parseCoturnRange reads coturn's peer address forms: an address, a CIDR
// or "first-last", returned as the fewest prefixes covering the range.
func parseCoturnRange(s string) ([]netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		return []netip.Prefix{p.Masked()}, nil
	}
	firstS, lastS, isRange := strings.Cut(s, "-")
	first, err := netip.ParseAddr(strings.TrimSpace(firstS))
	if err != nil {
		return nil, fmt.Errorf("%q is not an address, CIDR or first-last range", s)
	}
	last := first
	if isRange {
		if last, err = netip.ParseAddr(strings.TrimSpace(lastS)); err != nil {
			return nil, fmt.Errorf("%q: %q is not an address", s, lastS)
		}
	}
	first, last = first.Unmap(), last.Unmap()
	if first.Is4() != last.Is4() || last.Less(first) {
		return nil, errors.New(s + ": the range must go up within one family")
	}
	return rangePrefixes(first, last), nil
}

// rangePrefixes splits first..last into the fewest CIDR blocks: from the
// start, the largest aligned block that does not pass last, repeatedly.
func rangePrefixes(first, last netip.Addr) []netip.Prefix {
	bits := first.BitLen()
	toInt := func(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }
	fromInt := func(v *big.Int) netip.Addr {
		b := make([]byte, bits/8)
		v.FillBytes(b)
		a, _ := netip.AddrFromSlice(b)
		return a
	}
	lo, hi := toInt(first), toInt(last)
	one := big.NewInt(1)
	var out []netip.Prefix
	for lo.Cmp(hi) <= 0 {
		size := 0 // host bits of the block
		for size < bits {
			// The block of size+1 host bits must start at lo (aligned) and end <= hi.
			if lo.Bit(size) != 0 {
				break
			}
			end := new(big.Int).Add(lo, new(big.Int).Sub(new(big.Int).Lsh(one, uint(size+1)), one))
			if end.Cmp(hi) > 0 {
				break
			}
			size++
		}
		out = append(out, netip.PrefixFrom(fromInt(lo), bits-size))
		lo = new(big.Int).Add(lo, new(big.Int).Lsh(one, uint(size)))
	}
	return out
}

// YAML returns the translated settings as the relay's YAML (only those
// the translation set; the rest keep their defaults), headed by a comment
// naming the source and listing every note.
func (r *Result) YAML(source string) ([]byte, error) {
	var full yaml.Node
	if err := full.Encode(r.Config); err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, k := range r.Set {
		keep[k] = true
	}
	out := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(full.Content); i += 2 {
		if keep[full.Content[i].Value] {
			out.Content = append(out.Content, full.Content[i], full.Content[i+1])
		}
	}
	var head strings.Builder
	fmt.Fprintf(&head, "Translated from coturn's %s by isthmus relay import-coturn.\n", source)
	head.WriteString("Settings not listed keep their defaults (docs/relay.md).\n")
	for _, k := range []Kind{Changed, Unmapped} {
		first := true
		for _, n := range r.Notes {
			if n.Kind != k {
				continue
			}
			if first {
				fmt.Fprintf(&head, "\n%s:\n", k)
				first = false
			}
			fmt.Fprintf(&head, "  %s\n", n)
		}
	}
	out.HeadComment = strings.TrimRight(head.String(), "\n")
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{out}}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	_ = enc.Close()
	y := b.String()
	if !strings.HasSuffix(y, "\n") {
		y += "\n"
	}
	return []byte(y), nil
}
