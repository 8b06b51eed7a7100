package sdpcand

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// MaxSize bounds the descriptions Parse reads. SIP over UDP keeps SDP bodies
// to a few kilobytes; the limit only stops a hostile body from costing time.
const MaxSize = 1 << 20

// Parse reads an SDP description, tolerating what real phones send and
// pion/sdp stumbles over: LF-only line ends, a missing final line end, and
// trailing white space (which makes pion/sdp miss an rtpmap). It rejects what
// would make the description ambiguous: two c= lines in one section, a c=
// address that does not belong to its network type, an m-line without any
// applicable c= line. Every error wraps ErrInvalidSDP.
//
// a=candidate lines that pion/ice cannot parse are kept in
// Media.RawCandidates with the reason in Media.CandidateErrors; they never
// fail the description (RFC 8839 tells agents to ignore what they cannot use).
func Parse(b []byte) (*Session, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidSDP, len(b), MaxSize)
	}
	text, warnings := normalize(b)
	more, err := prescan(text)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, more...)

	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}

	s := &Session{
		Origin:   desc.Origin.String(),
		Warnings: warnings,
	}
	s.Ufrag, _ = desc.Attribute("ice-ufrag")
	s.Pwd, _ = desc.Attribute("ice-pwd")
	_, s.ICELite = desc.Attribute("ice-lite")

	var session connection
	if ci := desc.ConnectionInformation; ci != nil {
		c, err := parseConnection(ci)
		if err != nil {
			return nil, fmt.Errorf("%w: session c= line: %w", ErrInvalidSDP, err)
		}
		session = c
		s.NetType, s.Family, s.Address, s.Addr, s.Unspecified = c.netType, c.family, c.address, c.addr, c.unspecified
		s.Warnings = append(s.Warnings, c.warnings...)
	}
	sessionDirection := directionOf(desc.Attributes)

	for i, md := range desc.MediaDescriptions {
		m, err := readMedia(i, md, session, sessionDirection, s)
		if err != nil {
			return nil, fmt.Errorf("%w: m-line %d (%s): %w", ErrInvalidSDP, i, md.MediaName.Media, err)
		}
		s.Media = append(s.Media, m)
	}
	return s, nil
}

// readMedia turns one pion media description into a Media, applying the
// session-level c= line and ICE credentials where the media has none.
func readMedia(i int, md *sdp.MediaDescription, session connection, sessionDirection string, s *Session) (Media, error) {
	m := Media{
		Index:   i,
		Kind:    md.MediaName.Media,
		Port:    md.MediaName.Port.Value,
		Proto:   strings.Join(md.MediaName.Protos, "/"),
		Formats: append([]string(nil), md.MediaName.Formats...),
	}
	if md.MediaName.Port.Range != nil {
		m.PortCount = *md.MediaName.Port.Range
	}

	conn := session
	if ci := md.ConnectionInformation; ci != nil {
		c, err := parseConnection(ci)
		if err != nil {
			return m, fmt.Errorf("c= line: %w", err)
		}
		conn = c
		s.Warnings = append(s.Warnings, c.warnings...)
	} else {
		m.Inherited = session.netType != ""
	}
	// RFC 4566 §5.7: every media needs an applicable c= line. A rejected
	// stream (port 0) is let through: it carries no media anyway.
	if conn.netType == "" && m.Port != 0 {
		return m, ErrNoConnection
	}
	m.NetType, m.Family, m.Address, m.Addr = conn.netType, conn.family, conn.address, conn.addr
	m.TTL, m.AddrCount, m.Unspecified = conn.ttl, conn.count, conn.unspecified

	m.Ufrag, m.Pwd = s.Ufrag, s.Pwd
	if v, ok := md.Attribute("ice-ufrag"); ok {
		m.Ufrag = v
	}
	if v, ok := md.Attribute("ice-pwd"); ok {
		m.Pwd = v
	}
	_, m.RTCPMux = md.Attribute("rtcp-mux")
	_, m.EndOfCandidates = md.Attribute("end-of-candidates")
	m.Direction = directionOf(md.Attributes)
	if m.Direction == "" {
		m.Direction = sessionDirection
	}
	if m.Direction == "" {
		m.Direction = "sendrecv"
	}

	for _, a := range md.Attributes {
		if a.Key != "candidate" {
			continue
		}
		m.RawCandidates = append(m.RawCandidates, a.Value)
		c, err := ice.UnmarshalCandidate(a.Value)
		if err != nil {
			err = fmt.Errorf("a=candidate:%s: %w", a.Value, err)
			m.CandidateErrors = append(m.CandidateErrors, err)
			s.Warnings = append(s.Warnings, fmt.Sprintf("m-line %d: ignored %v", i, err))
			continue
		}
		m.Candidates = append(m.Candidates, c)
	}

	m.Codecs = mediaCodecs(md)
	return m, nil
}

