package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/siplocate"
	"github.com/isthmusrelay/isthmus/sipua"
)

func init() {
	register("phone", "a SIP phone on the SDK: phone register|call URI|answer (RTP probe, packets/loss/RTT)", runPhone)
}

const phoneUsage = `usage: isthmus phone register --aor URI --listen ADDR:PORT [--proxy URI] [--sip-pass P] [flags]
       isthmus phone call URI --aor URI --listen ADDR:PORT [--proxy URI] [--duration 5s] [flags]
       isthmus phone answer --aor URI --listen ADDR:PORT [--proxy URI] [--wait 60s] [--duration 30s] [flags]

A thin SIP phone (package sipua on sipgo) whose media is the SDK's: the
offer or answer comes from package gather (both families, an IPv4 relayed
address for an IPv6-only phone), servers are located per RFC 3263.

  register  REGISTER at the registrar (digest with --sip-user/--sip-pass).
  call      INVITE URI with our offer, ACK, then send 20 ms RTP for
            --duration and hang up (BYE). The far end is expected to echo
            (sipp -rtp_echo, "isthmus phone answer"): printed on stderr are
              path: <mode> <local>/<family> -> <remote>/<family>
              rtp: sent N received N loss P% rtt avg D max D
  answer    wait up to --wait for one call, answer it with our agent and
            echo its RTP until the caller hangs up or --duration passes;
            prints "rtp: received N echoed N".

With --proxy or --sip-pass, call and answer register first. Exit status: 0
call done, 1 call failed (rejected, no answer, no media), 2 bad usage.

Flags:
`

// phoneFlags are the SIP side of "isthmus phone"; the media side are the
// agentFlags of gather/answer.
type phoneFlags struct {
	aor, listen, proxy, registrar string
	sipUser, sipPass              string
	dns                           string
	duration, wait, sipTimeout    time.Duration
}

func runPhone(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, phoneUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	mode := args[0]
	args = args[1:]
	var target string
	switch mode {
	case "register", "answer":
	case "call":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			fmt.Fprintln(stderr, "phone call: the URI to call is required: isthmus phone call sip:bob@example.org ...")
			return 2
		}
		target, args = args[0], args[1:]
	default:
		fmt.Fprintf(stderr, "phone: unknown mode %q (want register, call or answer)\n", mode)
		return 2
	}

	fs := flag.NewFlagSet("phone "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af agentFlags
	af.register(fs)
	var pf phoneFlags
	fs.StringVar(&pf.aor, "aor", "", "address of record `URI`, e.g. sip:alice@example.org (required)")
	fs.StringVar(&pf.listen, "listen", "", "local SIP UDP `ADDR:PORT`, a specific address (required; port 0 picks one)")
	fs.StringVar(&pf.proxy, "proxy", "", "outbound proxy `URI`, located per RFC 3263 (default: each request's own server)")
	fs.StringVar(&pf.registrar, "registrar", "", "REGISTER Request-URI (default: the AOR's domain)")
	fs.StringVar(&pf.sipUser, "sip-user", "", "digest `username` (default: the AOR's user)")
	fs.StringVar(&pf.sipPass, "sip-pass", "", "digest `password`")
	fs.StringVar(&pf.dns, "dns", "", "DNS server `HOST:PORT` for RFC 3263 lookups (default: /etc/resolv.conf)")
	fs.DurationVar(&pf.duration, "duration", 5*time.Second, "media time: call sends RTP this long; answer echoes at most this long")
	fs.DurationVar(&pf.wait, "wait", 60*time.Second, "answer: how long to wait for a call")
	fs.DurationVar(&pf.sipTimeout, "sip-timeout", 32*time.Second, "bound on REGISTER and on the INVITE until its answer")
	fs.Usage = func() {
		fmt.Fprint(stderr, phoneUsage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if pf.aor == "" || pf.listen == "" {
		fmt.Fprintf(stderr, "phone %s: --aor and --listen are required\n", mode)
		return 2
	}
	listen, err := netip.ParseAddrPort(pf.listen)
	if err != nil {
		fmt.Fprintf(stderr, "phone %s: --listen: %v\n", mode, err)
		return 2
	}
	if pf.duration <= 0 || pf.wait <= 0 || pf.sipTimeout <= 0 {
		fmt.Fprintf(stderr, "phone %s: --duration, --wait and --sip-timeout must be positive\n", mode)
		return 2
	}
	acfg, err := af.config(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phone %s: %v\n", mode, err)
		return 2
	}
	// One logger for SIP and media: the binary's zerolog JSON lines at
	// --log-level, as gather and answer write them.
	log := acfg.Logger
	res := &siplocate.Resolver{Server: pf.dns, Logger: log}
	if pf.dns != "" {
		acfg.Locator = res
	}

	calls := make(chan *sipua.Incoming, 1)
	cfg := sipua.Config{
		AOR: pf.aor, Listen: listen, Proxy: pf.proxy, Registrar: pf.registrar,
		Username: pf.sipUser, Password: pf.sipPass, Resolver: res, Logger: log,
	}
	var answered chan struct{}
	if mode == "answer" {
		answered = make(chan struct{})
		var once sync.Once
		cfg.OnInvite = func(in *sipua.Incoming) {
			taken := false
			once.Do(func() { taken = true })
			if !taken {
				_ = in.Reject(486, "Busy Here")
				return
			}
			calls <- in
			<-answered // the INVITE is answered on the main goroutine
		}
	}
	ua, err := sipua.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "phone %s: %v\n", mode, err)
		return 2
	}
	defer ua.Close()

	if mode == "register" || pf.proxy != "" || pf.sipPass != "" {
		ctx, cancel := context.WithTimeout(context.Background(), pf.sipTimeout)
		reg, err := ua.Register(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "phone %s: register: %v\n", mode, err)
			return 1
		}
		fmt.Fprintf(stderr, "registered: %s at %s for %s", ua.Contact(), reg.Server, reg.Expires)
		if reg.Received.IsValid() {
			fmt.Fprintf(stderr, " (seen from %s)", reg.Received)
		}
		fmt.Fprintln(stderr)
		if mode == "register" {
			return 0
		}
	}

	agent, err := gather.NewAgent(acfg)
	if err != nil {
		fmt.Fprintf(stderr, "phone %s: %v\n", mode, err)
		return 2
	}
	switch mode {
	case "call":
		return phoneCall(ua, agent, target, pf, stderr)
	default:
		defer close(answered)
		return phoneAnswer(agent, calls, pf, stderr)
	}
}

