//go:build linux

package relay

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
	"github.com/isthmusrelay/isthmus/internal/pionlog"
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
	// DefaultUserQuota caps one user's allocations. A call takes one or two
	// allocations per client (RTP, and RTCP without rtcp-mux), a client
	// with several calls or ICE restarts a few more: 64 is far above any
	// honest client, and far below the port range, so one credential
	// (a leaked REST secret user, a looping client) cannot take every port
	// and turn every other user's call into 508 (coturn's user-quota is
	// open by default; its absence let one user take all free ports in
	// half a second).
	DefaultUserQuota = 64
	// DefaultMaxPermissionsPerAllocation and DefaultMaxChannelsPerAllocation
	// bound the state one allocation holds (RFC 8656 §9 and §11 let a
	// server refuse with 508): each permission and channel is a map entry
	// and a timer in pion and in the data plane, and pion has no bound of
	// its own. A call needs a handful of peers (ICE candidates of the
	// other side); ICE-lite servers or SFUs a few hundred at most.
	DefaultMaxPermissionsPerAllocation = 1000
	DefaultMaxChannelsPerAllocation    = 500
)

// ErrConfig is wrapped by every configuration error, so callers can tell a
// bad configuration (exit code 2) from a runtime failure.
var ErrConfig = errors.New("relay: config")

