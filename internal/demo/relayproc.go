package demo

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/stun/v3"

	"github.com/isthmusrelay/isthmus/internal/netns"
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
	kind   RelayKind
	ns     *netns.Namespace
	cmd    *exec.Cmd
	out    *tailBuffer
	ready  chan struct{} // closed when "relay ready" was logged (isthmus only)
	exited chan struct{}
	err    error
	pass   string
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

// startRelay starts the relay of the given kind in ns and waits until it
// answers STUN on both listening addresses. binary is the isthmus binary,
// turnserver coturn's, dir a scratch directory for coturn's files.
func startRelay(ctx context.Context, kind RelayKind, ns *netns.Namespace, binary, turnserver, dir string) (*relayProc, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("demo: relay password: %w", err)
	}
	r := &relayProc{kind: kind, ns: ns, out: &tailBuffer{max: 32 << 10}, ready: make(chan struct{}), exited: make(chan struct{}), pass: hex.EncodeToString(b[:])}
	switch kind {
	case RelayIsthmus:
		r.metrics = netip.AddrPortFrom(RelayIPv4, metricsPort)
		r.cmd = ns.Command(ctx, binary, "relay",
			"--listen", relayListenAddrs()[0].String(),
			"--listen", relayListenAddrs()[1].String(),
			"--relay-ip", RelayIPv4.String(),
			"--relay-ip", RelayIPv6.String(),
			"--realm", demoRealm,
			"--user", demoUser+":"+r.pass,
			// Exactly the documentation ranges of the demo network.
			"--allow-peer", "192.0.2.0/24",
			"--allow-peer", "2001:db8::/32",
			"--metrics", r.metrics.String(),
			"--log-level", "info")
	case RelayCoturn:
		conf := filepath.Join(dir, "turnserver.conf")
		if err := os.WriteFile(conf, []byte(coturnConfig(dir, r.pass)), 0o600); err != nil {
			return nil, fmt.Errorf("demo: coturn config: %w", err)
		}
		r.cmd = ns.Command(ctx, turnserver, "-c", conf)
	default:
		return nil, fmt.Errorf("demo: unknown relay kind %q", kind)
	}
	pr, pw := io.Pipe()
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: start %s relay: %w", kind, err)
	}
	go r.watchLog(pr)
	go func() {
		r.err = r.cmd.Wait()
		pw.Close()
		close(r.exited)
	}()

	deadline, cancel := context.WithTimeout(ctx, relayReadyTimeout)
	defer cancel()
	if kind == RelayIsthmus {
		select {
		case <-r.ready:
		case <-r.exited:
			return r, fmt.Errorf("demo: isthmus relay: %w: exited (%v):\n%s", ErrRelayNotReady, r.err, r.out.String())
		case <-deadline.Done():
			return r, fmt.Errorf("demo: isthmus relay: %w: no \"relay ready\" log line within %s:\n%s", ErrRelayNotReady, relayReadyTimeout, r.out.String())
		}
	}
	for _, a := range relayListenAddrs() {
		if err := waitSTUN(deadline, ns, a, r.exited); err != nil {
			return r, fmt.Errorf("demo: %s relay: %w: %v:\n%s", kind, ErrRelayNotReady, err, r.out.String())
		}
	}
	return r, nil
}

// watchLog keeps the relay's output for error messages and notices the
// isthmus relay's "relay ready" JSON log line.
func (r *relayProc) watchLog(rd io.Reader) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	readyClosed := false
	for sc.Scan() {
		line := sc.Bytes()
		_, _ = r.out.Write(append(line, '\n'))
		if readyClosed {
			continue
		}
		var entry struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(line, &entry) == nil && entry.Message == "relay ready" {
			readyClosed = true
			close(r.ready)
		}
	}
	_, _ = io.Copy(io.Discard, rd)
}

// stop ends the relay (SIGKILL to its process group) and waits for it.
func (r *relayProc) stop() {
	if r == nil || r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
		return // already reaped: its pid may belong to someone else now
	default:
	}
	_ = r.cmd.Cancel()
	<-r.exited
}

// waitSTUN sends STUN Binding requests from inside ns to server until one
// is answered, the relay exits, or ctx ends. Each request waits at most
// 250 ms for its answer, so a relay still binding its sockets is retried.
func waitSTUN(ctx context.Context, ns *netns.Namespace, server netip.AddrPort, exited <-chan struct{}) error {
	src := netip.IPv4Unspecified()
	if server.Addr().Is6() {
		src = netip.IPv6Unspecified()
	}
	c, err := ns.ListenUDP(netip.AddrPortFrom(src, 0))
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for attempt := 1; ; attempt++ {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return fmt.Errorf("stun binding to %s: %w", server, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("stun binding to %s: %w", server, err)
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID && res.Type == stun.BindingSuccess {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stun binding to %s: no answer after %d attempts: %w", server, attempt, ctx.Err())
		case <-exited:
			return fmt.Errorf("stun binding to %s: relay exited", server)
		default:
		}
	}
}

// coturnConfig is turnserver.conf for the demo network: both families on
// listening and relay side, long-term credentials, no TLS/DTLS/CLI, files in
// dir, and exactly the documentation ranges allowed as peers.
func coturnConfig(dir, pass string) string {
	lines := []string{
		fmt.Sprintf("listening-port=%d", turnPort),
		"listening-ip=" + RelayIPv4.String(),
		"listening-ip=" + RelayIPv6.String(),
		"relay-ip=" + RelayIPv4.String(),
		"relay-ip=" + RelayIPv6.String(),
		"min-port=49152",
		"max-port=65535",
		"lt-cred-mech",
		"fingerprint",
		"realm=" + demoRealm,
		"user=" + demoUser + ":" + pass,
		"allowed-peer-ip=192.0.2.0-192.0.2.255",
		"allowed-peer-ip=2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
		// coturn checks allowed-peer-ip first: everything else is denied.
		"denied-peer-ip=0.0.0.0-255.255.255.255",
		"denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"no-multicast-peers",
		"no-tls",
		"no-dtls",
		"no-cli",
		"userdb=" + filepath.Join(dir, "turndb"),
		"pidfile=" + filepath.Join(dir, "turnserver.pid"),
		"log-file=stdout",
		"simple-log",
	}
	return strings.Join(lines, "\n") + "\n"
}
