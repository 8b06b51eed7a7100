// Package sipcheck gives a SIP message the verdict a conforming parser
// must reach (accept or reject, with the reason), the way the RFC 5118
// torture tests state it. It reads the start line, the header fields
// (unfolded, compact forms understood) and the body; every host goes
// through sipaddr and an SDP body through sdpcand. It is a message reader
// for that verdict, not a SIP stack: no transactions, no dialogs.
package sipcheck

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/isthmusrelay/isthmus/sdpcand"
	"github.com/isthmusrelay/isthmus/sipaddr"
)

// MaxSize bounds the messages Check reads (a SIP message over UDP fits in
// 64 KiB; the bound only keeps hostile input cheap).
const MaxSize = 1 << 20

// Result is the verdict on one message and what was read to reach it.
type Result struct {
	// Accept is the verdict. When false, Reason says why a conforming
	// parser must reject the message (a UAS answers 400 Bad Request).
	Accept bool
	Reason string
	// Tolerated lists what was accepted although RFC 3261's grammar does
	// not derive it, because RFC 5118 (or RFC 6874) asks receivers to.
	Tolerated []string
	// Quirks is the union of the quirks behind Tolerated.
	Quirks sipaddr.Quirk
	// Notes are remarks that do not change the verdict: LF line ends,
	// folded lines, an off Content-Length, a port-like last IPv6 group.
	Notes []string

	// StartLine is the request or status line as written.
	StartLine string
	// Request is true for a request; Method and RequestURI are then set.
	Request    bool
	Method     string
	RequestURI string
	// URI is RequestURI parsed when it is a sip: or sips: URI.
	URI sipaddr.URI
	// Status is the status code of a response.
	Status int

	// Vias are all via-parms in order; Vias[0] is the top one.
	Vias     []sipaddr.Via
	From, To sipaddr.Address
	Contacts []sipaddr.Address

	// ContentType is the media type of a non-empty body ("" when none).
	ContentType string
	// BodyLen is the length of the body as read (to the end of the input).
	BodyLen int
	// SDP is the parsed body when ContentType is application/sdp.
	SDP *sdpcand.Session
}

// header is one header field, unfolded.
type header struct {
	name  string // canonical name, e.g. "Via" for "v" or "VIA"
	value string // value with folds joined by one space, LWS trimmed
	line  int    // line number where the field starts (from 1)
}

// folded records a continuation line, to explain a missing header.
type folded struct {
	line int
	into string // header it continued
	text string // the line without its leading white space
}

// reject ends the check with a reason.
type reject struct{ reason string }

func (r *reject) Error() string { return r.reason }

func rejectf(format string, args ...any) error {
	return &reject{reason: fmt.Sprintf(format, args...)}
}

// Check reads one SIP message and returns the verdict. It never panics on
// any input; everything it cannot read is a reject with a reason.
func Check(data []byte) *Result {
	r := &Result{}
	if err := r.check(data); err != nil {
		r.Accept = false
		r.Reason = err.Error()
		return r
	}
	r.Accept = true
	return r
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *Result) check(data []byte) error {
	if len(data) == 0 {
		return rejectf("empty input: no start line")
	}
	if len(data) > MaxSize {
		return rejectf("%d bytes, more than %d", len(data), MaxSize)
	}

	lines, body, lfOnly, terminated, err := splitMessage(data)
	if err != nil {
		return err
	}
	if lfOnly > 0 {
		r.note("%d header-section line(s) end in LF, not CRLF (RFC 3261 §7); read anyway", lfOnly)
	}
	skipped := 0
	for skipped < len(lines) && lines[skipped] == "" {
		skipped++
	}
	if skipped == len(lines) {
		return rejectf("no start line: the input holds only empty lines")
	}
	if skipped > 0 {
		r.note("%d empty line(s) before the start line ignored (RFC 3261 §7.5)", skipped)
	}
	if !terminated {
		r.note("no empty line ends the header section: the message ends after its headers")
	}
	if err := r.readStartLine(lines[skipped]); err != nil {
		return err
	}
	headers, folds, err := unfold(lines[skipped+1:], skipped+2)
	if err != nil {
		return err
	}
	for _, f := range folds {
		r.note("line %d starts with white space: it continues the %s header (RFC 3261 §7.3.1)", f.line, f.into)
	}
	if err := r.readHeaders(headers, folds); err != nil {
		return err
	}
	return r.readBody(headers, body)
}

