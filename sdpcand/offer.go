package sdpcand

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// errNoDefault is returned by BuildOffer when it has nothing to put in c=.
var errNoDefault = errors.New("sdpcand: offer: no default address: set OfferParams.Default or pass a usable candidate")

// OfferParams is what BuildOffer writes.
type OfferParams struct {
	// SessionID is the o= session id and version; 0 picks one from the clock.
	SessionID uint64
	// SessionVersion, when not 0, is the o= version instead of SessionID: a
	// later description of the same session keeps the id and increments the
	// version (RFC 3264 §8).
	SessionVersion uint64
	// Username is the o= user name; "" writes "-".
	Username string
	// Ufrag and Pwd are the ICE credentials (RFC 8839 §5.4). Both empty
	// writes an offer without ICE for legacy peers.
	Ufrag, Pwd string
	// Candidates are written as a=candidate lines, both families.
	Candidates []ice.Candidate
	// Default is the c=/m= address; the zero value picks ChooseDefault.
	Default netip.AddrPort
	// Codecs are the audio formats; empty means DefaultCodecs().
	Codecs []Codec
	// Hold writes the unspecified address of Default's family in c=
	// (0.0.0.0, or for IPv6 the name InvalidHost per RFC 6157 §4.1 rule 1,
	// never "::") and, unless Direction says otherwise, a=sendonly
	// (RFC 3264 §8.4).
	Hold bool
	// Direction is "sendrecv" (default), "sendonly", "recvonly" or "inactive".
	Direction string
	// NoEndOfCandidates leaves out a=end-of-candidates, for an offer sent
	// while trickle gathering still runs (RFC 8840).
	NoEndOfCandidates bool
}

// BuildOffer writes an SDP offer with one audio m-line (RTP/AVP): c= and m=
// carry p.Default (or ChooseDefault's pick), followed by the rtpmaps,
// a=rtcp-mux, the direction and, when credentials are given, the ICE
// attributes with a candidate line per candidate of either family.
func BuildOffer(p OfferParams) ([]byte, error) {
	if err := checkDirection(p.Direction); err != nil {
		return nil, fmt.Errorf("sdpcand: offer: %w", err)
	}
	codecs := p.Codecs
	if len(codecs) == 0 {
		codecs = DefaultCodecs()
	}
	if err := checkCodecs(codecs); err != nil {
		return nil, fmt.Errorf("sdpcand: offer: Codecs: %w", err)
	}
	useICE := p.Ufrag != "" || p.Pwd != ""
	if useICE {
		if err := checkCredentials(p.Ufrag, p.Pwd); err != nil {
			return nil, fmt.Errorf("sdpcand: offer: %w", err)
		}
	}

	def := p.Default
	if !def.IsValid() {
		var ok bool
		if def, ok = ChooseDefault(p.Candidates); !ok && !p.Hold {
			return nil, errNoDefault
		}
	}
	family := netaddr.FamilyOf(def.Addr().Unmap())
	if def.IsValid() && def.Addr().Is4In6() {
		def = netip.AddrPortFrom(def.Addr().Unmap(), def.Port())
	}
	if !def.Addr().IsValid() {
		family = netaddr.IPv4
	}
	netType, address := connectionFor(family, def.Addr(), p.Hold || def.Addr().IsUnspecified())
	port := int(def.Port())
	if port == 0 {
		// Port 0 would reject the stream; 9 (discard) is the customary
		// placeholder when no real port exists (RFC 8840 §4.1.1.1).
		port = 9
	}

	desc := newDescription(p.SessionID, p.SessionVersion, p.Username, netType, address)
	formats := make([]string, len(codecs))
	for i, c := range codecs {
		formats[i] = strconv.Itoa(int(c.PayloadType))
	}
	md := newMedia("audio", port, []string{"RTP", "AVP"}, formats, netType, address)
	addCodecs(md, codecs)
	md.WithPropertyAttribute("rtcp-mux")
	dir := p.Direction
	if dir == "" {
		dir = "sendrecv"
		if p.Hold {
			dir = "sendonly"
		}
	}
	md.WithPropertyAttribute(dir)
	if useICE {
		addICE(md, p.Ufrag, p.Pwd, p.Candidates, !p.NoEndOfCandidates)
	}
	desc.MediaDescriptions = append(desc.MediaDescriptions, md)
	out, err := desc.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sdpcand: offer: marshal: %w", err)
	}
	return out, nil
}
