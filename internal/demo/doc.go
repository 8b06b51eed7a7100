// Package demo runs the RFC 6157 scenario end to end: IPv6-only and IPv4-only
// phones call each other through the dual-stack relay, in real Linux
// network namespaces where the missing address family is really missing
// (`isthmus demo`).
//
// # Topology
//
// [BuildTopology] makes, with package netns, the network of RFC 6157
// Figure 1: a relay namespace with 192.0.2.1/24 on one bridge and
// 2001:db8::1/64 on another and no IP forwarding; ua6 (2001:db8::10, not even 127.0.0.1: any IPv4 send fails
// with ENETUNREACH); ua4 (192.0.2.10) and legacy4 (192.0.2.20) with IPv6
// disabled; and for scenario 4 two dual-stack hosts on both bridges.
//
// # Processes
//
// Everything that runs inside a namespace is a separate process started
// with `ip netns exec`: the relay (`isthmus relay` or coturn's turnserver)
// and one endpoint per phone, the hidden `isthmus demo agent` ([RunAgent]).
// A namespace belongs to an OS thread, and pion starts goroutines that may
// run on any thread, so an in-process agent could not be kept inside.
//
// The orchestrator ([Run]) plays the signalling proxy: it reads each
// endpoint's JSON messages on its stdout and forwards the SDP offer and
// answer ([Message]); it starts the media only when both endpoints report
// their path up, and stops them only when both reported their counts, so no
// step depends on timing.
//
// # Media and measurements
//
// Each endpoint sends Options.Packets RTP packets (pion/rtp, PCMU, 20 ms
// frames at 50 packets/s) carrying a probe index and its send time, and
// echoes every probe it receives. Each side counts distinct probes and
// echoes received and measures true round-trip times from the echoes of its
// own probes. The relay's work is measured twice: by the kernel (UDP
// datagram counters of the relay namespace, by family, whatever relay runs)
// and, for the isthmus relay, by its own isthmus_relay_packets_total
// metric, scraped from inside the relay namespace.
//
// # Scenarios
//
// [Scenarios] lists the six; each [Result] carries named [Check]s
// (0 loss, RTT measured, the RFC 6157 SDP rules, the selected pair, the
// relay's counters). [WriteTable] and [WritePicture] print them.
//
//	results := demo.RunAll(ctx, demo.DefaultScenarios(), demo.Options{Binary: self})
//	demo.WriteTable(os.Stdout, results)
package demo