func phoneCall(ua *sipua.UA, agent *gather.Agent, target string, pf phoneFlags, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), pf.sipTimeout)
	call, err := ua.Dial(ctx, target, agent)
	cancel()
	if err != nil {
		agent.Close()
		fmt.Fprintf(stderr, "phone call: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "path: %s\n", call.Media().Selected())
	st := phoneProbe(call.Media(), pf.duration, call.Done())
	fmt.Fprintf(stderr, "rtp: sent %d received %d loss %.1f%% rtt avg %s max %s\n",
		st.sent, st.received, st.loss(), st.avg().Round(10*time.Microsecond), st.maxRTT.Round(10*time.Microsecond))
	hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer hcancel()
	if err := call.Hangup(hctx); err != nil {
		fmt.Fprintf(stderr, "phone call: %v\n", err)
		return 1
	}
	if st.sent == 0 {
		return 1
	}
	return 0
}

func phoneAnswer(agent *gather.Agent, calls <-chan *sipua.Incoming, pf phoneFlags, stderr io.Writer) int {
	var in *sipua.Incoming
	select {
	case in = <-calls:
	case <-time.After(pf.wait):
		agent.Close()
		fmt.Fprintf(stderr, "phone answer: no call within %s\n", pf.wait)
		return 1
	}
	fmt.Fprintf(stderr, "incoming: %s\n", in.From())
	_ = in.Ring()
	ctx, cancel := context.WithTimeout(context.Background(), pf.sipTimeout)
	call, err := in.Answer(ctx, agent)
	cancel()
	if err != nil {
		agent.Close()
		fmt.Fprintf(stderr, "phone answer: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "path: %s\n", call.Media().Selected())
	received, echoed := phoneEcho(call.Media(), pf.duration, call.Done())
	fmt.Fprintf(stderr, "rtp: received %d echoed %d\n", received, echoed)
	hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer hcancel()
	if err := call.Hangup(hctx); err != nil {
		fmt.Fprintf(stderr, "phone answer: %v\n", err)
		return 1
	}
	return 0
}

// rtpStats is what the call side measures from the echoes.
type rtpStats struct {
	sent, received int
	sumRTT, maxRTT time.Duration
}

func (s rtpStats) loss() float64 {
	if s.sent == 0 {
		return 100
	}
	return 100 * float64(s.sent-s.received) / float64(s.sent)
}

func (s rtpStats) avg() time.Duration {
	if s.received == 0 {
		return 0
	}
	return s.sumRTT / time.Duration(s.received)
}

// phoneProbe sends one 20 ms PCMU packet per 20 ms for d (its payload
// carries the send time) and counts distinct echoed sequence numbers
// until 1 s after the last send or the end of the call.
func phoneProbe(m *gather.MediaConn, d time.Duration, done <-chan struct{}) rtpStats {
	n := int(d / (20 * time.Millisecond))
	if n < 1 {
		n = 1
	}
	var (
		mu   sync.Mutex
		st   rtpStats
		seen = make([]bool, n)
		t0   = time.Now()
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			_ = m.SetReadDeadline(time.Now().Add(time.Second))
			k, err := m.Read(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:k]) != nil || int(p.SequenceNumber) >= n || len(p.Payload) < 8 {
				continue
			}
			rtt := time.Since(t0) - time.Duration(binary.BigEndian.Uint64(p.Payload))
			mu.Lock()
			if !seen[p.SequenceNumber] {
				seen[p.SequenceNumber] = true
				st.received++
				st.sumRTT += rtt
				st.maxRTT = max(st.maxRTT, rtt)
			}
			mu.Unlock()
		}
	}()
	payload := make([]byte, 160)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
send:
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint64(payload, uint64(time.Since(t0)))
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: 0x15e7}, Payload: payload}
		if m.WriteRTP(pkt) == nil {
			mu.Lock()
			st.sent++
			mu.Unlock()
		}
		select {
		case <-tick.C:
		case <-done:
			break send
		}
	}
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	return st
}

// phoneEcho echoes every packet until d passes or the call ends.
func phoneEcho(m *gather.MediaConn, d time.Duration, done <-chan struct{}) (received, echoed int) {
	end := time.Now().Add(d)
	go func() {
		// A BYE ends the wait at once: unblock Read.
		select {
		case <-done:
			_ = m.SetReadDeadline(time.Now())
		case <-time.After(d):
		}
	}()
	_ = m.SetReadDeadline(end)
	buf := make([]byte, 1500)
	for {
		n, err := m.Read(buf)
		if err != nil {
			return received, echoed
		}
		received++
		if _, err := m.Write(buf[:n]); err == nil {
			echoed++
		}
	}
}
