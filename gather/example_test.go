package gather_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// loopback stands in for the host's interfaces so the examples run
// anywhere; a softphone leaves HostAddrs empty and adds its STUN/TURN
// servers, e.g. TURN: []string{"turn:relay.example:3478?transport=udp"}.
var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}

// Gather an SDP offer with candidates of both families, trickling each
// candidate as it is found.
func ExampleAgent_Offer() {
	agent, err := gather.NewAgent(gather.Config{HostAddrs: loopback, Timeout: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()

	trickled := 0
	if _, err := agent.Gather(context.Background(), func(c ice.Candidate) {
		if c == nil {
			fmt.Println("end of candidates")
			return
		}
		trickled++
	}); err != nil {
		log.Fatal(err)
	}
	offer, err := agent.Offer(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	sess, err := sdpcand.Parse(offer)
	if err != nil {
		log.Fatal(err)
	}
	m := sess.Media[0]
	fmt.Println("trickled:", trickled)
	fmt.Println("m-line:", m.Kind, "candidates:", len(m.Candidates), "end-of-candidates:", m.EndOfCandidates)
	fmt.Println("ICE:", sess.ICE())
	// Output:
	// end of candidates
	// trickled: 2
	// m-line: audio candidates: 2 end-of-candidates: true
	// ICE: true
}

// Answer an offer. The answer keeps the offer's network type on every
// m-line (RFC 6157 §4.1 rule 2).
func ExampleAgent_Answer() {
	offerer, err := gather.NewAgent(gather.Config{HostAddrs: loopback})
	if err != nil {
		log.Fatal(err)
	}
	defer offerer.Close()
	answerer, err := gather.NewAgent(gather.Config{HostAddrs: loopback})
	if err != nil {
		log.Fatal(err)
	}
	defer answerer.Close()

	ctx := context.Background()
	offer, err := offerer.Offer(ctx)
	if err != nil {
		log.Fatal(err)
	}
	answer, err := answerer.Answer(ctx, offer)
	if err != nil {
		log.Fatal(err)
	}
	o, _ := sdpcand.Parse(offer)
	a, _ := sdpcand.Parse(answer)
	fmt.Println("same network type:", o.Media[0].NetType == a.Media[0].NetType)
	fmt.Println("answer candidates:", len(a.Media[0].Candidates))
	fmt.Println("remote answer accepted:", offerer.SetRemoteAnswer(answer) == nil)
	// Output:
	// same network type: true
	// answer candidates: 2
	// remote answer accepted: true
}

// Connect two agents and send RTP over the ICE-selected pair.
func ExampleAgent_Connect() {
	offerer, _ := gather.NewAgent(gather.Config{HostAddrs: loopback})
	defer offerer.Close()
	answerer, _ := gather.NewAgent(gather.Config{HostAddrs: loopback})
	defer answerer.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offer, _ := offerer.Offer(ctx)
	answer, _ := answerer.Answer(ctx, offer)
	_ = offerer.SetRemoteAnswer(answer)

	// Both sides connect at once: the checks need both running.
	done := make(chan *gather.MediaConn)
	go func() {
		m, err := answerer.Connect(ctx)
		if err != nil {
			log.Fatal(err)
		}
		done <- m
	}()
	caller, err := offerer.Connect(ctx)
	if err != nil {
		log.Fatal(err)
	}
	callee := <-done

	pkt := &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 0xcafe},
		Payload: make([]byte, 160),
	}
	if err := caller.WriteRTP(pkt); err != nil {
		log.Fatal(err)
	}
	_ = callee.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := callee.ReadRTP(make([]byte, 1500))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("received sequence", got.SequenceNumber, "ssrc", fmt.Sprintf("%#x", got.SSRC))
	fmt.Println("path:", caller.Selected())
	// Output:
	// received sequence 1 ssrc 0xcafe
	// path: ice host/IPv6 -> host/IPv6
}