// mediaCodecs resolves the m-line's payload types with pion/sdp's codec
// map. pion merges rtpmaps of all m-lines into one map, so each media is
// looked up in a description of its own: payload type 107 may be H263 in
// one m-line and something else in the next.
func mediaCodecs(md *sdp.MediaDescription) []Codec {
	one := sdp.SessionDescription{MediaDescriptions: []*sdp.MediaDescription{md}}
	byPT := one.GetCodecMap()
	var out []Codec
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			continue
		}
		c, ok := byPT[uint8(pt)]
		if !ok {
			continue
		}
		codec := Codec{PayloadType: c.PayloadType, Name: c.Name, ClockRate: c.ClockRate, Fmtp: c.Fmtp}
		if ch, err := strconv.ParseUint(c.EncodingParameters, 10, 16); err == nil {
			codec.Channels = uint16(ch)
		}
		out = append(out, codec)
	}
	return out
}

// directionOf returns the last direction attribute among attrs, "" if none.
func directionOf(attrs []sdp.Attribute) string {
	dir := ""
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			dir = a.Key
		}
	}
	return dir
}

// normalize rewrites the description with CRLF line ends, a final CRLF, no
// blank lines and no trailing white space, which is the form pion/sdp reads
// reliably. pion/sdp's line reader returns io.EOF on a last line without a
// line end, and its rtpmap parser splits on single spaces, so
// "a=rtpmap:107 H263-1998/90000 " yields no codec at all.
func normalize(b []byte) (string, []string) {
	var warnings []string
	crlf := bytes.Count(b, []byte("\r\n"))
	// A lone CR is a line end to pion/sdp as well; make it one here too so
	// prescan sees the same lines pion does.
	b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
	var out strings.Builder
	out.Grow(len(b) + len(b)/16 + 2)
	lines := bytes.Split(b, []byte("\n"))
	ends := len(lines) - 1 // line ends in the input
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	} else if len(b) > 0 {
		warnings = append(warnings, "no line end after the last line")
	}
	trailing, blank := 0, 0
	for _, line := range lines {
		trimmed := bytes.TrimRight(line, " \t")
		if len(trimmed) != len(line) {
			trailing++
		}
		if len(trimmed) == 0 {
			blank++
			continue
		}
		out.Write(trimmed)
		out.WriteString("\r\n")
	}
	if n := ends - crlf; n > 0 {
		warnings = append(warnings, fmt.Sprintf("%d line(s) end in LF or CR instead of CRLF", n))
	}
	if trailing > 0 {
		warnings = append(warnings, fmt.Sprintf("%d line(s) with trailing white space", trailing))
	}
	if blank > 0 {
		warnings = append(warnings, fmt.Sprintf("%d blank line(s) skipped", blank))
	}
	return out.String(), warnings
}

// prescan checks what pion/sdp lets through. pion stops without an error
// wherever the text ends, so an empty body or one without o= or s= would
// read as a valid description; RFC 8866 §5 requires v= first, then o= and
// s=. pion also accepts several c= lines in one section and keeps the last,
// which would silently pick one of two addresses; RFC 8866 §5.7 allows at
// most one per section (several multicast addresses are written
// "/<count>", not as extra lines).
func prescan(text string) ([]string, error) {
	var warnings []string
	section, kind, seen := -1, "", 0
	var origin, name, timing bool
	where := func() string {
		if section < 0 {
			return "session level"
		}
		return fmt.Sprintf("m-line %d (%s)", section, kind)
	}
	if !strings.HasPrefix(text, "v=") {
		return nil, fmt.Errorf("%w: the first line must be v=0", ErrInvalidSDP)
	}
	for line := range strings.SplitSeq(text, "\r\n") {
		switch {
		case strings.HasPrefix(line, "m="):
			section++
			kind, _, _ = strings.Cut(line[2:], " ")
			seen = 0
		case strings.HasPrefix(line, "c="):
			seen++
			if seen > 1 {
				return nil, fmt.Errorf("%w: %w: %s: second line %q", ErrInvalidSDP, ErrMultipleConnection, where(), line)
			}
		case section < 0 && strings.HasPrefix(line, "o="):
			origin = true
		case section < 0 && strings.HasPrefix(line, "s="):
			name = true
		case section < 0 && strings.HasPrefix(line, "t="):
			timing = true
		}
	}
	switch {
	case !origin:
		return nil, fmt.Errorf("%w: no o= line", ErrInvalidSDP)
	case !name:
		return nil, fmt.Errorf("%w: no s= line", ErrInvalidSDP)
	case !timing:
		warnings = append(warnings, "no t= line")
	}
	return warnings, nil
}

