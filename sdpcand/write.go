package sdpcand

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// newDescription starts a description with the lines every offer and answer
// share: v=, o=, s=- and t=0 0. The origin's address is the default
// connection address (or the rule-1 name when that is unspecified).
func newDescription(sessionID, version uint64, username, netType, address string) *sdp.SessionDescription {
	if sessionID == 0 {
		// RFC 8866 §5.2 suggests an NTP-format timestamp; any unique number will do.
		sessionID = uint64(time.Now().UnixNano()) & (1<<62 - 1)
	}
	if version == 0 {
		version = sessionID
	}
	if username == "" {
		username = "-"
	}
	return &sdp.SessionDescription{
		Origin: sdp.Origin{
			Username:       username,
			SessionID:      sessionID,
			SessionVersion: version,
			NetworkType:    "IN",
			AddressType:    netType,
			UnicastAddress: address,
		},
		SessionName:      "-",
		TimeDescriptions: []sdp.TimeDescription{{Timing: sdp.Timing{}}},
	}
}

// connectionFor returns the c= network type and address for a, writing the
// unspecified address of family when hold is set or a is zero. For IPv6 the
// unspecified address is InvalidHost, never "::" (RFC 6157 §4.1 rule 1).
func connectionFor(family netaddr.Family, a netip.Addr, hold bool) (netType, address string) {
	netType = netTypeOf(family)
	switch {
	case !hold && a.IsValid():
		return netType, a.Unmap().WithZone("").String()
	case family == netaddr.IPv6:
		return netType, InvalidHost
	default:
		return netType, "0.0.0.0"
	}
}

// netTypeOf maps a family to its SDP address type; unknown families are
// written as IP4, the type every SDP reader understands.
func netTypeOf(f netaddr.Family) string {
	if f == netaddr.IPv6 {
		return "IP6"
	}
	return "IP4"
}

// newMedia returns an m= section with its own c= line.
func newMedia(kind string, port int, protos, formats []string, netType, address string) *sdp.MediaDescription {
	return &sdp.MediaDescription{
		MediaName: sdp.MediaName{
			Media:   kind,
			Port:    sdp.RangedPort{Value: port},
			Protos:  protos,
			Formats: formats,
		},
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN",
			AddressType: netType,
			Address:     &sdp.Address{Address: address},
		},
	}
}

// addCodecs writes an a=rtpmap (and a=fmtp) per codec. Static payload types
// get an rtpmap too: RFC 3264 allows it and it spares the reader a table.
func addCodecs(md *sdp.MediaDescription, codecs []Codec) {
	for _, c := range codecs {
		pt := strconv.Itoa(int(c.PayloadType))
		v := fmt.Sprintf("%s %s/%d", pt, c.Name, c.ClockRate)
		if c.Channels > 1 {
			v += "/" + strconv.Itoa(int(c.Channels))
		}
		md.WithValueAttribute("rtpmap", v)
		if c.Fmtp != "" {
			md.WithValueAttribute("fmtp", pt+" "+c.Fmtp)
		}
	}
}

// addICE writes the RFC 8839 attributes of one media: credentials, one
// a=candidate per candidate (both families) and, when gathering is over,
// a=end-of-candidates.
func addICE(md *sdp.MediaDescription, ufrag, pwd string, cands []ice.Candidate, end bool) {
	md.WithValueAttribute("ice-ufrag", ufrag)
	md.WithValueAttribute("ice-pwd", pwd)
	for _, c := range cands {
		if c == nil {
			continue
		}
		md.WithValueAttribute("candidate", candidateValue(c))
	}
	if end {
		md.WithPropertyAttribute("end-of-candidates")
	}
}

// checkCredentials validates ICE credentials against RFC 8839 §5.4:
// ufrag 4–256 and pwd 22–256 ice-chars (ALPHA / DIGIT / "+" / "/").
func checkCredentials(ufrag, pwd string) error {
	if err := checkICEChars("ice-ufrag", ufrag, 4); err != nil {
		return err
	}
	return checkICEChars("ice-pwd", pwd, 22)
}

func checkICEChars(field, v string, minLen int) error {
	if len(v) < minLen || len(v) > 256 {
		return fmt.Errorf("%s %q: length %d, want %d to 256 characters", field, v, len(v), minLen)
	}
	for _, r := range v {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '+', r == '/':
		default:
			return fmt.Errorf("%s %q: character %q is not an ice-char", field, v, r)
		}
	}
	return nil
}

// checkDirection accepts "" and the four RFC 3264 direction attributes.
func checkDirection(d string) error {
	switch d {
	case "", "sendrecv", "sendonly", "recvonly", "inactive":
		return nil
	}
	return fmt.Errorf("direction %q: want sendrecv, sendonly, recvonly or inactive", d)
}

// checkCodecs rejects codec lists that would write a broken rtpmap.
func checkCodecs(codecs []Codec) error {
	seen := map[uint8]bool{}
	for _, c := range codecs {
		if c.Name == "" || c.ClockRate == 0 || c.PayloadType > 127 {
			return fmt.Errorf("codec %d %q/%d: want a name, a clock rate and a payload type 0-127", c.PayloadType, c.Name, c.ClockRate)
		}
		if seen[c.PayloadType] {
			return fmt.Errorf("codec %s: payload type %d used twice", c.Name, c.PayloadType)
		}
		seen[c.PayloadType] = true
	}
	return nil
}
