package sipaddr_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/isthmusrelay/isthmus/sipaddr"
)

func ExampleParseURI() {
	for _, s := range []string{
		"sip:[2001:db8::10]:5070",         // RFC 5118 §4.4: port outside the brackets
		"sip:[2001:db8::10:5070]",         // §4.3: an address, no port
		"sip:user@[2001:db8:::192.0.2.1]", // §4.10: tolerated, written with two colons
		"sip:2001:db8::10",                // §4.2: must be rejected
	} {
		u, err := sipaddr.ParseURI(s)
		switch {
		case errors.Is(err, sipaddr.ErrUnbracketedIPv6):
			fmt.Printf("%s: reject (%v)\n", s, err)
		case err != nil:
			fmt.Printf("%s: %v\n", s, err)
		default:
			fmt.Printf("%s: host %s port %d, written %s\n", s, u.HostPort.Host.Addr(), u.HostPort.Port, u)
		}
	}
	// Output:
	// sip:[2001:db8::10]:5070: host 2001:db8::10 port 5070, written sip:[2001:db8::10]:5070
	// sip:[2001:db8::10:5070]: host 2001:db8::10:5070 port 0, written sip:[2001:db8::10:5070]
	// sip:user@[2001:db8:::192.0.2.1]: host 2001:db8::c000:201 port 0, written sip:user@[2001:db8::c000:201]
	// sip:2001:db8::10: reject (sipaddr: URI host "2001:db8::10": IPv6 reference without brackets)
}

func ExampleParseVia() {
	v, err := sipaddr.ParseVia("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111;rport")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(v.SentBy, v.Received.Addr(), v.Received.Quirks())
	fmt.Println(v)
	// Output:
	// [2001:db8::9:1] 2001:db8::9:255 brackets around received (RFC 5118 §4.5)
	// SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111;received=2001:db8::9:255;rport
}

func ExampleHost_String() {
	for _, a := range []string{"2001:db8::1", "::ffff:192.0.2.1", "fe80::1%eth0", "192.0.2.1"} {
		fmt.Println(sipaddr.HostFromAddr(netip.MustParseAddr(a)))
	}
	// Output:
	// [2001:db8::1]
	// [::ffff:192.0.2.1]
	// [fe80::1%25eth0]
	// 192.0.2.1
}
