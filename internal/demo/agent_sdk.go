package demo

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/netaddr"
)

// The SDK endpoint: what a softphone linking package gather does, nothing
// more. It gathers with the TURN server it is given, offers or answers,
// connects and hands the MediaConn to the prober.

// gatherTimeout bounds candidate gathering; inside the namespaces the relay
// answers in microseconds, the margin is for a loaded CI machine.
const gatherTimeout = 5 * time.Second

func init() {
	roles[RoleOffer] = sdkOffer
	roles[RoleAnswer] = sdkAnswer
}

func newSDKAgent(o AgentOptions, log *slog.Logger) (*gather.Agent, error) {
	cfg := gather.Config{
		STUN:     o.STUN,
		TURN:     o.TURN,
		Username: o.User,
		Password: o.Pass,
		Timeout:  gatherTimeout,
		Logger:   log,
	}
	for _, f := range o.Families {
		switch strings.TrimSpace(f) {
		case "ip4":
			cfg.Families = append(cfg.Families, netaddr.IPv4)
		case "ip6":
			cfg.Families = append(cfg.Families, netaddr.IPv6)
		default:
			return nil, fmt.Errorf("demo: agent: --families: unknown family %q (want ip4, ip6)", f)
		}
	}
	a, err := gather.NewAgent(cfg)
	if err != nil {
		return nil, fmt.Errorf("demo: agent: %w", err)
	}
	return a, nil
}

func sdkOffer(ctx context.Context, o AgentOptions, ctl *controlChannel, log *slog.Logger) (mediaConn, Path, error) {
	a, err := newSDKAgent(o, log)
	if err != nil {
		return nil, Path{}, err
	}
	offer, err := a.Offer(ctx)
	if err != nil {
		a.Close()
		return nil, Path{}, fmt.Errorf("demo: agent: offer: %w", err)
	}
	if err := ctl.send(Message{Event: EventOffer, SDP: string(offer)}); err != nil {
		a.Close()
		return nil, Path{}, err
	}
	m, err := ctl.expect(EventAnswer)
	if err != nil {
		a.Close()
		return nil, Path{}, err
	}
	if err := a.SetRemoteAnswer([]byte(m.SDP)); err != nil {
		a.Close()
		return nil, Path{}, fmt.Errorf("demo: agent: remote answer: %w", err)
	}
	return sdkConnect(ctx, a, o)
}

func sdkAnswer(ctx context.Context, o AgentOptions, ctl *controlChannel, log *slog.Logger) (mediaConn, Path, error) {
	a, err := newSDKAgent(o, log)
	if err != nil {
		return nil, Path{}, err
	}
	m, err := ctl.expect(EventOffer)
	if err != nil {
		a.Close()
		return nil, Path{}, err
	}
	answer, err := a.Answer(ctx, []byte(m.SDP))
	if err != nil {
		a.Close()
		return nil, Path{}, fmt.Errorf("demo: agent: answer: %w", err)
	}
	if err := ctl.send(Message{Event: EventAnswer, SDP: string(answer)}); err != nil {
		a.Close()
		return nil, Path{}, err
	}
	return sdkConnect(ctx, a, o)
}

func sdkConnect(ctx context.Context, a *gather.Agent, o AgentOptions) (mediaConn, Path, error) {
	mc, err := a.Connect(ctx)
	if err != nil {
		a.Close()
		return nil, Path{}, fmt.Errorf("demo: agent: connect: %w", err)
	}
	sel := mc.Selected()
	p := Path{
		Local:  Candidate{Type: sel.LocalType, Addr: sel.Local.String(), Family: sel.LocalFamily.String()},
		Remote: Candidate{Type: sel.RemoteType, Addr: sel.Remote.String(), Family: sel.RemoteFamily.String()},
		ICE:    sel.Mode == gather.ModeICE,
	}
	if sel.Remote.IsValid() && !p.ICE {
		p.Remote.Type = "plain"
	}
	if sel.LocalType == "relay" {
		p.Server = turnServerFor(o.TURN, sel.LocalFamily)
	}
	return mc, p, nil
}

// turnServerFor names the TURN server (host:port of its URL) that most
// likely gave a relayed candidate: the only one, or among several the one
// reached over the other family (what a cross-family relay is for).
func turnServerFor(urls []string, relayed netaddr.Family) string {
	hostPort := func(u string) string {
		u = strings.TrimPrefix(strings.TrimPrefix(u, "turn:"), "turns:")
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		return u
	}
	if len(urls) == 1 {
		return hostPort(urls[0])
	}
	for _, u := range urls {
		isV6 := strings.Contains(hostPort(u), "[")
		if (relayed == netaddr.IPv4) == isV6 {
			return hostPort(u)
		}
	}
	return ""
}
