//go:build linux

package gather

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// testConsent is a short consent timeout so consent-loss tests take
// seconds, not RFC 7675's 30 s.
const testConsent = 1200 * time.Millisecond

func origin(t *testing.T, b []byte) sdp.Origin {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(string(b)); err != nil {
		t.Fatalf("SDP does not parse: %v\n%s", err, b)
	}
	return d.Origin
}

// TestReofferOnConnectedAgent: after Connect, both sides can re-offer
// (hold, resume), the other side answers, the o= id stays and the version
// goes up by one (RFC 3264 §8), and RTP still flows on the same pair.
func TestReofferOnConnectedAgent(t *testing.T) {
	off := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4, lo6}})
	ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4, lo6}})
	om, am := connectPair(t, off, ans)
	exchangeRTP(t, om, am)
	before := om.Selected()

	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	// What the first offer/answer said, to compare versions against.
	lastOff, err := off.Offer(ctx)
	if err != nil {
		t.Fatalf("re-offer: %v", err)
	}
	lastAns, err := ans.Answer(ctx, lastOff)
	if err != nil {
		t.Fatalf("re-answer on a connected agent: %v", err)
	}
	if err := off.SetRemoteAnswer(lastAns); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		offerer   *Agent
		answerer  *Agent
		dir, want string
	}{
		{"offerer holds", off, ans, "sendonly", "recvonly"},
		{"offerer resumes", off, ans, "sendrecv", "sendrecv"},
		{"answerer (UAS) re-INVITEs with inactive", ans, off, "inactive", "inactive"},
		{"answerer resumes", ans, off, "", "sendrecv"},
	}
	prev := map[*Agent]sdp.Origin{off: origin(t, lastOff), ans: origin(t, lastAns)}
	for _, st := range steps {
		o, err := st.offerer.Offer(ctx, OfferOptions{Direction: st.dir})
		if err != nil {
			t.Fatalf("%s: Offer: %v", st.name, err)
		}
		a, err := st.answerer.Answer(ctx, o)
		if err != nil {
			t.Fatalf("%s: Answer: %v\n%s", st.name, err, o)
		}
		if err := st.offerer.SetRemoteAnswer(a); err != nil {
			t.Fatalf("%s: SetRemoteAnswer: %v", st.name, err)
		}
		for ag, b := range map[*Agent][]byte{st.offerer: o, st.answerer: a} {
			got, was := origin(t, b), prev[ag]
			if got.SessionID != was.SessionID || got.SessionVersion != was.SessionVersion+1 {
				t.Errorf("%s: o= %d %d after %d %d: want the same id, version+1", st.name, got.SessionID, got.SessionVersion, was.SessionID, was.SessionVersion)
			}
			prev[ag] = got
		}
		sess, err := sdpcand.Parse(a)
		if err != nil {
			t.Fatal(err)
		}
		if d := sess.Media[0].Direction; d != st.want {
			t.Errorf("%s: answer direction %q, want %q", st.name, d, st.want)
		}
		if strings.Contains(string(o), "0.0.0.0") || !strings.Contains(string(o), "a=ice-ufrag:") {
			t.Errorf("%s: re-offer with ICE must keep a real c= and the credentials:\n%s", st.name, o)
		}
	}
	exchangeRTP(t, om, am)
	if after := om.Selected(); after != before {
		t.Errorf("selected pair changed from %s to %s", before, after)
	}
}

// stateLog records OnStateChange calls.
type stateLog struct {
	mu     sync.Mutex
	states []State
	at     map[State]time.Time
}

func (l *stateLog) add(s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = map[State]time.Time{}
	}
	l.states = append(l.states, s)
	l.at[s] = time.Now()
}

func (l *stateLog) get() ([]State, map[State]time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := map[State]time.Time{}
	for k, v := range l.at {
		at[k] = v
	}
	return append([]State(nil), l.states...), at
}

