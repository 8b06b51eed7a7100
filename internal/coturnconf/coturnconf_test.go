package coturnconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/relay"
)

func convertFile(t *testing.T, name string) *Result {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Convert(f)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// loadBack writes the YAML and loads it with the relay's own loader.
func loadBack(t *testing.T, res *Result, source string) relay.Config {
	t.Helper()
	y, err := res.YAML(source)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, y, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := relay.LoadConfigFile(p)
	if err != nil {
		t.Fatalf("the relay's loader refuses the import:\n%s\n%v", y, err)
	}
	return cfg
}

func noteFor(res *Result, option string, kind Kind, textHas string) bool {
	for _, n := range res.Notes {
		if n.Option == option && n.Kind == kind && strings.Contains(n.Text, textHas) {
			return true
		}
	}
	return false
}

// Debian's shipped turnserver.conf (coturn 4.6.1-1: everything commented
// out but syslog and three RFC 5780/3489 switches).
func TestDebianTurnserverConf(t *testing.T) {
	res := convertFile(t, "debian-4.6.1-turnserver.conf")
	cfg := loadBack(t, res, "/etc/turnserver.conf")
	if !noteFor(res, "syslog", Changed, "journald") {
		t.Errorf("syslog not reported as changed: %v", res.Notes)
	}
	if !noteFor(res, "response-origin-only-with-rfc5780", Unmapped, "RFC 5780") {
		t.Errorf("response-origin-only-with-rfc5780 not reported: %v", res.Notes)
	}
	if len(res.Notes) != 5 {
		t.Errorf("%d notes, want 5 (4 options and the missing realm): %v", len(res.Notes), res.Notes)
	}
	if !slices.Equal(cfg.Listen, relay.DefaultConfig().Listen) {
		t.Errorf("listen %v, want the defaults", cfg.Listen)
	}
	// Debian's file has no credentials: the relay refuses to run open.
	if err := res.Config.Validate(); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("Validate() = %v, want the no-credentials error", err)
	}
}

// A carrier's configuration with every trap.
func TestCarrierTurnserverConf(t *testing.T) {
	res := convertFile(t, "carrier-turnserver.conf")
	cfg := loadBack(t, res, "carrier-turnserver.conf")
	if err := cfg.Validate(); err != nil {
		t.Fatalf("imported carrier config does not validate: %v", err)
	}
	want := relay.DefaultConfig()
	want.Listen = []string{"10.20.0.5:3478", "[2001:db8:20::5]:3478"}
	want.TLSListen = []string{"10.20.0.5:5349", "[2001:db8:20::5]:5349"}
	want.TLSCert, want.TLSKey = "/etc/ssl/turn/fullchain.pem", "/etc/ssl/turn/privkey.pem"
	want.RelayIPs = []string{"10.20.0.5", "2001:db8:20::5"}
	want.ExternalIPs = []string{"10.20.0.5=203.0.113.5"} // reversed from coturn's public/private
	want.MinPort, want.MaxPort = 32768, 60999
	want.Realm = "voice.example.net"
	want.Users = []string{"monitor:key=3f0c9e2b8e5a4f6d1c2b3a4958677685", "probe:probe-password"}
	want.AuthSecrets = []string{"north-2026-q4-secret", "north-2026-q3-secret"}
	want.AllowPeers = []string{"10.20.30.0/24"}
	want.DenyPeers = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}
	want.MaxAllocations, want.UserQuota = 20000, 12
	want.AllocationBandwidth = 128000
	want.AlternateServers = []string{"198.51.100.7:3478", "[2001:db8:21::5]:3478"}
	want.Metrics = "[::]:9641"
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, want.Listen}, {"tls_listen", cfg.TLSListen, want.TLSListen},
		{"tls_cert", cfg.TLSCert, want.TLSCert}, {"relay_ips", cfg.RelayIPs, want.RelayIPs},
		{"external_ips", cfg.ExternalIPs, want.ExternalIPs}, {"min_port", cfg.MinPort, want.MinPort},
		{"max_port", cfg.MaxPort, want.MaxPort}, {"realm", cfg.Realm, want.Realm}, {"users", cfg.Users, want.Users},
		{"auth_secrets", cfg.AuthSecrets, want.AuthSecrets}, {"allow_peers", cfg.AllowPeers, want.AllowPeers},
		{"deny_peers", cfg.DenyPeers, want.DenyPeers}, {"max_allocations", cfg.MaxAllocations, want.MaxAllocations},
		{"user_quota", cfg.UserQuota, want.UserQuota}, {"allocation_bandwidth", cfg.AllocationBandwidth, want.AllocationBandwidth},
		{"alternate_servers", cfg.AlternateServers, want.AlternateServers}, {"metrics", cfg.Metrics, want.Metrics},
	} {
		if !equalAny(f.got, f.want) {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	// Every trap is named.
	for _, tr := range []struct {
		option string
		kind   Kind
		has    string
	}{
		{"external-ip", Changed, "order is reversed"},
		{"allowed-peer-ip", Changed, "coturn lets allowed-peer-ip win, the relay lets deny win"},
		{"alternate-server", Changed, "redirects only Allocates it cannot take"},
		{"max-bps", Changed, "twice"},
		{"log-file", Changed, "stderr"},
		{"syslog", Changed, "journald"},
		{"realm", Unmapped, "one realm per relay"},
		{"realm", Changed, "2 realms configured"},
		{"denied-peer-ip", Mapped, "10.0.0.0/8"},
		{"alt-listening-port", Unmapped, "RFC 5780"},
		{"cipher-list", Unmapped, "TLS"},
		{"no-multicast-peers", Mapped, "always refused"},
	} {
		if !noteFor(res, tr.option, tr.kind, tr.has) {
			t.Errorf("no %s note for %s containing %q", tr.kind, tr.option, tr.has)
		}
	}
	// Every option line has a note; secrets never appear in one.
	lines := map[int]bool{}
	for _, n := range res.Notes {
		lines[n.Line] = true
		if strings.Contains(n.String(), "north-2026") || strings.Contains(n.String(), "probe-password") {
			t.Errorf("a note shows a secret: %s", n)
		}
	}
	b, _ := os.ReadFile("testdata/carrier-turnserver.conf")
	for i, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' && !lines[i+1] {
			t.Errorf("line %d %q has no note", i+1, l)
		}
	}
}

func equalAny(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

func TestCoturnRanges(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.0-10.255.255.255", "[10.0.0.0/8]"},
		{"192.168.1.10-192.168.1.20", "[192.168.1.10/31 192.168.1.12/30 192.168.1.16/30 192.168.1.20/32]"},
		{"0.0.0.0-255.255.255.255", "[0.0.0.0/0]"},
		{"203.0.113.7", "[203.0.113.7/32]"},
		{"2001:db8::/33", "[2001:db8::/33]"},
		{"fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "[fc00::/7]"},
		{"::1-::2", "[::1/128 ::2/128]"},
	} {
		ps, err := parseCoturnRange(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := prefixList(ps); got != tc.want {
			t.Errorf("%s -> %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.9-10.0.0.1", "10.0.0.1-::1", "nonsense", "10.0.0.0/33"} {
		if _, err := parseCoturnRange(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}
