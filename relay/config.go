package relay

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
	"github.com/isthmusrelay/isthmus/netaddr"
)

// Defaults used by DefaultConfig. They are documented in docs/relay.md.
const (
	// DefaultPort is the TURN port for UDP and TCP (RFC 8656 §18).
	DefaultPort = 3478
	// DefaultTLSPort is the TURN-over-TLS port (RFC 8656 §18).
	DefaultTLSPort = 5349
	// DefaultRealm is the realm used when none is configured.
	DefaultRealm = "isthmus"
	// DefaultSocketBuffer is the receive buffer asked of the kernel for
	// listener sockets, and the send buffer for every socket: pion's ~208 KB
	// default dropped 0.02–0.1% of packets under light load.
	DefaultSocketBuffer = 4 << 20

	// DefaultRelayRecvBuffer is the receive buffer asked for every
	// allocation's relay socket. A relay socket carries one call leg, so it
	// needs room for a burst of one call (a video key frame), not the 4 MiB
	// of a listener that every client of a core shares: the size is a limit
	// the kernel lets a socket fill, and thousands of relay sockets each
	// allowed 4 MiB let an overload or a flood of peers pin gigabytes of
	// kernel memory (and hold seconds of media as delay) before anything is
	// dropped.
	DefaultRelayRecvBuffer = 256 << 10
	// DefaultMaxUnauthStreams and DefaultMaxUnauthStreamsPerSource bound
	// the TCP/TLS connections that have not authenticated: each holds a
	// goroutine, a descriptor and a few KiB until it authenticates or its
	// 30 s deadline passes, so without a bound one host could hold the
	// relay's descriptors. A real client authenticates in a round trip;
	// 64 per source leaves room for a NAT full of phones connecting at once.
	DefaultMaxUnauthStreams          = 4096
	DefaultMaxUnauthStreamsPerSource = 64
	// DefaultDrainTimeout bounds how long a drain waits for allocations to end.
	DefaultDrainTimeout = 30 * time.Second
)

// ErrConfig is wrapped by every configuration error, so callers can tell a
// bad configuration (exit code 2) from a runtime failure.
var ErrConfig = errors.New("relay: config")

