package sdpcand

import (
	"errors"
	"net/netip"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// InvalidHost is the name written in "c=IN IP6" when an IPv6 "unspecified"
// address is needed (hold, third-party call control): RFC 6157 §4.1 rule 1
// forbids "::" there and asks for a name in the .invalid top-level domain.
const InvalidHost = "unspecified.invalid"

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNoAddressOfFamily means the answerer has no address of the family
	// the offer's c= line asks for (RFC 6157 §4.1 rule 2). A SIP stack maps
	// it to 488 Not Acceptable Here.
	ErrNoAddressOfFamily = errors.New("sdpcand: no local address of the offered family")
	// ErrNoAcceptableMedia means BuildAnswer found no RTP audio m-line with
	// a codec in common; a SIP stack maps it to 488 as well.
	ErrNoAcceptableMedia = errors.New("sdpcand: no acceptable media in the offer")
	// ErrInvalidSDP wraps every reason Parse rejects a description for.
	ErrInvalidSDP = errors.New("sdpcand: invalid SDP")
	// The three below only ever come wrapped by ErrInvalidSDP, hence no
	// "sdpcand:" prefix of their own.

	// ErrAddressMismatch means a c= address does not belong to its network
	// type, e.g. "c=IN IP4 2001:db8::1". Parse's error wraps it and ErrInvalidSDP.
	ErrAddressMismatch = errors.New("c= address does not match its network type")
	// ErrMultipleConnection means one section carries more than one c= line
	// (pion/sdp silently keeps the last one). Parse's error wraps it and
	// ErrInvalidSDP.
	ErrMultipleConnection = errors.New("more than one c= line in one section")
	// ErrNoConnection means a media description has no c= line and the
	// session has none to inherit. Parse's error wraps it and ErrInvalidSDP.
	ErrNoConnection = errors.New("media description without a c= line")
)

// Session is what Isthmus reads from (and writes into) one SDP description:
// the ICE credentials and, per m-line, the connection address and candidates.
type Session struct {
	// Origin is the o= line's value without "o=".
	Origin string
	// Ufrag and Pwd are the session-level a=ice-ufrag / a=ice-pwd.
	Ufrag, Pwd string
	// ICELite is true when a=ice-lite is present at session level.
	ICELite bool
	// NetType is the session-level c= network type, "IP4" or "IP6"; ""
	// when there is no session-level c= line.
	NetType string
	// Family is the family NetType names.
	Family netaddr.Family
	// Address is the session-level c= address as written.
	Address string
	// Addr is Address parsed; zero when it is a name.
	Addr netip.Addr
	// Unspecified is true for 0.0.0.0, :: or a .invalid name.
	Unspecified bool
	// Media holds the m-lines in order.
	Media []Media
	// Warnings lists what the reader tolerated (trailing spaces, LF-only
	// line ends, unparsable candidate lines) so a caller can log it.
	Warnings []string
}

// Media is one media description ("m=" section).
type Media struct {
	// Index is the position of the m-line, from 0.
	Index int
	// Kind is the media type: "audio", "video", ...
	Kind string
	// Port is the m= port; 0 means the stream is rejected/disabled.
	Port int
	// PortCount is the "/<number of ports>" of the m= line, 0 when absent.
	PortCount int
	// Proto is the transport, e.g. "RTP/AVP".
	Proto string
	// Formats are the m= format tokens (payload types for RTP).
	Formats []string
	// Codecs are the a=rtpmap entries, in format order where present.
	Codecs []Codec
	// NetType is "IP4" or "IP6": the applicable c= network type.
	NetType string
	// Family is the family NetType names.
	Family netaddr.Family
	// Address is the c= connection address as written (without /ttl/count).
	Address string
	// Addr is the parsed address; zero when Address is a name.
	Addr netip.Addr
	// TTL is the IPv4 multicast TTL ("/127"), 0 when absent.
	TTL int
	// AddrCount is the multicast "number of addresses" ("/3"), 0 when absent.
	AddrCount int
	// Unspecified is true for 0.0.0.0, :: or a name under .invalid.
	Unspecified bool
	// Inherited is true when the c= line came from session level.
	Inherited bool
	// Ufrag and Pwd are the effective ICE credentials (media level, else
	// session level).
	Ufrag, Pwd string
	// Candidates are the a=candidate lines pion/ice could parse.
	Candidates []ice.Candidate
	// RawCandidates are every a=candidate value as written, parsed or not
	// (pion/ice rejects some, e.g. a relayed candidate with a .invalid name).
	RawCandidates []string
	// CandidateErrors has one entry per a=candidate line pion/ice rejected,
	// naming the line.
	CandidateErrors []error
	// EndOfCandidates is true when a=end-of-candidates is present.
	EndOfCandidates bool
	// RTCPMux is true when a=rtcp-mux is present.
	RTCPMux bool
	// Direction is "sendrecv", "sendonly", "recvonly" or "inactive"; the
	// media-level attribute wins over the session-level one, default
	// "sendrecv".
	Direction string
}

// ICE reports whether the description carries ICE: credentials at session
// level or on every usable m-line, or any candidate line.
func (s *Session) ICE() bool {
	if s == nil {
		return false
	}
	for _, m := range s.Media {
		if len(m.RawCandidates) > 0 {
			return true
		}
		if m.Port != 0 && m.Ufrag != "" && m.Pwd != "" {
			return true
		}
	}
	return s.Ufrag != "" && s.Pwd != ""
}

// Codec is one RTP payload format: a=rtpmap:<PT> <Name>/<ClockRate>[/<Channels>]
// plus an optional a=fmtp.
type Codec struct {
	// PayloadType is the RTP payload type, 0-127 (96+ dynamic).
	PayloadType uint8
	// Name is the encoding name, e.g. "PCMU", "opus", "telephone-event".
	Name string
	// ClockRate is the RTP clock rate in Hz.
	ClockRate uint32
	// Channels is the audio channel count; 0 or 1 writes none.
	Channels uint16
	// Fmtp is the a=fmtp parameter string without the payload type.
	Fmtp string
}

// DefaultCodecs is the audio codec list BuildOffer uses when
// OfferParams.Codecs is empty: PCMU, PCMA and telephone-event (RFC 4733).
func DefaultCodecs() []Codec {
	return []Codec{
		{PayloadType: 0, Name: "PCMU", ClockRate: 8000},
		{PayloadType: 8, Name: "PCMA", ClockRate: 8000},
		{PayloadType: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"},
	}
}