// splitMessage cuts data into the start line and header lines (line ends
// removed) and the body after the first empty line. lfOnly counts header
// lines ending in a bare LF; terminated says whether an empty line was seen.
func splitMessage(data []byte) (lines []string, body []byte, lfOnly int, terminated bool, err error) {
	rest := data
	started := false
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		var line []byte
		if i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i], rest[i+1:]
			if bytes.HasSuffix(line, []byte("\r")) {
				line = line[:len(line)-1]
			} else {
				lfOnly++
			}
		}
		n := len(lines) + 1
		if j := bytes.IndexFunc(line, func(r rune) bool { return r != '\t' && (r < ' ' || r == 0x7f) }); j >= 0 {
			return nil, nil, 0, false, rejectf("line %d: control character %q in the header section", n, line[j])
		}
		if len(line) == 0 && started {
			return lines, rest, lfOnly, true, nil
		}
		if len(line) > 0 {
			started = true
		}
		lines = append(lines, string(line))
	}
	return lines, nil, lfOnly, false, nil
}

// readStartLine reads a Request-Line or a Status-Line (RFC 3261 §7.1, §7.2).
func (r *Result) readStartLine(line string) error {
	r.StartLine = line
	if len(line) >= 4 && strings.EqualFold(line[:4], "SIP/") {
		version, rest, ok := strings.Cut(line, " ")
		code, _, ok2 := strings.Cut(rest, " ")
		if !ok || !ok2 {
			return rejectf("status line %q: want \"SIP/2.0 SP Status-Code SP Reason-Phrase\" (RFC 3261 §7.2)", line)
		}
		if !strings.EqualFold(version, "SIP/2.0") {
			return rejectf("status line: version %q is not SIP/2.0 (RFC 3261 §7.1)", version)
		}
		n, err := strconv.Atoi(code)
		if err != nil || len(code) != 3 || n < 100 || n > 699 {
			return rejectf("status line: status code %q is not 100-699 (RFC 3261 §7.2)", code)
		}
		r.Status = n
		return nil
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return rejectf("request line %q: want \"Method SP Request-URI SP SIP/2.0\", single spaces (RFC 3261 §7.1)", line)
	}
	r.Request, r.Method, r.RequestURI = true, parts[0], parts[1]
	if !isToken(r.Method) {
		return rejectf("request line: method %q is not a token (RFC 3261 §25.1)", r.Method)
	}
	if !strings.EqualFold(parts[2], "SIP/2.0") {
		return rejectf("request line: version %q is not SIP/2.0 (RFC 3261 §7.1; a UAS answers 505)", parts[2])
	}
	u, err := sipaddr.ParseURI(r.RequestURI)
	switch {
	case errors.Is(err, sipaddr.ErrNotSIPURI):
		r.note("Request-URI %s is not a sip: or sips: URI: its host is not checked", r.RequestURI)
	case err != nil:
		return rejectf("%s", describe("Request-URI", err))
	default:
		r.URI = u
		r.noteURI("Request-URI", r.RequestURI, u)
	}
	return nil
}

