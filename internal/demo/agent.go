package demo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/isthmusrelay/isthmus/internal/zslog"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// Endpoint roles of the hidden `isthmus demo agent` subcommand.
const (
	RoleOffer        = "offer"         // SDK agent that offers
	RoleAnswer       = "answer"        // SDK agent that answers
	RoleLegacyOffer  = "legacy-offer"  // plain RTP phone that offers
	RoleLegacyAnswer = "legacy-answer" // plain RTP phone that answers
)

// AgentOptions configures one endpoint process. The orchestrator turns it
// into command-line flags ([AgentOptions.Args]) and the endpoint parses
// them back, so both sides agree on one definition.
type AgentOptions struct {
	Role string
	// Addr is the legacy endpoint's local address (port 0: ephemeral).
	Addr string
	// TURN and STUN are server URLs for the SDK agent
	// ("turn:[2001:db8::1]:3478?transport=udp").
	TURN, STUN []string
	User, Pass string
	// Families restricts the SDK agent's host families ("ip4", "ip6");
	// empty means every family the host has.
	Families []string
	Probe    ProbeConfig
	// Timeout bounds the whole endpoint run.
	Timeout time.Duration
}

// Args renders the options as `isthmus demo agent` flags.
func (o AgentOptions) Args() []string {
	a := []string{"--role", o.Role}
	if o.Addr != "" {
		a = append(a, "--addr", o.Addr)
	}
	for _, u := range o.TURN {
		a = append(a, "--turn", u)
	}
	for _, u := range o.STUN {
		a = append(a, "--stun", u)
	}
	if o.User != "" {
		a = append(a, "--user", o.User, "--pass", o.Pass)
	}
	if len(o.Families) > 0 {
		a = append(a, "--families", strings.Join(o.Families, ","))
	}
	a = append(a,
		"--packets", fmt.Sprint(o.Probe.Packets),
		"--interval", o.Probe.Interval.String(),
		"--drain", o.Probe.Drain.String(),
		"--timeout", o.Timeout.String())
	return a
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// RunAgent is the hidden `isthmus demo agent` subcommand: one endpoint of a
// scenario, driven by the orchestrator over stdin/stdout (see [Message]).
// It returns the process exit code.
func RunAgent(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o AgentOptions
	var turn, stun listFlag
	var families string
	fs := flag.NewFlagSet("isthmus demo agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Role, "role", "", "offer, answer, legacy-offer or legacy-answer")
	fs.StringVar(&o.Addr, "addr", "", "legacy endpoint: local address to bind (IP or IP:port)")
	fs.Var(&turn, "turn", "SDK agent: TURN server URL (repeatable)")
	fs.Var(&stun, "stun", "SDK agent: STUN server URL (repeatable)")
	fs.StringVar(&o.User, "user", "", "TURN username")
	fs.StringVar(&o.Pass, "pass", "", "TURN password")
	fs.StringVar(&families, "families", "", "SDK agent: host families to use, comma separated (ip4, ip6); empty: all")
	fs.IntVar(&o.Probe.Packets, "packets", 500, "RTP probes to send (and to expect)")
	fs.DurationVar(&o.Probe.Interval, "interval", 20*time.Millisecond, "time between probes (20ms = 50 packets/s)")
	fs.DurationVar(&o.Probe.Drain, "drain", 5*time.Second, "wait for late packets after the last probe")
	fs.DurationVar(&o.Timeout, "timeout", 60*time.Second, "bound on the whole run")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: isthmus demo agent --role ROLE [flags]  (internal: driven by `isthmus demo`)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o.TURN, o.STUN = turn, stun
	if families != "" {
		o.Families = strings.Split(families, ",")
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The binary's zerolog JSON lines, through slog for the SDK.
	log := slog.New(zslog.New(zerolog.New(stderr).Level(zerolog.InfoLevel).With().Timestamp().Str("role", o.Role).Logger()))
	ctl := newControlChannel(stdin, stdout)
	if err := runEndpoint(ctx, o, ctl, log); err != nil {
		log.Error("endpoint failed", slog.Any("error", err))
		_ = ctl.send(Message{Event: EventError, Error: err.Error()})
		return 1
	}
	return 0
}

// mediaConn is what an endpoint's role hands to the prober.
type mediaConn interface {
	packetConn
	Close() error
}

// roleFunc negotiates (offer/answer over ctl) and connects the media path.
type roleFunc func(ctx context.Context, o AgentOptions, ctl *controlChannel, log *slog.Logger) (mediaConn, Path, error)

// roles maps a role name to its implementation; the SDK roles register
// themselves from their own file.
var roles = map[string]roleFunc{
	RoleLegacyOffer:  legacyOffer,
	RoleLegacyAnswer: legacyAnswer,
}

func runEndpoint(ctx context.Context, o AgentOptions, ctl *controlChannel, log *slog.Logger) error {
	role, ok := roles[o.Role]
	if !ok {
		return fmt.Errorf("demo: agent: unknown role %q", o.Role)
	}
	conn, path, err := role(ctx, o, ctl, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	p, err := newProber(conn, o.Probe)
	if err != nil {
		return err
	}
	log.Info("media path up", slog.String("local", path.Local.Addr), slog.String("remote", path.Remote.Addr), slog.String("local_type", path.Local.Type))
	if err := ctl.send(Message{Event: EventConnected, Path: &path}); err != nil {
		return err
	}
	if _, err := ctl.expect(EventStart); err != nil {
		return err
	}
	stats, err := p.Run(ctx)
	if err != nil {
		return err
	}
	// Datagrams the connection itself dropped for coming from elsewhere.
	if sc, ok := conn.(interface{ Strangers() uint64 }); ok {
		stats.Invalid += int(sc.Strangers())
	}
	if err := ctl.send(Message{Event: EventResult, Stats: &stats}); err != nil {
		return err
	}
	// Keep echoing until the orchestrator has both results.
	if _, err := ctl.expect(EventExit); err != nil {
		return err
	}
	_ = conn.Close()
	p.Wait()
	return nil
}

func legacyOffer(_ context.Context, o AgentOptions, ctl *controlChannel, _ *slog.Logger) (_ mediaConn, _ Path, err error) {
	udp, local, err := legacySocket(o.Addr)
	if err != nil {
		return nil, Path{}, err
	}
	defer closeOnError(udp, &err)
	offer, err := legacySDP(local, sessionID())
	if err != nil {
		return nil, Path{}, err
	}
	if err := ctl.send(Message{Event: EventOffer, SDP: string(offer)}); err != nil {
		return nil, Path{}, err
	}
	m, err := ctl.expect(EventAnswer)
	if err != nil {
		return nil, Path{}, err
	}
	remote, err := legacyRemote([]byte(m.SDP))
	if err != nil {
		return nil, Path{}, err
	}
	return &plainConn{udp: udp, remote: remote}, plainPath(local, remote), nil
}

func legacyAnswer(_ context.Context, o AgentOptions, ctl *controlChannel, _ *slog.Logger) (_ mediaConn, _ Path, err error) {
	udp, local, err := legacySocket(o.Addr)
	if err != nil {
		return nil, Path{}, err
	}
	defer closeOnError(udp, &err)
	m, err := ctl.expect(EventOffer)
	if err != nil {
		return nil, Path{}, err
	}
	remote, err := legacyRemote([]byte(m.SDP))
	if err != nil {
		return nil, Path{}, err
	}
	answer, err := legacySDP(local, sessionID())
	if err != nil {
		return nil, Path{}, err
	}
	if err := ctl.send(Message{Event: EventAnswer, SDP: string(answer)}); err != nil {
		return nil, Path{}, err
	}
	return &plainConn{udp: udp, remote: remote}, plainPath(local, remote), nil
}

// closeOnError closes c when the function returning *err failed, so every
// early return of a legacy phone's setup releases its socket.
func closeOnError(c io.Closer, err *error) {
	if *err != nil {
		_ = c.Close()
	}
}

// legacySocket binds the legacy phone's RTP socket; addr is an IP (the port
// is then ephemeral) or IP:port.
func legacySocket(addr string) (*net.UDPConn, netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		a, aerr := netip.ParseAddr(addr)
		if aerr != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("demo: legacy: --addr %q: want IP or IP:port", addr)
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("demo: legacy: listen %s: %w", ap, err)
	}
	return udp, udp.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

func plainPath(local, remote netip.AddrPort) Path {
	return Path{
		Local:  Candidate{Type: "plain", Addr: local.String(), Family: netaddr.FamilyOf(local.Addr()).String()},
		Remote: Candidate{Type: "plain", Addr: remote.String(), Family: netaddr.FamilyOf(remote.Addr().Unmap()).String()},
	}
}

func sessionID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 2 // keep it well inside int64 for old parsers
}
