// Package bench is Isthmus's load generator and relay comparison harness:
// the library behind `isthmus bench` and `isthmus bench compare`.
//
// A call is a TURN client leg (a pion/turn client over its own UDP socket:
// Allocate, CreatePermission and a ChannelBind, so steady-state traffic is
// ChannelData) and a plain UDP peer leg. Both legs send 172-byte RTP packets
// (12-byte header plus a 160-byte G.711-sized payload that carries the send
// time and a sequence number) at 50 packets per second, with the send phases
// of all calls spread evenly over the 20 ms packet interval. Receivers record
// the added latency of every packet in a log-linear [Histogram], count loss
// from sequence numbers and keep the RFC 3550 interarrival jitter.
//
// The main types:
//
//   - [Load] sets up N calls against one TURN server ([NewLoad]) and runs
//     paced traffic through them ([Load.Run]), returning a [Traffic] result.
//   - [RelaySpec] describes a relay to start as a separate process (our
//     `isthmus relay`, coturn's turnserver with equivalent settings, or a
//     custom command) so its CPU and memory can be read from /proc.
//   - [RunStep] starts a relay, loads it with N calls and returns a
//     [StepResult] with every figure; [Run] raises N step by step until
//     loss or latency crosses the pass limits; [Compare] does the same for two
//     relays in ABAB order and reports medians and ratios.
//   - [Report] prints as a table ([Report.WriteTable]), JSON and SVG.
//
// Example, one step against an already running relay:
//
//	load, err := bench.NewLoad(ctx, bench.LoadConfig{
//		Server4: netip.MustParseAddrPort("127.0.0.1:3478"),
//		Server6: netip.MustParseAddrPort("[::1]:3478"),
//		Username: "alice", Password: "secret", Realm: "example.org",
//		Calls: 50,
//	})
//	if err != nil { ... }
//	defer load.Close()
//	traffic, err := load.Run(ctx, 5*time.Second)
package bench
