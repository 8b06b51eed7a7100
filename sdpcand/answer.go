package sdpcand

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// AnswerParams is what BuildAnswer writes.
type AnswerParams struct {
	// SessionID is the o= session id and version; 0 picks one from the clock.
	SessionID uint64
	// SessionVersion, when not 0, is the o= version instead of SessionID: a
	// later description of the same session keeps the id and increments the
	// version (RFC 3264 §8).
	SessionVersion uint64
	// Username is the o= user name; "" writes "-".
	Username string
	// Ufrag and Pwd are the answerer's ICE credentials. They are written
	// only when the offer does ICE; empty answers without ICE.
	Ufrag, Pwd string
	// Candidates are written as a=candidate lines on the accepted m-line.
	Candidates []ice.Candidate
	// Addrs is the agent's default address per family: the accepted
	// m-line's c=/m= address is Addrs[family of the offer's c= line]
	// (DefaultAddrs builds it from candidates).
	Addrs map[netaddr.Family]netip.AddrPort
	// Codecs are the audio formats the answerer supports; empty means
	// DefaultCodecs(). Matching is by name and clock rate; the answer keeps
	// the offer's payload type numbers.
	Codecs []Codec
	// Direction is the answerer's wish ("" = sendrecv), combined with the
	// offer's direction per RFC 3264 §6.1.
	Direction string
	// NoEndOfCandidates leaves out a=end-of-candidates (trickle still running).
	NoEndOfCandidates bool
	// RTCP is the answerer's RTCP address per family. When the accepted
	// m-line of the offer has no a=rtcp-mux, the answer carries
	// "a=rtcp:PORT IN IP4|IP6 ADDR" (RFC 3605 §2.1) with RTCP[family of the
	// m-line], so the peer's RTCP reaches a port we hold rather than the
	// RTP port plus one. Ignored when the offer has rtcp-mux (RFC 5761 §5.1.1:
	// then both flow on the RTP port).
	RTCP map[netaddr.Family]netip.AddrPort
}

// BuildAnswer writes the answer to offer (RFC 3264). It keeps the offer's
// m-lines in number and order and accepts the first audio m-line that has a
// codec in common and whose family the agent has an address of; every other
// m-line is rejected with port 0.
//
// RFC 6157 §4.1 rule 2: each answer m-line's c= line uses the network type of
// the offer's applicable c= line (the session-level one where the media has
// none). When no audio m-line can be answered because the agent has no
// address of the offered family, the error wraps ErrNoAddressOfFamily; a SIP
// stack answers 488 Not Acceptable Here. The family is never switched.
// When no m-line is RTP audio with a codec in common, the error wraps
// ErrNoAcceptableMedia (also a 488).
func BuildAnswer(offer *Session, p AnswerParams) ([]byte, error) {
	if offer == nil || len(offer.Media) == 0 {
		return nil, errors.New("sdpcand: answer: the offer has no m-line")
	}
	if err := checkDirection(p.Direction); err != nil {
		return nil, fmt.Errorf("sdpcand: answer: %w", err)
	}
	codecs := p.Codecs
	if len(codecs) == 0 {
		codecs = DefaultCodecs()
	}
	if err := checkCodecs(codecs); err != nil {
		return nil, fmt.Errorf("sdpcand: answer: Codecs: %w", err)
	}
	useICE := offer.ICE() && (p.Ufrag != "" || p.Pwd != "")
	if useICE {
		if err := checkCredentials(p.Ufrag, p.Pwd); err != nil {
			return nil, fmt.Errorf("sdpcand: answer: %w", err)
		}
	}

	if err := checkAddrs(p.Addrs); err != nil {
		return nil, err
	}
	accepted, acceptedCodecs, err := selectMedia(offer, p.Addrs, codecs)
	if err != nil {
		return nil, err
	}
	am := offer.Media[accepted]
	originType, originAddr := connectionFor(am.Family, p.Addrs[am.Family].Addr(), false)
	desc := newDescription(p.SessionID, p.SessionVersion, p.Username, originType, originAddr)

	for i, m := range offer.Media {
		if i != accepted {
			desc.MediaDescriptions = append(desc.MediaDescriptions, rejectedMedia(m))
			continue
		}
		ap := p.Addrs[m.Family]
		netType, address := connectionFor(m.Family, ap.Addr(), false)
		formats := make([]string, len(acceptedCodecs))
		for j, c := range acceptedCodecs {
			formats[j] = strconv.Itoa(int(c.PayloadType))
		}
		md := newMedia(m.Kind, int(ap.Port()), splitProto(m.Proto), formats, netType, address)
		addCodecs(md, acceptedCodecs)
		if m.RTCPMux {
			md.WithPropertyAttribute("rtcp-mux")
		} else if rp, ok := p.RTCP[m.Family]; ok && rp.IsValid() && rp.Port() != 0 {
			rt, raddr := connectionFor(m.Family, rp.Addr(), false)
			md.WithValueAttribute("rtcp", fmt.Sprintf("%d IN %s %s", rp.Port(), rt, raddr))
		}
		md.WithPropertyAttribute(answerDirection(m.Direction, p.Direction))
		if useICE {
			addICE(md, p.Ufrag, p.Pwd, p.Candidates, !p.NoEndOfCandidates)
		}
		desc.MediaDescriptions = append(desc.MediaDescriptions, md)
	}
	out, err := desc.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sdpcand: answer: marshal: %w", err)
	}
	return out, nil
}