// unfold turns header lines into fields: a line that starts with SP or
// HTAB continues the previous field (RFC 3261 §7.3.1).
func unfold(lines []string, firstLine int) ([]header, []folded, error) {
	var hs []header
	var folds []folded
	for i, line := range lines {
		n := firstLine + i
		if line[0] == ' ' || line[0] == '\t' {
			if len(hs) == 0 {
				return nil, nil, rejectf("line %d starts with white space right after the start line: there is no header to continue (RFC 3261 §7.3.1)", n)
			}
			text := strings.Trim(line, " \t")
			last := &hs[len(hs)-1]
			last.value = strings.TrimRight(last.value+" "+text, " \t")
			folds = append(folds, folded{line: n, into: last.name, text: text})
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil, nil, rejectf("line %d: header line without ':' (%q)", n, clip(line))
		}
		name := strings.TrimRight(line[:colon], " \t")
		if !isToken(name) {
			return nil, nil, rejectf("line %d: header name %q is not a token", n, clip(name))
		}
		hs = append(hs, header{name: canonical(name), value: strings.Trim(line[colon+1:], " \t"), line: n})
	}
	return hs, folds, nil
}

// compact maps RFC 3261 §7.3.3 compact forms (and later RFCs' ones) to
// the full names.
var compact = map[string]string{
	"i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
	"c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
	"v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
	"x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact", "d": "Request-Disposition",
	"y": "Identity",
}

// known holds the canonical spelling of the headers Check reads.
var known = map[string]string{}

func init() {
	for _, n := range []string{"Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards",
		"Content-Length", "Content-Type", "Route", "Record-Route"} {
		known[strings.ToLower(n)] = n
	}
}

func canonical(name string) string {
	l := strings.ToLower(name)
	if full, ok := compact[l]; ok {
		return full
	}
	if k, ok := known[l]; ok {
		return k
	}
	return name
}

// single are the headers a message may carry once (RFC 3261 §7.3.1: only
// comma-list headers may repeat).
var single = []string{"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"}

// required are the headers every request and response carries (RFC 3261
// §8.1.1, §8.2.6.2); without them a UAS answers 400 (RFC 4475 §3.1.2.18).
var required = []string{"Via", "From", "To", "Call-ID", "CSeq"}

func (r *Result) readHeaders(hs []header, folds []folded) error {
	byName := map[string][]header{}
	for _, h := range hs {
		byName[h.name] = append(byName[h.name], h)
	}
	for _, name := range single {
		if l := byName[name]; len(l) > 1 {
			return rejectf("%s appears %d times (lines %d and %d); it takes one value (RFC 3261 §7.3.1)", name, len(l), l[0].line, l[1].line)
		}
	}
	for _, name := range required {
		if len(byName[name]) == 0 {
			return rejectf("no %s header (RFC 3261 §8.1.1)%s", name, foldHint(name, folds))
		}
	}

	for _, h := range byName["Via"] {
		vias, err := sipaddr.ParseViaList(h.value)
		if err != nil {
			return rejectf("%s", describe(fmt.Sprintf("Via (line %d)", h.line), err))
		}
		for _, v := range vias {
			r.noteHost(fmt.Sprintf("Via (line %d) sent-by", h.line), h.value, v.SentBy.Host, v.SentBy.Port, false)
			if v.Received.IsValid() {
				r.noteHost(fmt.Sprintf("Via (line %d) received", h.line), h.value, v.Received, 0, true)
			}
		}
		r.Vias = append(r.Vias, vias...)
	}
	var err error
	if r.From, err = r.readAddress("From", byName["From"][0]); err != nil {
		return err
	}
	if r.To, err = r.readAddress("To", byName["To"][0]); err != nil {
		return err
	}
	for _, name := range []string{"Contact", "Route", "Record-Route"} {
		for _, h := range byName[name] {
			parts, err := sipaddr.SplitList(h.value)
			if err != nil {
				return rejectf("%s", describe(name, err))
			}
			for _, p := range parts {
				a, err := sipaddr.ParseAddress(p)
				if err != nil {
					return rejectf("%s", describe(name, err))
				}
				if a.Wildcard && (name != "Contact" || len(parts) > 1) {
					return rejectf("%s: \"*\" is only a REGISTER Contact on its own (RFC 3261 §10.2.2)", name)
				}
				if a.IsSIP() {
					r.noteURI(name, a.RawURI, a.URI)
				}
				if name == "Contact" {
					r.Contacts = append(r.Contacts, a)
				}
			}
		}
	}

	if cid := byName["Call-ID"][0].value; cid == "" || strings.ContainsAny(cid, " \t") {
		return rejectf("Call-ID %q is not word[@word] (RFC 3261 §25.1)", cid)
	}
	if err := r.readCSeq(byName["CSeq"][0].value); err != nil {
		return err
	}
	if mf := byName["Max-Forwards"]; len(mf) == 1 {
		if n, err := strconv.Atoi(mf[0].value); err != nil || n < 0 || n > 255 || !isDigits(mf[0].value) {
			return rejectf("Max-Forwards %q is not 0-255 (RFC 3261 §20.22)", mf[0].value)
		}
	} else if r.Request {
		r.note("no Max-Forwards header: RFC 3261 §8.1.1 wants one; a proxy adds 70 (§16.6 step 3)")
	}
	return nil
}

