package siplocate

import "strconv"

// Transport is the protocol a target is reached over.
type Transport uint8

// The transports this package locates and dials. SCTP, WebSocket and DTLS
// records are recognised and skipped (RFC 3263 §4.1: a client discards the
// services it does not support).
const (
	UDP Transport = iota + 1
	TCP
	TLS // TLS over TCP
)

// String returns "udp", "tcp" or "tls".
func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	case TLS:
		return "tls"
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// Stream reports whether t is connection-oriented (TCP or TLS), the
// transports Dialer races.
func (t Transport) Stream() bool { return t == TCP || t == TLS }

// DefaultTransports is the client preference order used when
// Resolver.Transports is empty. RFC 3263 §4.1 leaves the order among SRV
// results to the client; UDP first is what RFC 3263 falls back to anyway.
var DefaultTransports = []Transport{UDP, TCP, TLS}

// service describes how one scheme offers one transport in DNS.
type service struct {
	transport Transport
	naptr     string // NAPTR service field (RFC 3263 §4.1, RFC 5928 §3); "" = none
	srv       string // SRV owner prefix, e.g. "_sips._tcp"
	port      uint16 // default port
}

// services lists, per scheme, the transports it may use, in the scheme's
// own default order (the fallback when nothing else decides).
var services = map[Scheme][]service{
	// RFC 3263 §4.1: a sip: URI may resolve to TLS as well (SIPS+D2T).
	SchemeSIP: {
		{UDP, "SIP+D2U", "_sip._udp", 5060},
		{TCP, "SIP+D2T", "_sip._tcp", 5060},
		{TLS, "SIPS+D2T", "_sips._tcp", 5061},
	},
	// sips: only over TLS; the SRV is _sips._tcp, never "_sips._tls"
	// (RFC 3263 §4.1 example, RFC 5630 §3.1.3).
	SchemeSIPS: {
		{TLS, "SIPS+D2T", "_sips._tcp", 5061},
	},
	// RFC 5928 §3: S-NAPTR "RELAY" with protocol tags turn.udp, turn.tcp,
	// turn.tls; SRV _turn._udp, _turn._tcp, _turns._tcp.
	SchemeTURN: {
		{UDP, "RELAY:turn.udp", "_turn._udp", 3478},
		{TCP, "RELAY:turn.tcp", "_turn._tcp", 3478},
	},
	SchemeTURNS: {
		{TLS, "RELAY:turn.tls", "_turns._tcp", 5349},
	},
	// RFC 8489 §8 (and RFC 7064 §3.2): SRV only, no NAPTR.
	SchemeSTUN: {
		{UDP, "", "_stun._udp", 3478},
		{TCP, "", "_stun._tcp", 3478},
	},
	SchemeSTUNS: {
		{TLS, "", "_stuns._tcp", 5349},
	},
}

func serviceFor(s Scheme, t Transport) (service, bool) {
	for _, sv := range services[s] {
		if sv.transport == t {
			return sv, true
		}
	}
	return service{}, false
}
