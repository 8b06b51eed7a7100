// Package relay is Isthmus's dual-stack TURN server (RFC 8656, RFC 6156):
// it hands IPv6-only clients IPv4 relayed transport addresses (and the
// reverse) so IPv6 user agents reach the installed IPv4 base unchanged.
//
// pion/turn v5 does the protocol; this package adds what a carrier needs
// around it, through pion's hooks:
//
//   - Config (YAML + flags, validated, errors naming the field), New, and the
//     Server lifecycle: Drain (no new allocations, 508), Close, Reload
//     (users, REST secrets, peer policy and quotas swapped atomically).
//   - Dual-stack listeners: UDP and TCP per listen address, IPv6 wildcards
//     IPv6-only, GOMAXPROCS SO_REUSEPORT UDP sockets per address, TLS.
//   - A family-aware relay address generator: relay IPs per family
//     (detected when not given), advertised addresses for 1:1 NAT, a
//     port pool per relay IP, raised socket buffers, and RTCP reservations that
//     keep the first allocation's family.
//   - RFC 8656 dual allocations (ADDITIONAL-ADDRESS-FAMILY): an IPv4 and
//     an IPv6 relayed address on one 5-tuple, the IPv6 half built next to
//     pion's allocation (dualalloc.go).
//   - Long-term credentials: static users and TURN REST API secrets
//     compatible with coturn's use-auth-secret (see RESTCredential).
//   - A secure-by-default peer policy (package netaddr): non-global
//     special-purpose ranges, embedded-IPv4 forms and the relay's own
//     addresses are denied with 403 unless allowed.
//   - Quotas (486 per user, 508 total), per-allocation bandwidth, and
//     Prometheus metrics without per-user labels.
//
// Minimal use:
//
//	cfg := relay.DefaultConfig()
//	cfg.Listen = []string{"127.0.0.1:3478", "[::1]:3478"}
//	cfg.Users = []string{"alice:secret"}
//	srv, err := relay.New(cfg, slog.Default(), prometheus.NewRegistry())
//	if err != nil { ... }
//	defer srv.Close()
//
// docs/relay.md documents every configuration field, the peer policy and
// the metrics.
package relay