// connection is one c= line, checked against its network type.
type connection struct {
	netType     string
	family      netaddr.Family
	address     string
	addr        netip.Addr
	ttl, count  int
	unspecified bool
	warnings    []string
}

// parseConnection checks a c= line pion/sdp split into fields. pion keeps
// "<address>/<ttl>/<count>" as one string and never checks the address
// against the network type; both are done here (RFC 4566 §5.7, RFC 8866 §5.7).
func parseConnection(ci *sdp.ConnectionInformation) (connection, error) {
	c := connection{netType: ci.AddressType}
	switch ci.AddressType {
	case "IP4":
		c.family = netaddr.IPv4
	case "IP6":
		c.family = netaddr.IPv6
	default:
		return c, fmt.Errorf("address type %q, want IP4 or IP6", ci.AddressType)
	}
	if ci.Address == nil || ci.Address.Address == "" {
		return c, fmt.Errorf("IN %s without an address", ci.AddressType)
	}
	raw := ci.Address.Address
	parts := strings.Split(raw, "/")
	c.address = parts[0]
	if len(parts) > 3 {
		return c, fmt.Errorf("address %q: too many '/' fields", raw)
	}
	nums := make([]int, 0, 2)
	for _, p := range parts[1:] {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return c, fmt.Errorf("address %q: %q is not a number", raw, p)
		}
		nums = append(nums, n)
	}

	addr, err := netip.ParseAddr(c.address)
	if err != nil {
		if !isDomainName(c.address) {
			return c, fmt.Errorf("address %q is neither an %s address nor a domain name", c.address, ci.AddressType)
		}
		// A name stays a name: the family is the one the c= line claims.
		c.unspecified = isInvalidName(c.address)
		if len(nums) > 0 {
			return c, fmt.Errorf("address %q: '/' fields only follow a multicast address", raw)
		}
		return c, nil
	}
	if addr.Zone() != "" {
		// Zones are local to the sender's host and mean nothing to us.
		c.warnings = append(c.warnings, fmt.Sprintf("c= address %q: zone dropped", c.address))
		addr = addr.WithZone("")
	}
	if got := netaddr.FamilyOf(addr); got != c.family {
		return c, fmt.Errorf("%w: IN %s %s is an %s address", ErrAddressMismatch, ci.AddressType, c.address, got)
	}
	c.addr = addr
	c.unspecified = addr.IsUnspecified()

	switch {
	case c.family == netaddr.IPv4 && addr.IsMulticast():
		// RFC 4566: <base multicast address>/<ttl>[/<number of addresses>].
		if len(nums) == 0 {
			c.warnings = append(c.warnings, fmt.Sprintf("c= IPv4 multicast %s without a TTL", c.address))
		}
		if len(nums) > 0 {
			if nums[0] > 255 {
				return c, fmt.Errorf("address %q: TTL %d above 255", raw, nums[0])
			}
			c.ttl = nums[0]
		}
		if len(nums) > 1 {
			c.count = nums[1]
		}
	case c.family == netaddr.IPv6 && addr.IsMulticast():
		// IPv6 has no TTL: <base multicast address>[/<number of addresses>].
		if len(nums) > 1 {
			return c, fmt.Errorf("address %q: IPv6 multicast takes only a number of addresses", raw)
		}
		if len(nums) == 1 {
			c.count = nums[0]
		}
	case len(nums) > 0:
		return c, fmt.Errorf("address %q: '/' fields only follow a multicast address", raw)
	}
	if c.count == 0 && (len(nums) == 2 || (len(nums) == 1 && c.family == netaddr.IPv6)) {
		return c, fmt.Errorf("address %q: number of addresses must be at least 1", raw)
	}
	return c, nil
}

// isDomainName reports whether s fits RFC 4566's FQDN token (letters,
// digits, '-' and '.', at least 4 characters) and has no empty label.
func isDomainName(s string) bool {
	if len(s) < 4 || len(s) > 255 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		default:
			return false
		}
	}
	return !strings.Contains(strings.TrimSuffix(s, "."), "..") && !strings.HasPrefix(s, ".")
}

// isInvalidName reports whether s lies under the .invalid top-level domain
// (RFC 2606), which RFC 6157 §4.1 rule 1 uses for the IPv6 "unspecified".
func isInvalidName(s string) bool {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	return s == "invalid" || strings.HasSuffix(s, ".invalid")
}