// TestConsentLostSurfaces: the peer vanishes (its agent is closed, so it
// never answers again); within the consent timeout OnStateChange reports
// Disconnected then Failed, and Read and Write return ErrConsentLost.
func TestConsentLostSurfaces(t *testing.T) {
	off := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}, ConsentTimeout: testConsent})
	ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}, ConsentTimeout: testConsent})
	var log stateLog
	off.OnStateChange(log.add)
	om, am := connectPair(t, off, ans)
	exchangeRTP(t, om, am)

	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, err := om.Read(buf); err != nil {
				readErr <- err
				return
			}
		}
	}()
	vanished := time.Now()
	if err := ans.Close(); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-readErr:
	case <-time.After(testConsent + 3*time.Second):
		t.Fatalf("Read still blocked %s after the peer vanished (consent timeout %s)", time.Since(vanished), testConsent)
	}
	took := time.Since(vanished)
	if !errors.Is(err, ErrConsentLost) {
		t.Fatalf("Read: %v, want ErrConsentLost", err)
	}
	// The peer's last answer came at most one keepalive before it vanished.
	if took > testConsent+500*time.Millisecond {
		t.Errorf("consent loss reported %s after the peer vanished, timeout %s", took, testConsent)
	}
	if _, err := om.Write([]byte{0x80, 0, 0, 1}); !errors.Is(err, ErrConsentLost) {
		t.Errorf("Write: %v, want ErrConsentLost", err)
	}
	// Read ends as consent is lost, just before OnStateChange is called
	// with StateFailed: give the callback a moment.
	states, at := log.get()
	for deadline := time.Now().Add(time.Second); at[StateFailed].IsZero() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		states, at = log.get()
	}
	if at[StateDisconnected].IsZero() || at[StateFailed].IsZero() || at[StateFailed].Before(at[StateDisconnected]) {
		t.Errorf("states %v: want disconnected then failed", states)
	}
	if off.State() != StateFailed {
		t.Errorf("State() = %s", off.State())
	}
	_ = off.Close()
	if states, _ := log.get(); states[len(states)-1] != StateClosed {
		t.Errorf("states %v: want closed last", states)
	}
}

// TestConnectReturnsWhenChecksFail: Connect with context.Background()
// against an answer whose candidate nobody serves returns an error
// (wrapping ErrConsentLost) instead of hanging.
func TestConnectReturnsWhenChecksFail(t *testing.T) {
	ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}})
	off := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}, ConsentTimeout: testConsent})
	ctx := context.Background()
	offer, err := off.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := ans.Answer(ctx, offer)
	if err != nil {
		t.Fatal(err)
	}
	_ = ans.Close() // nobody answers the checks
	if err := off.SetRemoteAnswer(answer); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := off.Connect(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrConsentLost) {
			t.Errorf("Connect: %v, want an error wrapping ErrConsentLost", err)
		}
	case <-time.After(testConsent + 5*time.Second):
		_ = off.Close()
		t.Fatal("Connect(context.Background()) did not return although the checks failed")
	}
}

// TestGatherCallbackMayCallAgent: Offer, Answer and Gather called from
// inside the Gather callback do not deadlock.
func TestGatherCallbackMayCallAgent(t *testing.T) {
	a := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4, lo6}})
	other := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	theirOffer, err := other.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		var errs []error
		_, err := a.Gather(ctx, func(c ice.Candidate) {
			if c != nil {
				return
			}
			if _, err := a.Offer(ctx); err != nil {
				errs = append(errs, err)
			}
			if _, err := a.Gather(ctx, nil); err != nil {
				errs = append(errs, err)
			}
			if _, err := a.Answer(ctx, theirOffer); err != nil {
				errs = append(errs, err)
			}
		})
		done <- errors.Join(append(errs, err)...)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Offer/Gather/Answer from the Gather callback deadlocked")
	}
}

// deadServer is a UDP socket that never answers and counts what it gets.
type deadServer struct {
	conn *net.UDPConn
	got  atomic.Int64
	last atomic.Int64 // UnixNano of the last datagram
}

