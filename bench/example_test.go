package bench_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"time"

	"github.com/isthmusrelay/isthmus/bench"
	"github.com/isthmusrelay/isthmus/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// ExampleNewLoad places two calls (one IPv6 client with an IPv4 relay, one
// mirrored) on an in-process relay and runs paced RTP through them.
func ExampleNewLoad() {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	cfg.RelayIPs = []string{"127.0.0.1", "::1"}
	cfg.Realm = "example.org"
	cfg.Users = []string{"alice:secret"}
	cfg.AllowLoopbackPeers = true
	cfg.MinPort, cfg.MaxPort = 31000, 31999
	cfg.LogLevel = "warn"
	srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	load, err := bench.NewLoad(context.Background(), bench.LoadConfig{
		Server4:  firstV4(srv),
		Server6:  lastV6(srv),
		Username: "alice", Password: "secret", Realm: "example.org",
		Calls: 2,
		Paths: []bench.Path{bench.PathV6toV4, bench.PathV4toV6},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer load.Close()
	tr, err := load.Run(context.Background(), 200*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	// 2 calls x 2 directions x 50 packets/s x 0.2 s; a packet the generator
	// could not send on time would be skipped, not lost.
	fmt.Printf("scheduled %d, lost %d\n", tr.All.Sent+tr.All.Skipped, tr.All.Lost)
	// Output: scheduled 40, lost 0
}

func firstV4(srv *relay.Server) netip.AddrPort {
	for _, a := range srv.ListenAddrs() {
		if a.Addr().Is4() {
			return a
		}
	}
	return netip.AddrPort{}
}

func lastV6(srv *relay.Server) (ap netip.AddrPort) {
	for _, a := range srv.ListenAddrs() {
		if a.Addr().Is6() {
			ap = a
		}
	}
	return ap
}
