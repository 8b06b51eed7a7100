package sipaddr

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tortureLines returns the start line's URI and every header value of the
// torture messages, to seed the fuzzers with real and hostile text.
func tortureLines(t testing.TB) (uris, vias, addrs []string) {
	files, _ := filepath.Glob("testdata/torture/*")
	more, _ := filepath.Glob("testdata/rfc5118/*")
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, ".md") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := strings.Cut(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n")
		for i, line := range strings.Split(head, "\n") {
			if i == 0 {
				if f := strings.Fields(line); len(f) == 3 {
					uris = append(uris, f[1])
				}
				continue
			}
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			value = strings.TrimSpace(value)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "via", "v":
				vias = append(vias, value)
			case "to", "from", "contact", "route", "record-route":
				addrs = append(addrs, value)
			}
		}
	}
	return uris, vias, addrs
}

var hostSeeds = []string{
	"[2001:db8::10]", "[2001:db8::10:5070]", "[2001:db8::10]:5070", "2001:db8::10",
	"[::ffff:192.0.2.1]", "[2001:db8:::192.0.2.1]", "[:::192.0.2.1]", "[fe80::1%25eth0]",
	"[fe80::1%eth0]", "[zzzz]", "[2001:db8::1]x", "[", "]", "[]", "192.0.2.1:5060",
	"host.example.com", "example.com.", "a..b", "[192.0.2.1]", "[v1.x]", "[fe80::1%25%41]",
}

// checkHostRoundTrip: what we write is read back as the same host, with
// brackets for every IPv6 address and no quirk.
func checkHostRoundTrip(t *testing.T, h Host) {
	s := h.String()
	if h.Kind() == KindIPv6 && (!strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]")) {
		t.Fatalf("IPv6 host written without brackets: %q", s)
	}
	back, err := ParseHost(s)
	if err != nil {
		t.Fatalf("ParseHost(%q) of our own output: %v", s, err)
	}
	if !back.Equal(h) || back.Quirks() != 0 || back.String() != s {
		t.Fatalf("round trip %q -> %q (quirks %v)", s, back, back.Quirks())
	}
}

func FuzzParseHost(f *testing.F) {
	for _, s := range hostSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHost(s)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error", err)
			}
			return
		}
		checkHostRoundTrip(t, h)
	})
}

func FuzzParseHostPort(f *testing.F) {
	for _, s := range hostSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hp, err := ParseHostPort(s)
		if err != nil {
			return
		}
		checkHostRoundTrip(t, hp.Host)
		back, err := ParseHostPort(hp.String())
		if err != nil || back.Port != hp.Port || !back.Host.Equal(hp.Host) {
			t.Fatalf("round trip %q -> %v, %v", hp, back, err)
		}
	})
}

func FuzzParseURI(f *testing.F) {
	uris, _, _ := tortureLines(f)
	for _, s := range append(uris, "sip:2001:db8::10", "sips:u:p@[2001:db8::1]:5061;maddr=[ff15::1];lr?h=v", "sip:a;b@[::1]") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		checkHostRoundTrip(t, u.HostPort.Host)
		back, err := ParseURI(u.String())
		if err != nil || back.String() != u.String() {
			t.Fatalf("round trip %q -> %q, %v", u, back, err)
		}
	})
}

func FuzzParseVia(f *testing.F) {
	_, vias, _ := tortureLines(f)
	for _, s := range append(vias, "SIP/2.0/UDP [fe80::1%25eth0];received=fe80::2%eth0;rport=1", "SIP / 2.0 / TCP h : 5 ; branch = x") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vias, err := ParseViaList(s)
		if err != nil {
			return
		}
		for _, v := range vias {
			checkHostRoundTrip(t, v.SentBy.Host)
			back, err := ParseVia(v.String())
			if err != nil || back.String() != v.String() {
				t.Fatalf("round trip %q -> %q, %v", v, back, err)
			}
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	_, _, addrs := tortureLines(f)
	for _, s := range append(addrs, `"a\"b" <sip:x@[2001:db8::1]>;q=0.5`, "*", "<tel:+1>") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := SplitList(s)
		if err != nil {
			return
		}
		for _, p := range parts {
			a, err := ParseAddress(p)
			if err != nil {
				continue
			}
			back, err := ParseAddress(a.String())
			if err != nil || back.String() != a.String() {
				t.Fatalf("round trip %q -> %q, %v", a, back, err)
			}
		}
	})
}

func FuzzFromSipgoViaHost(f *testing.F) {
	for _, s := range append(hostSeeds, "2001:db8::9:1", "::ffff:192.0.2.1", "fe80::1%eth0") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := FromSipgoViaHost(s)
		if err != nil {
			return
		}
		checkHostRoundTrip(t, h)
		back, err := FromSipgoViaHost(ToSipgoViaHost(h))
		if err != nil || !back.Equal(h) {
			t.Fatalf("sipgo Via round trip %q -> %v, %v", ToSipgoViaHost(h), back, err)
		}
	})
}