func startDeadServer(t *testing.T) *deadServer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &deadServer{conn: c}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				return
			}
			d.got.Add(1)
			d.last.Store(time.Now().UnixNano())
		}
	}()
	t.Cleanup(func() { _ = c.Close() })
	return d
}

func (d *deadServer) addr() string { return d.conn.LocalAddr().String() }

// TestGatherCancelled: a cancelled Gather returns ctx.Err() (wrapped), and
// the next Gather starts afresh instead of returning the partial result.
func TestGatherCancelled(t *testing.T) {
	dead := startDeadServer(t)
	a := newTestAgent(t, Config{
		HostAddrs: []netip.Addr{lo4}, STUN: []string{"stun:" + dead.addr()},
		Timeout: 600 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := a.Gather(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Gather: %v, want an error wrapping context.Canceled", err)
	}
	if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("cancelled Gather returned after %s", took)
	}
	cands, err := a.Gather(context.Background(), nil)
	if err != nil || len(cands) != 1 {
		t.Fatalf("retry: %v %v", cands, err)
	}
	if st := a.Stats(); !st.DeadlineHit {
		t.Errorf("retry stats %+v: want a full gathering that hit its deadline", st)
	}
}

// TestCloseStopsGathering: Close during a gathering returns promptly, the
// gathering returns ErrClosed, no request reaches the dead servers after
// Close, and every goroutine and socket is gone.
func TestCloseStopsGathering(t *testing.T) {
	dead := startDeadServer(t)
	fds := func() int {
		ents, err := readDirCount("/proc/self/fd")
		if err != nil {
			return -1
		}
		return ents
	}
	runtime.GC()
	goBefore, fdBefore := runtime.NumGoroutine(), fds()
	const agents = 20
	var wg sync.WaitGroup
	errs := make(chan error, agents)
	list := make([]*Agent, agents)
	for i := range list {
		a, err := NewAgent(Config{
			HostAddrs: []netip.Addr{lo4}, STUN: []string{"stun:" + dead.addr()},
			TURN: []string{"turn:" + dead.addr() + "?transport=udp"}, Username: testUser, Password: testPass,
			RelayFamilies: []netaddr.Family{netaddr.IPv4}, Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		list[i] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Gather(context.Background(), nil)
			errs <- err
		}()
	}
	time.Sleep(300 * time.Millisecond) // the attempts are retransmitting by now
	start := time.Now()
	for _, a := range list {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	closed := time.Now()
	wg.Wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close and Gather return took %s", took)
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Gather on a closed agent: %v, want ErrClosed", err)
		}
	}
	got := dead.got.Load()
	time.Sleep(700 * time.Millisecond) // longer than the first retransmission timeouts
	if late := dead.got.Load() - got; late > 0 || time.Unix(0, dead.last.Load()).After(closed.Add(50*time.Millisecond)) {
		t.Errorf("%d requests reached the dead server after Close", late)
	}
	deadline := time.Now().Add(3 * time.Second)
	for (runtime.NumGoroutine() > goBefore || fds() > fdBefore) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling counts, bounded
	}
	if g, f := runtime.NumGoroutine(), fds(); g > goBefore || f > fdBefore {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d -> %d, fds %d -> %d after Close:\n%s", goBefore, g, fdBefore, f, buf[:runtime.Stack(buf, true)])
	}
}