// Config is the relay's whole configuration. Each field is described once,
// by its tags: yaml is its key in the configuration file (LoadConfigFile),
// flag its command-line twin (BindFlags; a list field's flag repeats),
// usage and arg the flag's help (arg is the placeholder word of usage that
// the help shows as the flag's value), and reload:"restart" marks a field
// that Reload cannot change in a running server. docs/relay.md has one row
// per field. DefaultConfig gives the values used when neither file nor flag
// sets a field.
type Config struct {
	// Listen lists host:port addresses; each binds UDP and TCP. A wildcard
	// IPv6 address ([::]) is bound IPv6-only so a client's family is known.
	Listen []string `yaml:"listen" flag:"listen" arg:"ip:port" usage:"ip:port to serve TURN on, UDP and TCP; repeat for more" reload:"restart"`
	// TLSListen lists host:port addresses for TURN over TLS. Empty means each
	// Listen host on port 5349 (or port 0 when that listen port is 0). Only
	// used when TLSCert and TLSKey are set.
	TLSListen []string `yaml:"tls_listen" flag:"tls-listen" arg:"ip:port" usage:"ip:port for TURN over TLS; repeat; empty = each listen host on 5349" reload:"restart"`
	// TLSCert and TLSKey are PEM files; both set enables TLS.
	TLSCert string `yaml:"tls_cert" flag:"tls-cert" arg:"file" usage:"PEM certificate file; with --tls-key enables TLS" reload:"restart"`
	// TLSKey is the PEM private key of TLSCert.
	TLSKey string `yaml:"tls_key" flag:"tls-key" arg:"file" usage:"PEM private key file" reload:"restart"`
	// ListenerSockets is the number of SO_REUSEPORT UDP sockets per listen
	// address; 0 means GOMAXPROCS.
	ListenerSockets int `yaml:"listener_sockets" flag:"listener-sockets" usage:"SO_REUSEPORT UDP sockets per listen address, 0 = GOMAXPROCS" reload:"restart"`

	// RelayIPs are the addresses relayed transport addresses are taken
	// from, any number per family. Empty means: the listen addresses when
	// they are specific, else the usable addresses of the host's interfaces.
	RelayIPs []string `yaml:"relay_ips" flag:"relay-ip" arg:"ip" usage:"ip to allocate relayed addresses on; repeat, any number per family; empty = specific listen IPs, else interface addresses" reload:"restart"`
	// ExternalIPs maps a relay IP to the address advertised to clients
	// (1:1 NAT, coturn's external-ip), as "relayIP=advertisedIP" strings.
	// The YAML file may also give a mapping from relay IP to advertised IP.
	ExternalIPs []string `yaml:"external_ips" pairs:"=" flag:"external-ip" arg:"relayIP=advertisedIP" usage:"relayIP=advertisedIP for 1:1 NAT; repeat" reload:"restart"`
	// MinPort and MaxPort bound the relay ports (inclusive), shared by all
	// relay IPs.
	MinPort int `yaml:"min_port" flag:"min-port" usage:"lowest relay port" reload:"restart"`
	// MaxPort is the highest relay port (inclusive).
	MaxPort int `yaml:"max_port" flag:"max-port" usage:"highest relay port" reload:"restart"`

	// Realm is the long-term credential realm.
	Realm string `yaml:"realm" flag:"realm" usage:"long-term credential realm" reload:"restart"`
	// Users are static long-term users: "name:password" or
	// "name:key=<hex MD5(name:realm:password)>".
	Users []string `yaml:"users" flag:"user" arg:"name:password" usage:"static user name:password or name:key=<hex MD5(name:realm:password)>; repeat"`
	// AuthSecrets are TURN REST API shared secrets (coturn's
	// static-auth-secret); all are accepted, for rotation.
	AuthSecrets []string `yaml:"auth_secrets" flag:"auth-secret" arg:"secret" usage:"TURN REST API shared secret (coturn use-auth-secret); repeat for rotation; $ISTHMUS_AUTH_SECRET replaces the list"`
	// AuthSecretFile names a file of REST secrets, one per line ('#'
	// comments), added to AuthSecrets; re-read on reload
	// (config_secrets.go). $ISTHMUS_AUTH_SECRET_FILE sets it.
	AuthSecretFile string `yaml:"auth_secret_file" flag:"auth-secret-file" arg:"file" usage:"file of REST secrets, one per line, re-read on SIGHUP; also $ISTHMUS_AUTH_SECRET_FILE"`
	// UsersFile names a file of users entries, one per line, added to
	// Users; re-read on reload. $ISTHMUS_USERS_FILE sets it.
	UsersFile string `yaml:"users_file" flag:"users-file" arg:"file" usage:"file of users entries, one per line, re-read on SIGHUP; also $ISTHMUS_USERS_FILE"`

	// StrictRelayIPs refuses to start when a relay IP, detected or
	// configured, is advertised as an address that is not globally
	// reachable (a ULA, private or documentation address without an
	// external_ips mapping to a global one). Without it such an address is
	// used, with a warning when it was detected.
	StrictRelayIPs bool `yaml:"strict_relay_ips" flag:"strict-relay-ips" usage:"refuse to start when a relay IP is advertised as a non-global address" reload:"restart"`

	// AllowLoopbackPeers permits relaying to loopback peers.
	AllowLoopbackPeers bool `yaml:"allow_loopback_peers" flag:"allow-loopback-peers" usage:"allow relaying to loopback peers"`
	// AllowPeers and DenyPeers are CIDRs (or single addresses) that
	// override the default peer policy; deny wins over allow.
	AllowPeers []string `yaml:"allow_peers" flag:"allow-peer" arg:"CIDR" usage:"CIDR of peers to allow despite the default policy; repeat"`
	// DenyPeers are CIDRs always denied as peers.
	DenyPeers []string `yaml:"deny_peers" flag:"deny-peer" arg:"CIDR" usage:"CIDR of peers to deny; wins over allow; repeat"`

	// MaxAllocations caps all allocations of this relay (508 beyond); 0
	// means the derived cap: the relay ports (per relay IP) and the
	// descriptor limit (RLIMIT_NOFILE; see docs/relay.md). A value above
	// the descriptor cap is lowered to it, with a warning.
	MaxAllocations int `yaml:"max_allocations" flag:"max-allocations" usage:"total allocations, 508 beyond; 0 = derived from the relay ports and the descriptor limit"`
	// UserQuota caps allocations per user (486 beyond); 0 means unlimited.
	// The default is DefaultUserQuota.
	UserQuota int `yaml:"user_quota" flag:"user-quota" usage:"allocations per user, 486 beyond; 0 = unlimited"`
	// MaxPermissionsPerAllocation caps the peer IPs one allocation holds
	// permissions for: a CreatePermission or ChannelBind for a new peer IP
	// beyond it gets 508 (RFC 8656 §9.2); refreshing one is always
	// allowed. 0 means unlimited. The default is
	// DefaultMaxPermissionsPerAllocation.
	MaxPermissionsPerAllocation int `yaml:"max_permissions_per_allocation" flag:"max-permissions-per-allocation" usage:"peer IPs with a permission per allocation, 508 beyond; 0 = unlimited"`
	// MaxChannelsPerAllocation caps the channels bound on one allocation:
	// a ChannelBind of a new channel beyond it gets 508 (RFC 8656 §11.2);
	// refreshing one is always allowed. 0 means unlimited. The default is
	// DefaultMaxChannelsPerAllocation.
	MaxChannelsPerAllocation int `yaml:"max_channels_per_allocation" flag:"max-channels-per-allocation" usage:"channels per allocation, 508 beyond; 0 = unlimited"`
	// AlternateServers are other relays (ip:port, any number per family)
	// a new Allocate is sent to with 300 Try Alternate (RFC 8489 §10,
	// ALTERNATE-SERVER of the client's family) when this relay cannot take
	// it: draining, max_allocations, user_quota or no free port. Empty
	// keeps the 486/508 answers.
	AlternateServers []string `yaml:"alternate_servers" flag:"alternate-server" arg:"ip:port" usage:"ip:port of another relay: a new Allocate this relay cannot take (draining, quotas, no port) gets 300 Try Alternate naming one of the client's family; repeat"`
	// AlternateDomain is sent as ALTERNATE-DOMAIN (RFC 8489 §14.16) with
	// every redirect: the name a TLS client checks the alternate's
	// certificate against.
	AlternateDomain string `yaml:"alternate_domain" flag:"alternate-domain" arg:"name" usage:"name sent as ALTERNATE-DOMAIN with every redirect, for TLS clients"`
	// AllocationBandwidth caps each allocation's relayed bytes per second,
	// both directions together; 0 means unlimited. Excess is dropped and
	// counted.
	AllocationBandwidth int `yaml:"allocation_bandwidth" flag:"allocation-bandwidth" usage:"bytes/s per allocation, both directions; 0 = unlimited"`

	// MaxUnauthStreams caps the TCP and TLS connections that have not
	// authenticated yet, from all sources together; a connection past it is
	// closed at once (counted). 0 means no cap.
	MaxUnauthStreams int `yaml:"max_unauthenticated_streams" flag:"max-unauthenticated-streams" usage:"TCP/TLS connections not yet authenticated, all sources; 0 = no cap" reload:"restart"`
	// MaxUnauthStreamsPerSource caps them per source address (an IPv6 /64
	// counts as one source). 0 means no cap.
	MaxUnauthStreamsPerSource int `yaml:"max_unauthenticated_streams_per_source" flag:"max-unauthenticated-streams-per-source" usage:"the same per source IP (IPv6: per /64); 0 = no cap" reload:"restart"`

	// RecvBuffer is the receive buffer size, in bytes, asked of the kernel
	// for listener sockets.
	RecvBuffer int `yaml:"recv_buffer" flag:"recv-buffer" arg:"bytes" usage:"listener socket receive buffer bytes" reload:"restart"`
	// RelayRecvBuffer is the receive buffer size, in bytes, asked for each
	// allocation's relay socket.
	RelayRecvBuffer int `yaml:"relay_recv_buffer" flag:"relay-recv-buffer" arg:"bytes" usage:"receive buffer bytes of each allocation's relay socket" reload:"restart"`
	// SendBuffer is the send buffer size, in bytes, of listener and relay
	// sockets.
	SendBuffer int `yaml:"send_buffer" flag:"send-buffer" arg:"bytes" usage:"socket send buffer bytes" reload:"restart"`
	// RawSend says whether the data plane sends client-to-peer datagrams on
	// raw IP sockets, many allocations per sendmmsg (needs CAP_NET_RAW).
	RawSend RawSend `yaml:"raw_send" flag:"raw-send" arg:"mode" usage:"mode auto, on or off: client-to-peer datagrams of many allocations per sendmmsg on raw IP sockets, needs CAP_NET_RAW" reload:"restart"`
	// DataPlane says whether the per-core data plane (internal/dataplane)
	// relays UDP clients' channels and indications, or pion relays every
	// datagram itself (for comparisons, or to rule the data plane out).
	DataPlane DataPlane `yaml:"data_plane" flag:"data-plane" arg:"mode" usage:"mode on or off: per-core forwarding of UDP clients' channels and indications; off leaves every datagram to pion" reload:"restart"`

	// DSCP is -1 (the default) to copy each client datagram's DSCP and
	// ECN onto the datagram to the peer (RFC 8656 §14's preferred
	// behaviour; voice clients mark EF, 46), or 0..63 to force that
	// codepoint on everything the relay sends over UDP (ECN still copied
	// from the client on the data plane).
	DSCP int `yaml:"dscp" flag:"dscp" arg:"N" usage:"-1 copies each client datagram's DSCP/ECN to the peer (RFC 8656 §14); N in 0..63 forces that DSCP on everything sent over UDP" reload:"restart"`

	// Metrics is the listen address of the HTTP server for /metrics,
	// /healthz and /readyz (Server.Handler); empty disables it.
	Metrics string `yaml:"metrics" flag:"metrics" arg:"ip:port" usage:"ip:port for /metrics, /healthz, /readyz; empty = off" reload:"restart"`
	// LogLevel is the most verbose level logged. Only LogTrace enables
	// pion's own per-packet debug logs.
	LogLevel LogLevel `yaml:"log_level" flag:"log-level" usage:"trace, debug, info, warn or error; trace adds pion's per-packet logs" reload:"restart"`
	// DrainTimeout bounds Drain on SIGTERM; the file gives it as "30s".
	DrainTimeout time.Duration `yaml:"drain_timeout" flag:"drain-timeout" usage:"on SIGTERM, wait this long for allocations to end"`
}

