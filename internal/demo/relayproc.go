package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns"
	"github.com/isthmusrelay/isthmus/internal/relayproc"
)

// RelayKind names the TURN server a scenario runs in the relay namespace.
type RelayKind string

// Relays the demo can run.
const (
	RelayIsthmus RelayKind = "isthmus" // `isthmus relay`, this project's
	RelayCoturn  RelayKind = "coturn"  // coturn's turnserver, what carriers run today
)

// The relay's fixed parts in the demo network.
const (
	turnPort    = 3478
	metricsPort = 9641
	demoRealm   = "isthmus.demo"
	demoUser    = "demo"
)

// relayReadyTimeout bounds the wait for a relay to answer STUN on every
// listening address.
const relayReadyTimeout = 15 * time.Second

// ErrRelayNotReady is returned when a relay exits or stays silent instead
// of answering STUN within relayReadyTimeout.
var ErrRelayNotReady = errors.New("relay not ready")

// relayProc is a TURN server process running in the relay namespace.
type relayProc struct {
	kind  RelayKind
	ns    *netns.Namespace
	proc  *relayproc.Proc
	ready chan struct{} // closed when "relay ready" was logged (isthmus only)
	pass  string
	// metrics is where the isthmus relay serves /metrics (in the relay
	// namespace); invalid for coturn.
	metrics netip.AddrPort
}

// listenAddrs are the addresses clients use: one per family.
func relayListenAddrs() []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(RelayIPv4, turnPort), netip.AddrPortFrom(RelayIPv6, turnPort)}
}

// TURNURL returns the URL an agent of family f uses to reach the relay.
func turnURL(ipv6 bool) string {
	a := relayListenAddrs()[0]
	if ipv6 {
		a = relayListenAddrs()[1]
	}
	return "turn:" + a.String() + "?transport=udp"
}

// relayConfig is the demo network's relay: both families on the listening
// and the relay side, long-term credentials, and exactly the documentation
// ranges of the demo network allowed as peers.
func relayConfig(pass string, metrics netip.AddrPort) relayproc.Config {
	return relayproc.Config{
		ListenIPs: []netip.Addr{RelayIPv4, RelayIPv6}, Port: turnPort,
		RelayIPs: []netip.Addr{RelayIPv4, RelayIPv6},
		Realm:    demoRealm, Users: []string{demoUser + ":" + pass},
		AllowedPeers: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		Metrics:      metrics,
		LogLevel:     "info",
		CoturnExtra:  []string{"min-port=49152", "max-port=65535", "fingerprint"},
	}
}

// startRelay starts the relay of the given kind in ns and waits until it
// answers STUN on both listening addresses. binary is the isthmus binary,
// turnserver coturn's, dir a scratch directory for coturn's files.
func startRelay(ctx context.Context, kind RelayKind, ns *netns.Namespace, binary, turnserver, dir string) (*relayProc, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("demo: relay password: %w", err)
	}
	r := &relayProc{kind: kind, ns: ns, ready: make(chan struct{}), pass: hex.EncodeToString(b[:])}
	opt := relayproc.Options{}
	var cfg relayproc.Config
	var argv []string
	switch kind {
	case RelayIsthmus:
		r.metrics = netip.AddrPortFrom(RelayIPv4, metricsPort)
		cfg = relayConfig(r.pass, r.metrics)
		argv = append([]string{binary}, cfg.IsthmusArgs()...)
		readyClosed := false
		opt.OnLine = func(line []byte) {
			var entry struct {
				Message string `json:"message"`
			}
			if !readyClosed && bytes.HasPrefix(line, []byte("{")) && json.Unmarshal(line, &entry) == nil && entry.Message == "relay ready" {
				readyClosed = true
				close(r.ready)
			}
		}
	case RelayCoturn:
		cfg = relayConfig(r.pass, netip.AddrPort{})
		conf, err := cfg.WriteCoturnConf(dir)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		argv = []string{turnserver, "-c", conf}
	default:
		return nil, fmt.Errorf("demo: unknown relay kind %q", kind)
	}
	proc, err := relayproc.Start(ns.Command(ctx, argv[0], argv[1:]...), opt)
	if err != nil {
		return nil, fmt.Errorf("demo: start %s relay: %w", kind, err)
	}
	r.proc = proc

	deadline, cancel := context.WithTimeout(ctx, relayReadyTimeout)
	defer cancel()
	if kind == RelayIsthmus {
		select {
		case <-r.ready:
		case <-proc.Done():
			return r, fmt.Errorf("demo: isthmus relay: %w: exited (%v):\n%s", ErrRelayNotReady, proc.Err(), proc.Output())
		case <-deadline.Done():
			return r, fmt.Errorf("demo: isthmus relay: %w: no \"relay ready\" log line within %s:\n%s", ErrRelayNotReady, relayReadyTimeout, proc.Output())
		}
	}
	if err := relayproc.WaitBinding(deadline, cfg.ListenAddrs(), proc.Done(), ns.ListenUDP); err != nil {
		return r, fmt.Errorf("demo: %s relay: %w: %v:\n%s", kind, ErrRelayNotReady, err, proc.Output())
	}
	return r, nil
}

// stop ends the relay (SIGKILL to its process group) and waits for it.
func (r *relayProc) stop() {
	if r == nil || r.proc == nil {
		return
	}
	r.proc.Stop(0)
}
