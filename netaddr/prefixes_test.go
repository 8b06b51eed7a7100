package netaddr

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"192.0.2.0/24", " 2001:db8::/32 ", "127.0.0.1", "::1", "10.1.2.3/8", "::ffff:192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("::ffff:192.0.2.1/128"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ParsePrefixes = %v; want %v", got, want)
	}
	if got, err := ParsePrefixes(nil); err != nil || len(got) != 0 {
		t.Fatalf("ParsePrefixes(nil) = %v, %v; want empty, nil", got, err)
	}
}

func TestParsePrefixesErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []string
		bad  string // must appear in the error
	}{
		{"garbage", []string{"192.0.2.0/24", "not-an-ip"}, `entry 1 "not-an-ip"`},
		{"prefix too long", []string{"192.0.2.0/33"}, `entry 0 "192.0.2.0/33"`},
		{"empty entry", []string{""}, `entry 0 ""`},
		{"zoned address", []string{"fe80::1%eth0"}, `entry 0 "fe80::1%eth0"`},
		{"zoned prefix", []string{"fe80::%eth0/64"}, `entry 0 "fe80::%eth0/64"`},
		{"hostname", []string{"example.org"}, `entry 0 "example.org"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrefixes(tt.in)
			if err == nil {
				t.Fatalf("ParsePrefixes(%q) = %v; want an error", tt.in, got)
			}
			if !errors.Is(err, ErrInvalidPrefix) {
				t.Errorf("error %v does not wrap ErrInvalidPrefix", err)
			}
			if !strings.Contains(err.Error(), tt.bad) {
				t.Errorf("error %q does not name %s", err, tt.bad)
			}
		})
	}
}