// RawSend is Config.RawSend: auto, on or off.
type RawSend string

// The RawSend modes.
const (
	// RawSendAuto uses raw sockets when the process may open them.
	RawSendAuto RawSend = "auto"
	// RawSendOn refuses to start without raw sockets.
	RawSendOn RawSend = "on"
	// RawSendOff always sends on each allocation's own socket.
	RawSendOff RawSend = "off"
)

// DataPlane is Config.DataPlane: on or off.
type DataPlane string

// The DataPlane modes.
const (
	// DataPlaneOn forwards UDP clients' channels and indications on the
	// per-core data plane where it can start (Linux).
	DataPlaneOn DataPlane = "on"
	// DataPlaneOff leaves every datagram to pion.
	DataPlaneOff DataPlane = "off"
)

// LogLevel is Config.LogLevel: trace, debug, info, warn or error (any case).
type LogLevel string

// The log levels.
const (
	// LogTrace adds pion's per-packet logs to LogDebug.
	LogTrace LogLevel = "trace"
	// LogDebug logs per-allocation events.
	LogDebug LogLevel = "debug"
	// LogInfo logs start, stop, reloads and throttled denials.
	LogInfo LogLevel = "info"
	// LogWarn logs only what an operator should look at.
	LogWarn LogLevel = "warn"
	// LogError logs only failures.
	LogError LogLevel = "error"
)

