package gather

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
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
// a Binding request on the selected pair every keepalive interval; without
// any answer the path is "disconnected", then consent is lost ("failed",
// MediaConn reads end) within Config.ConsentTimeout (see iceTimers).
const (
	checkInterval = 100 * time.Millisecond
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
	iceOpts    []ice.AgentOption // what ice was made with; the RTCP agent gets the same
	ufrag, pwd string

	// rtcp is component 2 (RTCP on its own port) for offers without
	// rtcp-mux; nil until such an offer is answered. See rtcp.go.
	rtcp *rtcpLeg

	// life ends at Close; gathering and Connect run under it.
	life    context.Context
	endLife context.CancelFunc

	mu        sync.Mutex
	closed    bool
	gathered  bool
	gatherErr error
	run       *gatherRun        // the gathering in progress or done; nil before (or after a cancelled one)
	cands     []*localCandidate // in the order found; localCandidates sorts
	// iceStarted: Connect handed the candidates to pion/ice; candidates
	// found later (trickle) go to pion/ice as they come.
	iceStarted bool
	// pendingRemote holds trickled remote candidates until Connect.
	pendingRemote []ice.Candidate
	remoteEOC     bool
	// remoteUfrag and remotePwd are the credentials pion/ice checks with;
	// a description with others is an ICE restart (RFC 8445 §9).
	remoteUfrag, remotePwd string
	// sessID and sessVer are our o= line (RFC 3264 §8: the same id in
	// every description of the session, the version one higher each time).
	sessID, sessVer uint64
	state           State
	onState         func(State)
	failed          chan struct{} // closed at StateFailed; Connect waits on it
	controlling     bool
	remote          *sdpcand.Session
	remoteMedia     int // index of the m-line media uses in remote; -1: first active
	offered         bool
	offerDefault    netip.AddrPort
	media           *MediaConn
	stats           Stats
}

// NewAgent checks cfg and creates an agent. It opens no socket yet: that
// happens in Gather (or Offer/Answer, which gather first).
func NewAgent(cfg Config) (*Agent, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log, timeout: cfg.Timeout, failed: make(chan struct{})}
	if a.timeout < 0 {
		return nil, fmt.Errorf("%w: timeout: %s is negative", ErrConfig, cfg.Timeout)
	}
	consent := cfg.ConsentTimeout
	switch {
	case consent == 0:
		consent = DefaultConsentTimeout
	case consent < minConsentTimeout:
		return nil, fmt.Errorf("%w: consent_timeout: %s is below %s", ErrConfig, cfg.ConsentTimeout, minConsentTimeout)
	}
	keepalive, disconnected, failed := iceTimers(consent)
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
	a.iceOpts = []ice.AgentOption{
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost, ice.CandidateTypeServerReflexive, ice.CandidateTypeRelay}),
		// no multicast DNS: no traffic beyond the servers and the peer
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithKeepaliveInterval(keepalive),
		ice.WithDisconnectedTimeout(disconnected),
		ice.WithFailedTimeout(failed),
		ice.WithCheckInterval(checkInterval),
		// Give a better-priority pair one check round before a host pair
		// is nominated, so IPv6 wins over IPv4 when both work (RFC 8421).
		ice.WithHostAcceptanceMinWait(checkInterval),
		// pion waits 2 s before nominating a relayed pair by default;
		// when only relayed pairs work (the cross-family case) that is
		// pure call-setup delay.
		ice.WithRelayAcceptanceMinWait(relayAcceptanceMinWait),
		ice.WithLoggerFactory(pionLogs(a.log)),
	}
	ia, err := ice.NewAgentWithOptions(a.iceOpts...)
	if err != nil {
		return nil, fmt.Errorf("gather: ice agent: %w", err)
	}
	a.ice = ia
	if a.ufrag, a.pwd, err = ia.GetLocalUserCredentials(); err != nil {
		_ = ia.Close()
		return nil, fmt.Errorf("gather: ice credentials: %w", err)
	}
	a.sessID = newSessionID()
	a.life, a.endLife = context.WithCancel(context.Background())
	_ = ia.OnConnectionStateChange(func(s ice.ConnectionState) { a.setState(stateOf(s)) })
	return a, nil
}

// Credentials returns the local ICE username fragment and password
// (RFC 8445 §5.3), as written into the offer or answer.
func (a *Agent) Credentials() (ufrag, pwd string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ufrag, a.pwd
}

// Close releases everything: the media path, the ICE agent, every socket
// and TURN allocation (deallocated with a zero-lifetime Refresh).
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	run := a.run
	a.mu.Unlock()
	// Stop a gathering in progress and wait for it: its attempts release
	// their sockets and allocations before Close returns.
	a.endLife()
	if run != nil {
		<-run.done
	}
	a.mu.Lock()
	var unowned []*localCandidate
	for _, c := range a.cands {
		if !c.owned {
			unowned = append(unowned, c)
		}
	}
	media := a.media
	rtcp := a.rtcp
	a.mu.Unlock()

	var errs []error
	if media != nil {
		errs = append(errs, media.closeLegacy())
	}
	if rtcp != nil {
		errs = append(errs, rtcp.close())
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
	a.setState(StateClosed)
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
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority() > out[j].Priority() })
	return out
}

// minConsentTimeout keeps the derived pion/ice timers meaningful.
const minConsentTimeout = 600 * time.Millisecond

// newSessionID picks an o= session id (RFC 8866 §5.2 suggests an NTP-format
// timestamp; any unique number will do).
func newSessionID() uint64 {
	return uint64(time.Now().UnixNano()) & (1<<62 - 1) //nolint:gosec // positive
}

// nextOrigin returns the o= session id and the next version for a new
// description: the same id for the whole call, the version one higher than
// in the previous one (RFC 3264 §8).
func (a *Agent) nextOrigin() (id, version uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sessVer == 0 {
		a.sessVer = a.sessID
	} else {
		a.sessVer++
	}
	return a.sessID, a.sessVer
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
