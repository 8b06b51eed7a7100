package gather

import (
	"errors"
	"log/slog"
	"time"

	"github.com/pion/ice/v4"
)

// State is the media path's state, as OnStateChange reports it. It follows
// the ICE connection state (RFC 8445 §6.1.3, consent freshness RFC 7675)
// for an ICE peer; a legacy path is Connected from Connect until Close.
type State int

// The states, in the order a call normally goes through them.
const (
	// StateNew: nothing is connecting yet.
	StateNew State = iota
	// StateChecking: connectivity checks run.
	StateChecking
	// StateConnected: a pair is selected and consent is fresh.
	StateConnected
	// StateDisconnected: the peer has not answered for a while (the
	// consent timeout's first sixth); it may come back.
	StateDisconnected
	// StateFailed: consent was lost (no answer within Config.ConsentTimeout,
	// RFC 7675 §5.1) or the checks found no working pair. MediaConn Read and
	// Write return errors wrapping ErrConsentLost.
	StateFailed
	// StateClosed: the agent was closed.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateChecking:
		return "checking"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// ErrConsentLost is wrapped by MediaConn Read and Write once the peer
// stopped answering consent checks for Config.ConsentTimeout (RFC 7675
// §5.1: 30 s by default), and by Connect when the checks fail.
var ErrConsentLost = errors.New("gather: consent lost: the peer stopped answering")

// DefaultConsentTimeout is RFC 7675's consent expiry: media stops 30 s
// after the peer's last answer.
const DefaultConsentTimeout = 30 * time.Second

// iceTimers derives pion/ice's timers from the consent timeout.
//
// pion/ice declares failure when disconnectedTimeout+failedTimeout have
// passed since the selected pair last received, and it looks once per
// keepalive tick; so failedTimeout is what is left of the consent timeout
// after the disconnected one and one tick. Failure is then reported in
// (consent-keepalive, consent] after the peer's last packet, never later
// than RFC 7675 allows (pion's own defaults add up to 35 s and more).
func iceTimers(consent time.Duration) (keepalive, disconnected, failed time.Duration) {
	disconnected = consent / 6
	keepalive = min(2*time.Second, disconnected/2)
	failed = consent - disconnected - keepalive
	return keepalive, disconnected, failed
}

func stateOf(s ice.ConnectionState) State {
	switch s {
	case ice.ConnectionStateChecking:
		return StateChecking
	case ice.ConnectionStateConnected, ice.ConnectionStateCompleted:
		return StateConnected
	case ice.ConnectionStateDisconnected:
		return StateDisconnected
	case ice.ConnectionStateFailed:
		return StateFailed
	case ice.ConnectionStateClosed:
		return StateClosed
	}
	return StateNew
}

// OnStateChange sets f to be called on every state change of the media
// path. f runs without any agent lock held (on pion/ice's notifier
// goroutine for ICE states), so it may call any method of the Agent,
// Close included.
func (a *Agent) OnStateChange(f func(State)) {
	a.mu.Lock()
	a.onState = f
	a.mu.Unlock()
}

// State returns the media path's current state.
func (a *Agent) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// setState records s and tells the application. Once closed, nothing
// changes any more; failure is sticky too (until a restart).
func (a *Agent) setState(s State) {
	a.mu.Lock()
	if a.state == s || a.state == StateClosed {
		a.mu.Unlock()
		return
	}
	a.state = s
	f := a.onState
	media := a.media
	if s == StateFailed && !isClosed(a.failed) {
		close(a.failed)
	}
	a.mu.Unlock()
	if s == StateFailed && media != nil {
		media.loseConsent()
	}
	a.log.Debug("media path state", slog.String("state", s.String()))
	if f != nil {
		f(s)
	}
}