// LevelTrace is the slog level of LogTrace: slog has no trace level, so it
// is one step below slog.LevelDebug.
const LevelTrace = pionlog.LevelTrace

// Level returns l as an slog level, and false when l is not a level.
func (l LogLevel) Level() (slog.Level, bool) {
	switch LogLevel(strings.ToLower(string(l))) {
	case LogTrace:
		return LevelTrace, true
	case LogDebug:
		return slog.LevelDebug, true
	case LogInfo:
		return slog.LevelInfo, true
	case LogWarn:
		return slog.LevelWarn, true
	case LogError:
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
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
		RawSend:         RawSendAuto,
		DataPlane:       DataPlaneOn,
		DSCP:            -1,

		UserQuota:                   DefaultUserQuota,
		MaxPermissionsPerAllocation: DefaultMaxPermissionsPerAllocation,
		MaxChannelsPerAllocation:    DefaultMaxChannelsPerAllocation,

		MaxUnauthStreams:          DefaultMaxUnauthStreams,
		MaxUnauthStreamsPerSource: DefaultMaxUnauthStreamsPerSource,
		LogLevel:                  LogInfo,
		DrainTimeout:              DefaultDrainTimeout,
	}
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
	logLevel    slog.Level
	rawSend     dataplane.RawSendMode
	minPort     int
	maxPort     int
	listenerSKs int
	alternates  *alternates // nil when alternate_servers is empty
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

// resolve validates c and parses it, one job per step; each step names
// the field it rejects.
func (c *Config) resolve() (*resolved, error) {
	r := &resolved{external: map[netip.Addr]netip.Addr{}}
	for _, step := range []func(*resolved) error{
		c.resolveListeners,
		c.resolveRelayAddrs,
		c.resolvePorts,
		c.resolveCredentials,
		c.resolvePeers,
		c.resolveLimits,
		c.resolveSockets,
		c.resolveOperations,
	} {
		if err := step(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// resolveListeners: listen, tls_listen (derived when empty), TLS files,
// listener_sockets.
func (c *Config) resolveListeners(r *resolved) error {
	if len(c.Listen) == 0 {
		return fieldErr("listen", "at least one address is needed")
	}
	for _, s := range c.Listen {
		ap, err := parseAddrPort("listen", s)
		if err != nil {
			return err
		}
		r.listen = append(r.listen, ap)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fieldErr("tls_cert", "tls_cert and tls_key must be set together")
	}
	for _, s := range c.TLSListen {
		ap, err := parseAddrPort("tls_listen", s)
		if err != nil {
			return err
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
		return fieldErr("listener_sockets", "must be in 0..1024, got %d", c.ListenerSockets)
	}
	r.listenerSKs = c.ListenerSockets
	return nil
}

// resolveRelayAddrs: relay_ips and the external_ips advertised for them.
func (c *Config) resolveRelayAddrs(r *resolved) error {
	for _, s := range c.RelayIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fieldErr("relay_ips", "%q is not an IP address", s)
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			return fieldErr("relay_ips", "%q must be a unicast address without zone", s)
		}
		r.relayIPs = append(r.relayIPs, a)
	}
	for _, s := range c.ExternalIPs {
		relayS, advS, ok := strings.Cut(s, "=")
		if !ok {
			return fieldErr("external_ips", "%q is not relayIP=advertisedIP", s)
		}
		ra, err1 := netip.ParseAddr(strings.TrimSpace(relayS))
		aa, err2 := netip.ParseAddr(strings.TrimSpace(advS))
		if err1 != nil || err2 != nil {
			return fieldErr("external_ips", "%q is not relayIP=advertisedIP", s)
		}
		ra, aa = ra.Unmap(), aa.Unmap()
		if ra.Is4() != aa.Is4() {
			return fieldErr("external_ips", "%q: relay and advertised address must be the same family", s)
		}
		r.external[ra] = aa
	}
	for ra := range r.external {
		if len(r.relayIPs) > 0 && !slices.Contains(r.relayIPs, ra) {
			return fieldErr("external_ips", "%s is not one of relay_ips", ra)
		}
	}
	return nil
}

// resolvePorts: min_port and max_port.
func (c *Config) resolvePorts(r *resolved) error {
	if c.MinPort < 1 || c.MinPort > 65535 {
		return fieldErr("min_port", "must be in 1..65535, got %d", c.MinPort)
	}
	if c.MaxPort < 1 || c.MaxPort > 65535 {
		return fieldErr("max_port", "must be in 1..65535, got %d", c.MaxPort)
	}
	if c.MaxPort < c.MinPort+1 {
		return fieldErr("max_port", "must be above min_port (%d), got %d", c.MinPort, c.MaxPort)
	}
	r.minPort, r.maxPort = c.MinPort, c.MaxPort
	return nil
}

// resolveCredentials: realm, users, auth_secrets; never an open relay.
func (c *Config) resolveCredentials(r *resolved) error {
	if c.Realm == "" {
		return fieldErr("realm", "must not be empty")
	}
	secrets, users, err := c.fileSecrets()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range users {
		u, err := parseUser(s, c.Realm)
		if err != nil {
			return err
		}
		if seen[u.name] {
			return fieldErr("users", "user %q listed twice", u.name)
		}
		seen[u.name] = true
		r.users = append(r.users, u)
	}
	for i, s := range secrets {
		if s == "" {
			return fieldErr("auth_secrets", "entry %d is empty", i)
		}
		r.secrets = append(r.secrets, s)
	}
	if len(r.users) == 0 && len(r.secrets) == 0 {
		return fieldErr("users", "no credentials: set users or auth_secrets (the relay never runs open)")
	}
	return nil
}

// resolvePeers: allow_peers and deny_peers.
func (c *Config) resolvePeers(r *resolved) error {
	var err error
	if r.allowPeers, err = parsePrefixes("allow_peers", c.AllowPeers); err != nil {
		return err
	}
	r.denyPeers, err = parsePrefixes("deny_peers", c.DenyPeers)
	return err
}

// resolveLimits: quotas, alternate servers, bandwidth and the
// unauthenticated-stream caps.
func (c *Config) resolveLimits(r *resolved) error {
	if len(c.AlternateServers) > 0 || c.AlternateDomain != "" {
		var err error
		if r.alternates, err = parseAlternates(c.AlternateServers, c.AlternateDomain); err != nil {
			return err
		}
	}
	if c.MaxAllocations < 0 {
		return fieldErr("max_allocations", "must be >= 0, got %d", c.MaxAllocations)
	}
	if c.UserQuota < 0 {
		return fieldErr("user_quota", "must be >= 0, got %d", c.UserQuota)
	}
	if c.MaxPermissionsPerAllocation < 0 {
		return fieldErr("max_permissions_per_allocation", "must be >= 0, got %d", c.MaxPermissionsPerAllocation)
	}
	if c.MaxChannelsPerAllocation < 0 {
		return fieldErr("max_channels_per_allocation", "must be >= 0, got %d", c.MaxChannelsPerAllocation)
	}
	if c.AllocationBandwidth < 0 {
		return fieldErr("allocation_bandwidth", "must be >= 0 bytes/s, got %d", c.AllocationBandwidth)
	}
	if c.AllocationBandwidth > 0 && c.AllocationBandwidth < 1500 {
		return fieldErr("allocation_bandwidth", "must be 0 (unlimited) or at least 1500 bytes/s, got %d", c.AllocationBandwidth)
	}
	if c.MaxUnauthStreams < 0 {
		return fieldErr("max_unauthenticated_streams", "must be >= 0, got %d", c.MaxUnauthStreams)
	}
	if c.MaxUnauthStreamsPerSource < 0 {
		return fieldErr("max_unauthenticated_streams_per_source", "must be >= 0, got %d", c.MaxUnauthStreamsPerSource)
	}
	return nil
}

// resolveSockets: buffer sizes and raw_send.
func (c *Config) resolveSockets(r *resolved) error {
	if c.RecvBuffer < 0 || c.RecvBuffer > 1<<30 {
		return fieldErr("recv_buffer", "must be in 0..1GiB, got %d", c.RecvBuffer)
	}
	if c.RelayRecvBuffer < 0 || c.RelayRecvBuffer > 1<<30 {
		return fieldErr("relay_recv_buffer", "must be in 0..1GiB, got %d", c.RelayRecvBuffer)
	}
	if c.SendBuffer < 0 || c.SendBuffer > 1<<30 {
		return fieldErr("send_buffer", "must be in 0..1GiB, got %d", c.SendBuffer)
	}
	mode, err := dataplane.ParseRawSendMode(string(c.RawSend))
	if err != nil {
		return fieldErr("raw_send", "must be auto, on or off, got %q", c.RawSend)
	}
	r.rawSend = mode
	if c.DataPlane != DataPlaneOn && c.DataPlane != DataPlaneOff {
		return fieldErr("data_plane", "must be on or off, got %q", c.DataPlane)
	}
	if c.DSCP < -1 || c.DSCP > 63 {
		return fieldErr("dscp", "must be -1 (copy the client's) or 0..63, got %d", c.DSCP)
	}
	return nil
}

// resolveOperations: metrics, log_level, drain_timeout.
func (c *Config) resolveOperations(r *resolved) error {
	if c.Metrics != "" {
		if err := checkHostPort(c.Metrics); err != nil {
			return fieldErr("metrics", "%q is not host:port", c.Metrics)
		}
	}
	lvl, ok := c.LogLevel.Level()
	if !ok {
		return fieldErr("log_level", "%q is not one of trace, debug, info, warn, error", c.LogLevel)
	}
	r.logLevel = lvl
	if c.DrainTimeout < 0 {
		return fieldErr("drain_timeout", "must be >= 0, got %s", c.DrainTimeout)
	}
	return nil
}

// checkHostPort accepts host:port with a numeric port (net.Listen resolves
// the host).
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return errors.New("bad port")
	}
	return nil
}

func parsePrefixes(field string, ss []string) ([]netip.Prefix, error) {
	out, err := netaddr.ParsePrefixes(ss)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	return out, nil
}

// parseUser reads "name:password" or "name:key=<32 hex digits>" (with or
// without turnadmin's 0x prefix).
func parseUser(s, realm string) (staticUser, error) {
	name, secret, ok := strings.Cut(s, ":")
	if !ok || name == "" || secret == "" {
		return staticUser{}, fieldErr("users", "entry %q is not name:password or name:key=hex", redactUser(s))
	}
	if hexKey, isKey := strings.CutPrefix(secret, "key="); isKey {
		// coturn's turnadmin -k prints the key as 0x<hex>; accept that
		// spelling so keys copy over from a coturn userdb unchanged.
		if h, ok := strings.CutPrefix(hexKey, "0x"); ok {
			hexKey = h
		} else if h, ok := strings.CutPrefix(hexKey, "0X"); ok {
			hexKey = h
		}
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