// TestTrickleOfferAndRemoteCandidates: a trickle offer comes back at once
// although a server is dead (no end-of-candidates), and the answerer gets
// the offerer's candidates only through AddRemoteCandidate; ICE connects.
func TestTrickleOfferAndRemoteCandidates(t *testing.T) {
	dead := startDeadServer(t)
	off := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}, STUN: []string{"stun:" + dead.addr()}, Timeout: 3 * time.Second})
	ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}})
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	start := time.Now()
	offer, err := off.Offer(ctx, OfferOptions{Trickle: true})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("trickle offer took %s", took)
	}
	if bytes.Contains(offer, []byte("end-of-candidates")) {
		t.Errorf("trickle offer while gathering runs has end-of-candidates:\n%s", offer)
	}
	// The answerer sees the offer without candidate lines: they arrive by
	// trickle (RFC 8840 INFO).
	var stripped, lines []string
	for _, l := range strings.Split(string(offer), "\r\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			lines = append(lines, l)
			continue
		}
		stripped = append(stripped, l)
	}
	if len(lines) == 0 {
		t.Fatalf("no candidates in the trickle offer:\n%s", offer)
	}
	answer, err := ans.Answer(ctx, []byte(strings.Join(stripped, "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := off.SetRemoteAnswer(answer); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if err := ans.AddRemoteCandidate(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := ans.AddRemoteCandidate("a=end-of-candidates"); err != nil {
		t.Fatal(err)
	}
	if err := ans.AddRemoteCandidate("a=candidate:garbage"); err == nil {
		t.Error("a bad candidate line was accepted")
	}
	type res struct {
		m   *MediaConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := ans.Connect(ctx)
		ch <- res{m, err}
	}()
	om, err := off.Connect(ctx)
	r := <-ch
	if err != nil || r.err != nil {
		t.Fatalf("Connect: %v / %v", err, r.err)
	}
	exchangeRTP(t, om, r.m)
}

func readDirCount(dir string) (int, error) {
	f, err := openDir(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}

func openDir(dir string) (*os.File, error) { return os.Open(dir) }

// TestGatherReadyWithDeadServer: with one live relay and one dead TURN
// server, the gathering ends once both relay families are in (plus a short
// grace), not at the deadline.
func TestGatherReadyWithDeadServer(t *testing.T) {
	srv := startOurRelay(t)
	dead := startDeadServer(t)
	const timeout = 3 * time.Second
	a := newTestAgent(t, Config{
		HostAddrs: []netip.Addr{lo4, lo6},
		TURN:      []string{srv.url("127.0.0.1", "udp"), "turn:" + dead.addr() + "?transport=udp"},
		Username:  testUser, Password: testPass, Timeout: timeout,
	})
	start := time.Now()
	cands, err := a.Gather(context.Background(), nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	got := countCandidates(t, cands)
	if got[ice.CandidateTypeRelay][netaddr.IPv4] != 1 || got[ice.CandidateTypeRelay][netaddr.IPv6] != 1 {
		t.Fatalf("candidates %v: want one relayed candidate of each family", cands)
	}
	if took > timeout/2 {
		t.Errorf("Gather took %s with a live relay (deadline %s)", took, timeout)
	}
	if st := a.Stats(); !st.Ready || st.DeadlineHit || st.Late != 2 {
		t.Errorf("stats %+v: want ready early with the 2 dead-server attempts late", st)
	}
}

// TestICERestart: Restart gives new credentials, the re-offer carries
// them, the answerer restarts on seeing them (new credentials in its
// answer), and media flows again on the same MediaConns.
func TestICERestart(t *testing.T) {
	off := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4, lo6}})
	ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4, lo6}})
	om, am := connectPair(t, off, ans)
	exchangeRTP(t, om, am)
	oldOff, _ := off.Credentials()
	oldAns, _ := ans.Credentials()
	connected := make(chan struct{}, 8)
	off.OnStateChange(func(s State) {
		if s == StateConnected {
			connected <- struct{}{}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := off.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	newOff, _ := off.Credentials()
	offer, err := off.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newOff == oldOff || !strings.Contains(string(offer), "a=ice-ufrag:"+newOff) {
		t.Fatalf("restart offer has ufrag %q (was %q):\n%s", newOff, oldOff, offer)
	}
	answer, err := ans.Answer(ctx, offer)
	if err != nil {
		t.Fatalf("Answer to a restart offer: %v", err)
	}
	newAns, _ := ans.Credentials()
	if newAns == oldAns || !strings.Contains(string(answer), "a=ice-ufrag:"+newAns) {
		t.Fatalf("answer to a restart offer keeps the old ufrag %q:\n%s", oldAns, answer)
	}
	if err := off.SetRemoteAnswer(answer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatalf("not connected again after the restart (state %s)", off.State())
	}
	exchangeRTP(t, om, am)
}