// Config is the relay's whole configuration. Each field has a YAML key and a
// command-line twin (see docs/relay.md); DefaultConfig gives the values used
// when neither sets it.
type Config struct {
	// Listen lists host:port addresses; each binds UDP and TCP. A wildcard
	// IPv6 address ([::]) is bound IPv6-only so a client's family is known.
	Listen []string `yaml:"listen"`
	// TLSListen lists host:port addresses for TURN over TLS. Empty means each
	// Listen host on port 5349 (or port 0 when that listen port is 0). Only
	// used when TLSCert and TLSKey are set.
	TLSListen []string `yaml:"tls_listen"`
	// TLSCert and TLSKey are PEM files; both set enables TLS.
	TLSCert string `yaml:"tls_cert"`
	// TLSKey is the PEM private key of TLSCert.
	TLSKey string `yaml:"tls_key"`
	// ListenerSockets is the number of SO_REUSEPORT UDP sockets per listen
	// address; 0 means GOMAXPROCS.
	ListenerSockets int `yaml:"listener_sockets"`

	// RelayIPs are the addresses relayed transport addresses are taken
	// from, any number per family. Empty means: the listen addresses when
	// they are specific, else the usable addresses of the host's interfaces.
	RelayIPs []string `yaml:"relay_ips"`
	// ExternalIPs maps a relay IP to the address advertised to clients
	// (1:1 NAT, coturn's external-ip). YAML accepts a mapping or a list of
	// "relayIP=advertisedIP" strings, as the --external-ip flag does.
	ExternalIPs ExternalIPs `yaml:"external_ips"`
	// MinPort and MaxPort bound the relay ports (inclusive), shared by all
	// relay IPs.
	MinPort int `yaml:"min_port"`
	// MaxPort is the highest relay port (inclusive).
	MaxPort int `yaml:"max_port"`

	// Realm is the long-term credential realm.
	Realm string `yaml:"realm"`
	// Users are static long-term users: "name:password" or
	// "name:key=<hex MD5(name:realm:password)>".
	Users []string `yaml:"users"`
	// AuthSecrets are TURN REST API shared secrets (coturn's
	// static-auth-secret); all are accepted, for rotation.
	AuthSecrets []string `yaml:"auth_secrets"`

	// AllowLoopbackPeers permits relaying to loopback peers.
	AllowLoopbackPeers bool `yaml:"allow_loopback_peers"`
	// AllowPeers and DenyPeers are CIDRs (or single addresses) that
	// override the default peer policy; deny wins over allow.
	AllowPeers []string `yaml:"allow_peers"`
	// DenyPeers are CIDRs always denied as peers.
	DenyPeers []string `yaml:"deny_peers"`

	// MaxAllocations caps all allocations of this relay (508 beyond); 0
	// means only the port range limits it.
	MaxAllocations int `yaml:"max_allocations"`
	// UserQuota caps allocations per user (486 beyond); 0 means unlimited.
	UserQuota int `yaml:"user_quota"`
	// AllocationBandwidth caps each allocation's relayed bytes per second,
	// both directions together; 0 means unlimited. Excess is dropped and
	// counted.
	AllocationBandwidth int `yaml:"allocation_bandwidth"`

	// MaxUnauthStreams caps the TCP and TLS connections that have not
	// authenticated yet, from all sources together; a connection past it is
	// closed at once (counted). 0 means no cap.
	MaxUnauthStreams int `yaml:"max_unauthenticated_streams"`
	// MaxUnauthStreamsPerSource caps them per source address (an IPv6 /64
	// counts as one source). 0 means no cap.
	MaxUnauthStreamsPerSource int `yaml:"max_unauthenticated_streams_per_source"`

	// RecvBuffer is the receive buffer size, in bytes, asked of the kernel
	// for listener sockets.
	RecvBuffer int `yaml:"recv_buffer"`
	// RelayRecvBuffer is the receive buffer size, in bytes, asked for each
	// allocation's relay socket.
	RelayRecvBuffer int `yaml:"relay_recv_buffer"`
	// SendBuffer is the send buffer size, in bytes, of listener and relay
	// sockets.
	SendBuffer int `yaml:"send_buffer"`
	// RawSend is auto, on or off: whether the data plane sends
	// client-to-peer datagrams on raw IP sockets, many allocations per
	// sendmmsg (needs CAP_NET_RAW; auto uses them when it may, on refuses
	// to start without them).
	RawSend string `yaml:"raw_send"`
	// DataPlane is on or off: whether the per-core data plane
	// (internal/dataplane) relays channels and indications of UDP clients,
	// or pion relays every datagram itself (for comparisons, or to rule
	// the data plane out).
	DataPlane string `yaml:"data_plane"`

	// Metrics is the listen address of the HTTP server for /metrics,
	// /healthz and /readyz; empty disables it.
	Metrics string `yaml:"metrics"`
	// LogLevel is a zerolog level: trace, debug, info, warn, error. Only
	// trace enables pion's own per-packet debug logs.
	LogLevel string `yaml:"log_level"`
	// DrainTimeout bounds Drain on SIGTERM, e.g. "30s".
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ExternalIPs is a list of "relayIP=advertisedIP" pairs.
type ExternalIPs []string

// UnmarshalYAML accepts a sequence of "relay=advertised" strings or a
// mapping from relay IP to advertised IP.
func (e *ExternalIPs) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*e = l
	case yaml.MappingNode:
		var out []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value+"="+n.Content[i+1].Value)
		}
		*e = out
	default:
		return fmt.Errorf("line %d: want a list of relayIP=advertisedIP or a mapping", n.Line)
	}
	return nil
}

// DefaultConfig returns the embedded defaults: dual-stack wildcard listeners
// on 3478, relay IPs auto-detected, the IANA-based peer policy, no users (the
// command line generates one; New refuses to run open).
func DefaultConfig() Config {
	return Config{
		Listen:          []string{"0.0.0.0:3478", "[::]:3478"},
		MinPort:         49152,
		MaxPort:         65535,
		Realm:           DefaultRealm,
		RecvBuffer:      DefaultSocketBuffer,
		RelayRecvBuffer: DefaultRelayRecvBuffer,
		SendBuffer:      DefaultSocketBuffer,
		RawSend:         "auto",
		DataPlane:       "on",

		MaxUnauthStreams:          DefaultMaxUnauthStreams,
		MaxUnauthStreamsPerSource: DefaultMaxUnauthStreamsPerSource,
		LogLevel:                  "info",
		DrainTimeout:              Duration(DefaultDrainTimeout),
	}
}