// foldHint explains a missing header that a folded line swallowed, as in
// the RFC 5118 draft's reg-param message.
func foldHint(name string, folds []folded) string {
	for _, f := range folds {
		n, _, ok := strings.Cut(f.text, ":")
		if ok && isToken(strings.TrimRight(n, " \t")) && canonical(strings.TrimRight(n, " \t")) == name {
			return fmt.Sprintf(": line %d %q starts with white space, so RFC 3261 §7.3.1 makes it part of the %s header", f.line, clip(" "+f.text), f.into)
		}
	}
	return ""
}

func (r *Result) readAddress(name string, h header) (sipaddr.Address, error) {
	parts, err := sipaddr.SplitList(h.value)
	if err != nil {
		return sipaddr.Address{}, rejectf("%s", describe(name, err))
	}
	if len(parts) != 1 {
		return sipaddr.Address{}, rejectf("%s holds %d addresses; it takes one (RFC 3261 §20.20, §20.39)", name, len(parts))
	}
	a, err := sipaddr.ParseAddress(parts[0])
	if err != nil {
		return sipaddr.Address{}, rejectf("%s", describe(name, err))
	}
	if a.Wildcard {
		return sipaddr.Address{}, rejectf("%s: \"*\" is not an address", name)
	}
	if a.IsSIP() {
		r.noteURI(name, a.RawURI, a.URI)
	}
	return a, nil
}

func (r *Result) readCSeq(v string) error {
	num, method, ok := strings.Cut(v, " ")
	method = strings.Trim(method, " \t")
	n, err := strconv.ParseUint(num, 10, 32)
	if !ok || err != nil || !isDigits(num) || n >= 1<<31 || !isToken(method) {
		return rejectf("CSeq %q is not \"number method\" with number < 2^31 (RFC 3261 §8.1.1.5)", v)
	}
	if r.Request && method != r.Method {
		return rejectf("CSeq method %s is not the request method %s (RFC 3261 §8.1.1.5)", method, r.Method)
	}
	return nil
}

