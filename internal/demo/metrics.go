package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// relayPacketsMetric is the isthmus relay's counter of relayed datagrams,
// labelled direction (client_to_peer, peer_to_client), family (the
// relayed address's: ip4, ip6) and path (dataplane, pion), summed over path.
const relayPacketsMetric = "isthmus_relay_packets_total"

// RelayPackets are the isthmus relay's relayed-datagram counters, by the
// family of the relayed address.
type RelayPackets struct {
	ToPeer4, FromPeer4, ToPeer6, FromPeer6 uint64
}

// Sub returns p - before, counter by counter.
func (p RelayPackets) Sub(before RelayPackets) RelayPackets {
	return RelayPackets{p.ToPeer4 - before.ToPeer4, p.FromPeer4 - before.FromPeer4, p.ToPeer6 - before.ToPeer6, p.FromPeer6 - before.FromPeer6}
}

// metricsCatchUp bounds the wait for the relay's counters to show the
// media: a datagram is counted after it is sent, so a scrape right after
// the call can miss the last ones.
const metricsCatchUp = 3 * time.Second

// packetsSince scrapes the relay's counters until, for every family in
// fams, both directions grew by at least want since before, or
// metricsCatchUp passed; it returns the last difference either way, for
// the checks to judge.
func (r *relayProc) packetsSince(ctx context.Context, before RelayPackets, fams []string, want uint64) (RelayPackets, error) {
	deadline := time.Now().Add(metricsCatchUp)
	for {
		now, err := r.packets(ctx)
		if err != nil {
			return RelayPackets{}, err
		}
		d := now.Sub(before)
		caughtUp := true
		for _, f := range fams {
			to, from := d.ToPeer4, d.FromPeer4
			if f == "IPv6" {
				to, from = d.ToPeer6, d.FromPeer6
			}
			caughtUp = caughtUp && to >= want && from >= want
		}
		if caughtUp || time.Now().After(deadline) {
			return d, nil
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return d, ctx.Err()
		}
	}
}

// packets scrapes the relay's /metrics from inside the relay namespace
// (the only place its address is reachable from).
func (r *relayProc) packets(ctx context.Context) (*RelayPackets, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return r.ns.DialTCP(ctx, r.metrics)
		},
	}}
	url := "http://" + r.metrics.String() + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("demo: relay metrics: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("demo: relay metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("demo: relay metrics: GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("demo: relay metrics: GET %s: %w", url, err)
	}
	mf, ok := families[relayPacketsMetric]
	if !ok {
		return nil, fmt.Errorf("demo: relay metrics: GET %s: no %s", url, relayPacketsMetric)
	}
	var p RelayPackets
	for _, m := range mf.GetMetric() {
		var dir, fam string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "direction":
				dir = l.GetValue()
			case "family":
				fam = l.GetValue()
			}
		}
		v := uint64(m.GetCounter().GetValue())
		switch dir + "/" + fam {
		case "client_to_peer/ip4":
			p.ToPeer4 += v
		case "peer_to_client/ip4":
			p.FromPeer4 += v
		case "client_to_peer/ip6":
			p.ToPeer6 += v
		case "peer_to_client/ip6":
			p.FromPeer6 += v
		}
	}
	return &p, nil
}