// LoadConfigFile reads a YAML file over DefaultConfig. Unknown keys are
// errors, so a typo never silently falls back to a default.
func LoadConfigFile(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := cfg.decodeYAML(b); err != nil {
		return cfg, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return cfg, nil
}

func (c *Config) decodeYAML(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	scratch := *c
	err := dec.Decode(&scratch)
	if errors.Is(err, io.EOF) {
		return nil // an empty file is the defaults
	}
	if err == nil {
		*c = scratch
		return nil
	}
	// yaml.v3's type errors name a line, not the key: find the key.
	if named := namedYAMLError(b); named != nil {
		return named
	}
	return err
}

// namedYAMLError decodes each top-level key on its own and returns the
// first failure as "key: problem (line N)".
func namedYAMLError(b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 {
		return err
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the file must be a mapping of settings", top.Line)
	}
	var probe Config
	v := reflect.ValueOf(&probe).Elem()
	fields := map[string]int{}
	for i := 0; i < v.NumField(); i++ {
		tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		fields[tag] = i
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, val := top.Content[i], top.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			return fmt.Errorf("%s: unknown setting (line %d)", k.Value, k.Line)
		}
		if err := val.Decode(v.Field(idx).Addr().Interface()); err != nil {
			return fmt.Errorf("%s: %w (line %d)", k.Value, err, val.Line)
		}
	}
	return nil
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// Validate checks every field and returns the first problem, naming the YAML
// field, e.g. "relay: config: min_port: must be in 1..65535, got 0".
func (c *Config) Validate() error {
	_, err := c.resolve()
	return err
}

// staticUser is one parsed users entry.
type staticUser struct {
	name string
	key  []byte // MD5(name:realm:password)
}

// resolved is the validated, parsed form of a Config.
type resolved struct {
	listen      []netip.AddrPort
	tlsListen   []netip.AddrPort
	relayIPs    []netip.Addr
	external    map[netip.Addr]netip.Addr
	users       []staticUser
	secrets     []string
	allowPeers  []netip.Prefix
	denyPeers   []netip.Prefix
	logLevel    zerolog.Level
	minPort     int
	maxPort     int
	listenerSKs int
}

func parseAddrPort(field, s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fieldErr(field, "%q is not ip:port (IPv6 in brackets): %v", s, err)
	}
	if ap.Addr().Zone() != "" {
		return ap, fieldErr(field, "%q: zones are not supported", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func (c *Config) resolve() (*resolved, error) {
	r := &resolved{external: map[netip.Addr]netip.Addr{}}
	if len(c.Listen) == 0 {
		return nil, fieldErr("listen", "at least one address is needed")
	}
	for _, s := range c.Listen {
		ap, err := parseAddrPort("listen", s)
		if err != nil {
			return nil, err
		}
		r.listen = append(r.listen, ap)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fieldErr("tls_cert", "tls_cert and tls_key must be set together")
	}
	for _, s := range c.TLSListen {
		ap, err := parseAddrPort("tls_listen", s)
		if err != nil {
			return nil, err
		}
		r.tlsListen = append(r.tlsListen, ap)
	}
	if c.TLSCert != "" && len(r.tlsListen) == 0 {
		for _, ap := range r.listen {
			port := uint16(DefaultTLSPort)
			if ap.Port() == 0 {
				port = 0
			}
			r.tlsListen = append(r.tlsListen, netip.AddrPortFrom(ap.Addr(), port))
		}
	}
	if c.ListenerSockets < 0 || c.ListenerSockets > 1024 {
		return nil, fieldErr("listener_sockets", "must be in 0..1024, got %d", c.ListenerSockets)
	}
	r.listenerSKs = c.ListenerSockets

	for _, s := range c.RelayIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fieldErr("relay_ips", "%q is not an IP address", s)
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			return nil, fieldErr("relay_ips", "%q must be a unicast address without zone", s)
		}
		r.relayIPs = append(r.relayIPs, a)
	}
	for _, s := range c.ExternalIPs {
		relayS, advS, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fieldErr("external_ips", "%q is not relayIP=advertisedIP", s)
		}
		ra, err1 := netip.ParseAddr(strings.TrimSpace(relayS))
		aa, err2 := netip.ParseAddr(strings.TrimSpace(advS))
		if err1 != nil || err2 != nil {
			return nil, fieldErr("external_ips", "%q is not relayIP=advertisedIP", s)
		}
		ra, aa = ra.Unmap(), aa.Unmap()
		if ra.Is4() != aa.Is4() {
			return nil, fieldErr("external_ips", "%q: relay and advertised address must be the same family", s)
		}
		r.external[ra] = aa
	}
	for ra := range r.external {
		if len(r.relayIPs) > 0 && !containsAddr(r.relayIPs, ra) {
			return nil, fieldErr("external_ips", "%s is not one of relay_ips", ra)
		}
	}
	if c.MinPort < 1 || c.MinPort > 65535 {
		return nil, fieldErr("min_port", "must be in 1..65535, got %d", c.MinPort)
	}
	if c.MaxPort < 1 || c.MaxPort > 65535 {
		return nil, fieldErr("max_port", "must be in 1..65535, got %d", c.MaxPort)
	}
	if c.MaxPort < c.MinPort+1 {
		return nil, fieldErr("max_port", "must be above min_port (%d), got %d", c.MinPort, c.MaxPort)
	}
	r.minPort, r.maxPort = c.MinPort, c.MaxPort

	if c.Realm == "" {
		return nil, fieldErr("realm", "must not be empty")
	}
	seen := map[string]bool{}
	for _, s := range c.Users {
		u, err := parseUser(s, c.Realm)
		if err != nil {
			return nil, err
		}
		if seen[u.name] {
			return nil, fieldErr("users", "user %q listed twice", u.name)
		}
		seen[u.name] = true
		r.users = append(r.users, u)
	}
	for i, s := range c.AuthSecrets {
		if s == "" {
			return nil, fieldErr("auth_secrets", "entry %d is empty", i)
		}
		r.secrets = append(r.secrets, s)
	}
	if len(r.users) == 0 && len(r.secrets) == 0 {
		return nil, fieldErr("users", "no credentials: set users or auth_secrets (the relay never runs open)")
	}

	var err error
	if r.allowPeers, err = parsePrefixes("allow_peers", c.AllowPeers); err != nil {
		return nil, err
	}
	if r.denyPeers, err = parsePrefixes("deny_peers", c.DenyPeers); err != nil {
		return nil, err
	}
	if c.MaxAllocations < 0 {
		return nil, fieldErr("max_allocations", "must be >= 0, got %d", c.MaxAllocations)
	}
	if c.UserQuota < 0 {
		return nil, fieldErr("user_quota", "must be >= 0, got %d", c.UserQuota)
	}
	if c.AllocationBandwidth < 0 {
		return nil, fieldErr("allocation_bandwidth", "must be >= 0 bytes/s, got %d", c.AllocationBandwidth)
	}
	if c.AllocationBandwidth > 0 && c.AllocationBandwidth < 1500 {
		return nil, fieldErr("allocation_bandwidth", "must be 0 (unlimited) or at least 1500 bytes/s, got %d", c.AllocationBandwidth)
	}
	if c.MaxUnauthStreams < 0 {
		return nil, fieldErr("max_unauthenticated_streams", "must be >= 0, got %d", c.MaxUnauthStreams)
	}
	if c.MaxUnauthStreamsPerSource < 0 {
		return nil, fieldErr("max_unauthenticated_streams_per_source", "must be >= 0, got %d", c.MaxUnauthStreamsPerSource)
	}
	if c.RecvBuffer < 0 || c.RecvBuffer > 1<<30 {
		return nil, fieldErr("recv_buffer", "must be in 0..1GiB, got %d", c.RecvBuffer)
	}
	if c.RelayRecvBuffer < 0 || c.RelayRecvBuffer > 1<<30 {
		return nil, fieldErr("relay_recv_buffer", "must be in 0..1GiB, got %d", c.RelayRecvBuffer)
	}
	if c.SendBuffer < 0 || c.SendBuffer > 1<<30 {
		return nil, fieldErr("send_buffer", "must be in 0..1GiB, got %d", c.SendBuffer)
	}
	if _, err := dataplane.ParseRawSendMode(c.RawSend); err != nil {
		return nil, fieldErr("raw_send", "must be auto, on or off, got %q", c.RawSend)
	}
	switch c.DataPlane {
	case "", "on", "off":
	default:
		return nil, fieldErr("data_plane", "must be on or off, got %q", c.DataPlane)
	}
	if c.Metrics != "" {
		if _, _, err := splitHostPort(c.Metrics); err != nil {
			return nil, fieldErr("metrics", "%q is not host:port", c.Metrics)
		}
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(c.LogLevel))
	if err != nil || c.LogLevel == "" {
		return nil, fieldErr("log_level", "%q is not one of trace, debug, info, warn, error", c.LogLevel)
	}
	r.logLevel = lvl
	if c.DrainTimeout < 0 {
		return nil, fieldErr("drain_timeout", "must be >= 0, got %s", time.Duration(c.DrainTimeout))
	}
	return r, nil
}

func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, errors.New("missing port")
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p < 0 || p > 65535 {
		return "", 0, errors.New("bad port")
	}
	return s[:i], p, nil
}

func parsePrefixes(field string, ss []string) ([]netip.Prefix, error) {
	out, err := netaddr.ParsePrefixes(ss)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	return out, nil
}

// parseUser reads "name:password" or "name:key=<32 hex digits>".
func parseUser(s, realm string) (staticUser, error) {
	name, secret, ok := strings.Cut(s, ":")
	if !ok || name == "" || secret == "" {
		return staticUser{}, fieldErr("users", "entry %q is not name:password or name:key=hex", redactUser(s))
	}
	if hexKey, isKey := strings.CutPrefix(secret, "key="); isKey {
		key, err := hex.DecodeString(hexKey)
		if err != nil || len(key) != 16 {
			return staticUser{}, fieldErr("users", "user %q: key= must be 32 hex digits (MD5 of name:realm:password)", name)
		}
		return staticUser{name: name, key: key}, nil
	}
	return staticUser{name: name, key: longTermKey(name, realm, secret)}, nil
}

// redactUser keeps the name of a users entry and hides its secret.
func redactUser(s string) string {
	name, _, _ := strings.Cut(s, ":")
	return name + ":***"
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}