// readBody checks Content-Length and Content-Type against the body and
// reads an SDP body with sdpcand.
func (r *Result) readBody(hs []header, body []byte) error {
	var clen, ctype *header
	for i := range hs {
		switch hs[i].name {
		case "Content-Length":
			clen = &hs[i]
		case "Content-Type":
			ctype = &hs[i]
		}
	}
	if len(body) > 0 && len(bytes.Trim(body, "\r\n")) == 0 {
		r.note("%d line-end byte(s) after the empty line ignored", len(body))
		body = nil
	}
	r.BodyLen = len(body)
	if clen != nil {
		n, err := strconv.Atoi(clen.value)
		if err != nil || !isDigits(clen.value) {
			return rejectf("Content-Length %q is not a number (RFC 3261 §20.14)", clen.value)
		}
		if n != len(body) {
			r.note("Content-Length says %d but the body has %d bytes; the body is read to the end of the input", n, len(body))
		}
	} else {
		r.note("no Content-Length header: the body runs to the end of the input (RFC 3261 §20.14 allows that on UDP only)")
	}
	if len(body) == 0 {
		return nil
	}
	if ctype == nil {
		return rejectf("a %d-byte body and no Content-Type header (RFC 3261 §20.15)", len(body))
	}
	mt, _, _ := strings.Cut(ctype.value, ";")
	r.ContentType = strings.ToLower(strings.Trim(mt, " \t"))
	if r.ContentType != "application/sdp" {
		r.note("body of type %s not checked", r.ContentType)
		return nil
	}
	s, err := sdpcand.Parse(body)
	if err != nil {
		return rejectf("SDP body: %v", err)
	}
	for _, w := range s.Warnings {
		r.note("SDP: %s", w)
	}
	if len(s.Media) == 0 {
		r.note("SDP body has no m= line")
	}
	r.SDP = s
	return nil
}

// noteURI records what is worth saying about a URI's hosts.
func (r *Result) noteURI(where, raw string, u sipaddr.URI) {
	r.noteHost(where+" host", raw, u.HostPort.Host, u.HostPort.Port, false)
	if h, ok := u.MAddr(); ok {
		r.noteHost(where+" maddr", raw, h, 0, false)
	}
}

// noteHost records tolerated quirks of a host and, for an IPv6 reference
// without a port whose last group looks like one, the RFC 5118 §4.3 remark.
// raw is the text the host was read from, quoted in the remark.
func (r *Result) noteHost(where, raw string, h sipaddr.Host, port uint16, received bool) {
	if q := h.Quirks(); q != 0 {
		text := h.String()
		if received {
			text = h.Addr().String()
		}
		r.Quirks |= q
		r.Tolerated = append(r.Tolerated, fmt.Sprintf("%s in %q: %s, read as %s", where, clip(raw), q, text))
	}
	if received || port != 0 || h.Kind() != sipaddr.KindIPv6 || h.Addr().Is4In6() {
		return
	}
	text := h.Addr().WithZone("").String()
	i := strings.LastIndexByte(text, ':')
	if last := text[i+1:]; len(last) == 4 && isDigits(last) && strings.Contains(text, "::") {
		prefix := text[:i]
		if strings.HasSuffix(prefix, ":") {
			prefix += ":"
		}
		r.note("%s %s has no port: %s is the last group of the address, not a port (RFC 5118 §4.3: a port goes after ']', as in [%s]:%s)",
			where, h, last, prefix, last)
	}
}

// describe turns a sipaddr error into a verdict reason that names the
// header part, the input and, for the cases RFC 5118 discusses, the rule.
func describe(where string, err error) string {
	var e *sipaddr.Error
	if !errors.As(err, &e) {
		return where + ": " + err.Error()
	}
	part := ""
	switch e.Part {
	case "URI host", "hostport", "host":
		part = " host"
	case "Via sent-by":
		part = " sent-by"
	case "received", "maddr":
		part = " " + e.Part
	}
	s := fmt.Sprintf("%s%s: %s (%q)", where, part, e.Reason(), e.Input)
	switch {
	case errors.Is(err, sipaddr.ErrUnbracketedIPv6):
		s += "; RFC 3261 §25.1 writes IPv6 as [address], RFC 5118 §4.2: answer 400 Bad Request"
	case errors.Is(err, sipaddr.ErrBadIPv6), errors.Is(err, sipaddr.ErrAfterBracket), errors.Is(err, sipaddr.ErrIPv4InBrackets):
		s += "; RFC 3986 §3.2.2 IP-literal"
	}
	return s
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isToken is RFC 3261 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// clip shortens s for a reason line.
func clip(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
