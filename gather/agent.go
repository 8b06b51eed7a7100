package gather

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"log/slog"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrClosed is returned by every method of a closed Agent.
	ErrClosed = errors.New("gather: agent closed")
	// ErrNoRemote means Connect was called before the remote description
	// was known (Answer, or Offer followed by SetRemoteAnswer).
	ErrNoRemote = errors.New("gather: no remote description")
	// ErrNoCandidates means gathering found nothing to offer.
	ErrNoCandidates = errors.New("gather: no candidates")
	// ErrNoMedia means the remote description has no usable audio m-line
	// (all rejected with port 0, or unspecified address without ICE).
	ErrNoMedia = errors.New("gather: no usable media description in remote SDP")
	// ErrNoLegacyPath means the remote peer does not do ICE and the agent
	// has no candidate of the peer's family to send from.
	ErrNoLegacyPath = errors.New("gather: no local candidate of the legacy peer's family")
)

// ICE timers. Consent freshness (RFC 7675) rides on pion/ice's keepalive:
// a Binding request on the selected pair every keepaliveInterval; without
// any answer the path is "disconnected" after disconnectedTimeout and
// consent is lost ("failed", MediaConn reads end) after consentTimeout,
// the RFC 7675 30 s expiry.
const (
	keepaliveInterval   = 2 * time.Second
	disconnectedTimeout = 5 * time.Second
	consentTimeout      = 30 * time.Second
	checkInterval       = 100 * time.Millisecond
	// remoteCandidateWait bounds how long Connect waits for pion/ice to
	// register the peer's candidates (it does so asynchronously, in
	// microseconds normally), polling every remoteCandidatePoll.
	remoteCandidateWait = 500 * time.Millisecond
	remoteCandidatePoll = 2 * time.Millisecond
	// relayAcceptanceMinWait is how long the controlling agent waits for a
	// better pair before nominating a relayed one.
	relayAcceptanceMinWait = 500 * time.Millisecond
)

// Agent is one call leg of a softphone: it gathers candidates, writes the
// offer or answer, and connects the media path, by ICE when the peer does
// ICE and through its TURN allocation straight to the peer's c= address
// when it does not. An Agent is used for one call; it is safe for
// concurrent use.
type Agent struct {
	cfg        Config
	log        *slog.Logger
	fams       []netaddr.Family
	relayFams  []netaddr.Family
	stun, turn []server
	timeout    time.Duration

	ice        *ice.Agent
	ufrag, pwd string

	mu           sync.Mutex
	closed       bool
	gathered     bool
	gatherErr    error
	gatherMu     sync.Mutex // one Gather at a time
	cands        []*localCandidate
	controlling  bool
	remote       *sdpcand.Session
	remoteMedia  int // index of the m-line media uses in remote; -1: first active
	offered      bool
	offerDefault netip.AddrPort
	media        *MediaConn
	stats        Stats
}

// NewAgent checks cfg and creates an agent. It opens no socket yet: that
// happens in Gather (or Offer/Answer, which gather first).
func NewAgent(cfg Config) (*Agent, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log, timeout: cfg.Timeout}
	if a.timeout < 0 {
		return nil, fmt.Errorf("%w: timeout: %s is negative", ErrConfig, cfg.Timeout)
	}
	if a.timeout == 0 {
		a.timeout = DefaultTimeout
	}
	var err error
	if a.fams, err = checkFamilies("families", cfg.Families); err != nil {
		return nil, err
	}
	if a.relayFams, err = checkFamilies("relay_families", cfg.RelayFamilies); err != nil {
		return nil, err
	}
	if a.stun, err = parseServers("stun", cfg.STUN, false); err != nil {
		return nil, err
	}
	if a.turn, err = parseServers("turn", cfg.TURN, true); err != nil {
		return nil, err
	}
	if len(a.turn) > 0 && (cfg.Username == "" || cfg.Password == "") {
		return nil, fmt.Errorf("%w: username/password: required with a TURN server", ErrConfig)
	}
	ia, err := ice.NewAgentWithOptions(
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost, ice.CandidateTypeServerReflexive, ice.CandidateTypeRelay}),
		// no multicast DNS: no traffic beyond the servers and the peer
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithKeepaliveInterval(keepaliveInterval),
		ice.WithDisconnectedTimeout(disconnectedTimeout),
		ice.WithFailedTimeout(consentTimeout),
		ice.WithCheckInterval(checkInterval),
		// Give a better-priority pair one check round before a host pair
		// is nominated, so IPv6 wins over IPv4 when both work (RFC 8421).
		ice.WithHostAcceptanceMinWait(checkInterval),
		// pion waits 2 s before nominating a relayed pair by default;
		// when only relayed pairs work (the cross-family case) that is
		// pure call-setup delay.
		ice.WithRelayAcceptanceMinWait(relayAcceptanceMinWait),
		ice.WithLoggerFactory(pionLogs(a.log)),
	)
	if err != nil {
		return nil, fmt.Errorf("gather: ice agent: %w", err)
	}
	a.ice = ia
	if a.ufrag, a.pwd, err = ia.GetLocalUserCredentials(); err != nil {
		_ = ia.Close()
		return nil, fmt.Errorf("gather: ice credentials: %w", err)
	}
	return a, nil
}

// Credentials returns the local ICE username fragment and password
// (RFC 8445 §5.3), as written into the offer or answer.
func (a *Agent) Credentials() (ufrag, pwd string) { return a.ufrag, a.pwd }

// Close releases everything: the media path, the ICE agent, every socket
// and TURN allocation (deallocated with a zero-lifetime Refresh).
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	var unowned []*localCandidate
	for _, c := range a.cands {
		if !c.owned {
			unowned = append(unowned, c)
		}
	}
	media := a.media
	a.mu.Unlock()

	var errs []error
	if media != nil {
		errs = append(errs, media.closeLegacy())
	}
	// Closing the ICE agent closes every candidate it took over (their
	// OnClose releases the TURN client and socket).
	if err := a.ice.Close(); err != nil && !errors.Is(err, ice.ErrClosed) {
		errs = append(errs, err)
	}
	for _, c := range unowned {
		if err := c.release(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *Agent) checkOpen() error {
	if a.closed {
		return ErrClosed
	}
	return nil
}

// localCandidates returns the gathered candidates (pion/ice values) in
// priority order.
func (a *Agent) localCandidates() []ice.Candidate {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ice.Candidate, 0, len(a.cands))
	for _, c := range a.cands {
		out = append(out, c.cand)
	}
	return out
}

// gatherFirst runs Gather unless it already ran.
func (a *Agent) gatherFirst(ctx context.Context) error {
	_, err := a.Gather(ctx, nil)
	return err
}

// waitCtx bounds ctx by d when ctx has no earlier deadline.
func waitCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