// AcceptedMedia returns the index of the offer's m-line BuildAnswer accepts
// with the same parameters (the others are answered with port 0), or
// BuildAnswer's error. An agent uses it to know which remote m-line its
// media flows on.
func AcceptedMedia(offer *Session, p AnswerParams) (int, error) {
	if offer == nil || len(offer.Media) == 0 {
		return -1, errors.New("sdpcand: answer: the offer has no m-line")
	}
	codecs := p.Codecs
	if len(codecs) == 0 {
		codecs = DefaultCodecs()
	}
	i, _, err := selectMedia(offer, p.Addrs, codecs)
	return i, err
}

// checkAddrs rejects AnswerParams.Addrs entries that would write a broken
// m-line: port 0 (which means "rejected") or an address of the other family.
func checkAddrs(addrs map[netaddr.Family]netip.AddrPort) error {
	for f, ap := range addrs {
		if !ap.IsValid() || ap.Port() == 0 {
			return fmt.Errorf("sdpcand: answer: Addrs[%v] = %v: want an address with a non-zero port", f, ap)
		}
		if got := netaddr.FamilyOf(ap.Addr().Unmap()); got != f {
			return fmt.Errorf("sdpcand: answer: Addrs[%v] = %v is an %v address", f, ap, got)
		}
	}
	return nil
}

// selectMedia picks the first RTP audio m-line with a codec in common and
// an address of its family (RFC 6157 §4.1 rule 2), returning the codecs to
// answer with.
func selectMedia(offer *Session, addrs map[netaddr.Family]netip.AddrPort, codecs []Codec) (int, []Codec, error) {
	var missing []string
	for i := range offer.Media {
		m := &offer.Media[i]
		if m.Kind != "audio" || m.Port == 0 || !strings.HasPrefix(m.Proto, "RTP/") {
			continue
		}
		common := matchCodecs(m, codecs)
		if common == nil {
			continue
		}
		if ap, ok := addrs[m.Family]; !ok || !ap.IsValid() {
			missing = append(missing, fmt.Sprintf("m-line %d wants IN %s", i, m.NetType))
			continue
		}
		return i, common, nil
	}
	if len(missing) > 0 {
		return -1, nil, fmt.Errorf("sdpcand: answer: %s (RFC 6157 4.1 rule 2): %w", strings.Join(missing, ", "), ErrNoAddressOfFamily)
	}
	return -1, nil, fmt.Errorf("sdpcand: answer: %d m-line(s), none is RTP audio with a codec in common: %w", len(offer.Media), ErrNoAcceptableMedia)
}

// rejectedMedia answers an m-line with port 0 (RFC 3264 §6): same media,
// proto and formats, and a c= line of the offer's network type (rule 2)
// with the unspecified address, which for IPv6 is the rule-1 name.
func rejectedMedia(m Media) *sdp.MediaDescription {
	family := m.Family
	if family == 0 {
		family = netaddr.IPv4
	}
	netType, address := connectionFor(family, netip.Addr{}, true)
	formats := m.Formats
	if len(formats) == 0 {
		formats = []string{"0"}
	}
	proto := splitProto(m.Proto)
	if len(proto) == 0 {
		proto = []string{"RTP", "AVP"}
	}
	return newMedia(m.Kind, 0, proto, formats, netType, address)
}

func splitProto(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// matchCodecs returns ours among the offer's formats, in the offer's order
// and with the offer's payload types; nil when no codec other than
// telephone-event or comfort noise is in common.
func matchCodecs(m *Media, ours []Codec) []Codec {
	resolved := make(map[string]Codec, len(m.Codecs))
	for _, c := range m.Codecs {
		resolved[strconv.Itoa(int(c.PayloadType))] = c
	}
	var out []Codec
	voice := false
	for _, f := range m.Formats {
		theirs, known := resolved[f]
		for _, c := range ours {
			var match bool
			if known {
				match = strings.EqualFold(c.Name, theirs.Name) && c.ClockRate == theirs.ClockRate &&
					(theirs.Channels <= 1 && c.Channels <= 1 || theirs.Channels == c.Channels)
			} else {
				// A static payload type without an rtpmap (RFC 3551 table).
				match = c.PayloadType < 96 && strconv.Itoa(int(c.PayloadType)) == f
			}
			if !match {
				continue
			}
			if known {
				c.PayloadType = theirs.PayloadType
			}
			out = append(out, c)
			if !strings.EqualFold(c.Name, "telephone-event") && !strings.EqualFold(c.Name, "CN") {
				voice = true
			}
			break
		}
	}
	if !voice {
		return nil
	}
	return out
}

// answerDirection combines the offer's direction with the answerer's wish
// (RFC 3264 §6.1): the answer sends only if the offer receives, and
// receives only if the offer sends.
func answerDirection(offered, wanted string) string {
	oSend, oRecv := offered != "recvonly" && offered != "inactive", offered != "sendonly" && offered != "inactive"
	wSend, wRecv := wanted != "recvonly" && wanted != "inactive", wanted != "sendonly" && wanted != "inactive"
	send, recv := wSend && oRecv, wRecv && oSend
	switch {
	case send && recv:
		return "sendrecv"
	case send:
		return "sendonly"
	case recv:
		return "recvonly"
	}
	return "inactive"
}
