package sipua_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/sipua"
)

// Two phones on IPv6 loopback: bob answers every call with a gather
// agent, alice calls him directly (no proxy), ICE brings the media up,
// alice hangs up.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lo := netip.MustParseAddr("::1")
	agent := func() *gather.Agent {
		a, err := gather.NewAgent(gather.Config{HostAddrs: []netip.Addr{lo}})
		if err != nil {
			panic(err)
		}
		return a
	}

	answered := make(chan *sipua.Call, 1)
	bob, err := sipua.New(sipua.Config{
		AOR:    "sip:bob@[::1]",
		Listen: netip.AddrPortFrom(lo, 0),
		OnInvite: func(in *sipua.Incoming) {
			c, err := in.Answer(ctx, agent())
			if err != nil {
				fmt.Println("answer:", err)
				close(answered)
				return
			}
			answered <- c
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	alice, err := sipua.New(sipua.Config{AOR: "sip:alice@[::1]", Listen: netip.AddrPortFrom(lo, 0)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()

	call, err := alice.Dial(ctx, "sip:bob@"+bob.LocalAddr().String(), agent())
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	bobsCall := <-answered
	fmt.Println("media:", call.Media().Selected().Mode)
	if err := call.Hangup(ctx); err != nil {
		fmt.Println("hangup:", err)
	}
	<-bobsCall.Done()
	_ = bobsCall.Hangup(ctx)
	fmt.Println("bob's call ended by alice's BYE")
	// Output:
	// media: ice
	// bob's call ended by alice's BYE
}
