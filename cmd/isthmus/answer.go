package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/isthmusrelay/isthmus/gather"
)

// answerStdin is where "isthmus answer --offer -" reads; tests replace it.
var answerStdin io.Reader = os.Stdin

func init() {
	register("answer", "answer an SDP offer (RFC 6157 rules) and optionally echo its RTP: answer --offer FILE|-", runAnswer)
}

const answerUsage = `usage: isthmus answer --offer FILE|- [--stun ...] [--turn ...] [--user U --pass P]
                      [--timeout 2s] [--serve 10s] [agent flags]

Reads an SDP offer, gathers candidates and prints the answer SDP on stdout
(same network type as the offer on every m-line, RFC 6157 §4.1 rule 2; exit
status 1 with a clear reason when the agent has no address of the offered
family — a SIP stack answers 488). With --serve it then keeps the media
path up that long — ICE with an ICE offerer, our relayed allocation (or
socket) to the c=/m= address with a legacy one — and echoes every packet
it receives back to its sender. At the end it prints, on stderr so stdout
stays pure SDP:

  path: <mode> <local type>/<family> -> <remote type>/<family>
  rtp: received N echoed N

Flags:
`

// runAnswer implements "isthmus answer".
func runAnswer(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("answer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af agentFlags
	af.register(fs)
	offerPath := fs.String("offer", "", "read the SDP offer from `FILE` (\"-\" for standard input)")
	serve := fs.Duration("serve", 0, "keep the media path up this long and echo every packet (0: print the answer and exit)")
	fs.Usage = func() {
		fmt.Fprint(stderr, answerUsage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *offerPath == "" {
		fmt.Fprintln(stderr, "answer: --offer FILE|- is required")
		return 2
	}
	if *serve < 0 {
		fmt.Fprintln(stderr, "answer: --serve must not be negative")
		return 2
	}
	offer, err := readOffer(*offerPath, answerStdin)
	if err != nil {
		fmt.Fprintf(stderr, "answer: --offer: %v\n", err)
		return 2
	}
	cfg, err := af.config(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "answer: %v\n", err)
		return 2
	}
	agent, err := gather.NewAgent(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "answer: %v\n", err)
		return 2
	}
	defer agent.Close()

	answer, err := agent.Answer(context.Background(), offer)
	reportGather(stderr, agent)
	if err != nil {
		fmt.Fprintf(stderr, "answer: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(answer); err != nil {
		return 1
	}
	if *serve == 0 {
		return 0
	}
	return serveEcho(agent, *serve, stderr)
}

// serveEcho connects the media path and echoes every packet until d has
// passed since it started.
func serveEcho(agent *gather.Agent, d time.Duration, stderr io.Writer) int {
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	media, err := agent.Connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "answer: connect: %v\n", err)
		fmt.Fprintln(stderr, "rtp: received 0 echoed 0")
		return 1
	}
	fmt.Fprintf(stderr, "path: %s\n", media.Selected())
	if err := media.SetReadDeadline(end); err != nil {
		fmt.Fprintf(stderr, "answer: %v\n", err)
		return 1
	}
	// Without rtcp-mux, RTCP has its own path (ICE component 2): echo it too.
	var rtcpDone chan [2]uint64
	if rtcp := media.RTCP(); rtcp != nil {
		rtcpDone = make(chan [2]uint64, 1)
		go func() { rtcpDone <- echoUntil(rtcp, end) }()
	}
	var received, echoed, failed uint64
	buf := make([]byte, 1500)
	for {
		n, err := media.Read(buf)
		if err != nil {
			if !isTimeout(err) {
				fmt.Fprintf(stderr, "answer: media read: %v\n", err)
			}
			break
		}
		received++
		if _, err := media.Write(buf[:n]); err != nil {
			failed++
			continue
		}
		echoed++
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "answer: %d echo write(s) failed\n", failed)
	}
	fmt.Fprintf(stderr, "rtp: received %d echoed %d\n", received, echoed)
	if rtcpDone != nil {
		n := <-rtcpDone
		fmt.Fprintf(stderr, "rtcp: received %d echoed %d\n", n[0], n[1])
	}
	return 0
}

// echoUntil echoes every packet read from c back to it until end (or a
// read error) and returns the packets received and echoed.
func echoUntil(c net.Conn, end time.Time) [2]uint64 {
	var n [2]uint64
	if err := c.SetReadDeadline(end); err != nil {
		return n
	}
	buf := make([]byte, 1500)
	for {
		k, err := c.Read(buf)
		if err != nil {
			return n
		}
		n[0]++
		if _, err := c.Write(buf[:k]); err == nil {
			n[1]++
		}
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &te) && te.Timeout())
}
