package relay

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Users = []string{"alice:secret"}
	return c
}

func TestDefaultConfigNeedsOnlyACredential(t *testing.T) {
	c := DefaultConfig()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "users:") {
		t.Fatalf("default config without credentials: got %v, want an error naming users (never an open relay)", err)
	}
	c.Users = []string{"alice:secret"}
	if err := c.Validate(); err != nil {
		t.Fatalf("default config plus a user: %v", err)
	}
	c = DefaultConfig()
	c.AuthSecrets = []string{"s3cr3t"}
	if err := c.Validate(); err != nil {
		t.Fatalf("default config plus a REST secret: %v", err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"no listen address", func(c *Config) { c.Listen = nil }, "listen:"},
		{"listen without port", func(c *Config) { c.Listen = []string{"127.0.0.1"} }, "listen:"},
		{"listen IPv6 without brackets", func(c *Config) { c.Listen = []string{"::1:3478"} }, "listen:"},
		{"listen with zone", func(c *Config) { c.Listen = []string{"[fe80::1%eth0]:3478"} }, "listen:"},
		{"tls cert without key", func(c *Config) { c.TLSCert = "cert.pem" }, "tls_cert:"},
		{"bad tls_listen", func(c *Config) { c.TLSListen = []string{"nope"} }, "tls_listen:"},
		{"negative listener sockets", func(c *Config) { c.ListenerSockets = -1 }, "listener_sockets:"},
		{"relay IP not an address", func(c *Config) { c.RelayIPs = []string{"relay.example"} }, "relay_ips:"},
		{"relay IP unspecified", func(c *Config) { c.RelayIPs = []string{"0.0.0.0"} }, "relay_ips:"},
		{"relay IP multicast", func(c *Config) { c.RelayIPs = []string{"ff02::1"} }, "relay_ips:"},
		{"external IP without =", func(c *Config) { c.ExternalIPs = []string{"192.0.2.1"} }, "external_ips:"},
		{"external IP family mismatch", func(c *Config) { c.ExternalIPs = []string{"192.0.2.1=2001:db8::1"} }, "external_ips:"},
		{"external IP for unknown relay IP", func(c *Config) {
			c.RelayIPs = []string{"192.0.2.1"}
			c.ExternalIPs = []string{"192.0.2.2=198.51.100.2"}
		}, "external_ips:"},
		{"min_port zero", func(c *Config) { c.MinPort = 0 }, "min_port:"},
		{"max_port too big", func(c *Config) { c.MaxPort = 70000 }, "max_port:"},
		{"max_port below min_port", func(c *Config) { c.MinPort, c.MaxPort = 50000, 40000 }, "max_port:"},
		{"empty realm", func(c *Config) { c.Realm = "" }, "realm:"},
		{"user without password", func(c *Config) { c.Users = []string{"alice"} }, "users:"},
		{"user with short key", func(c *Config) { c.Users = []string{"alice:key=abcd"} }, "users:"},
		{"user twice", func(c *Config) { c.Users = []string{"alice:a", "alice:b"} }, "users:"},
		{"empty auth secret", func(c *Config) { c.AuthSecrets = []string{""} }, "auth_secrets:"},
		{"bad allow CIDR", func(c *Config) { c.AllowPeers = []string{"192.0.2.0/33"} }, "allow_peers:"},
		{"bad deny CIDR", func(c *Config) { c.DenyPeers = []string{"not-a-prefix"} }, "deny_peers:"},
		{"negative max allocations", func(c *Config) { c.MaxAllocations = -1 }, "max_allocations:"},
		{"negative user quota", func(c *Config) { c.UserQuota = -2 }, "user_quota:"},
		{"negative permission cap", func(c *Config) { c.MaxPermissionsPerAllocation = -1 }, "max_permissions_per_allocation:"},
		{"negative channel cap", func(c *Config) { c.MaxChannelsPerAllocation = -1 }, "max_channels_per_allocation:"},
		{"bandwidth below one datagram", func(c *Config) { c.AllocationBandwidth = 100 }, "allocation_bandwidth:"},
		{"negative recv buffer", func(c *Config) { c.RecvBuffer = -1 }, "recv_buffer:"},
		{"huge relay recv buffer", func(c *Config) { c.RelayRecvBuffer = 2 << 30 }, "relay_recv_buffer:"},
		{"raw send mode", func(c *Config) { c.RawSend = "yes" }, "raw_send:"},
		{"huge send buffer", func(c *Config) { c.SendBuffer = 2 << 30 }, "send_buffer:"},
		{"metrics without port", func(c *Config) { c.Metrics = "127.0.0.1" }, "metrics:"},
		{"unknown log level", func(c *Config) { c.LogLevel = "chatty" }, "log_level:"},
		{"negative drain timeout", func(c *Config) { c.DrainTimeout = -time.Second }, "drain_timeout:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if !strings.Contains(err.Error(), "relay: config: "+tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
}

func TestValidateAcceptsGoodValues(t *testing.T) {
	c := validConfig()
	c.Listen = []string{"127.0.0.1:0", "[::1]:0", "[::ffff:127.0.0.1]:3478"}
	c.RelayIPs = []string{"192.0.2.1", "2001:db8::1", "2001:db8::2"}
	c.ExternalIPs = []string{"192.0.2.1=198.51.100.1", "2001:db8::1 = 2001:db8:ffff::1"}
	c.Users = []string{"alice:secret", "bob:key=0123456789abcdef0123456789ABCDEF", "carol:pass:with:colons"}
	c.AllowPeers = []string{"192.0.2.0/24", "2001:db8::1"}
	c.TLSCert, c.TLSKey = "cert.pem", "key.pem"
	r, err := c.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.listen[2].Addr().String(); got != "127.0.0.1" {
		t.Errorf("IPv4-mapped listen address kept as %s, want it unmapped", got)
	}
	if len(r.tlsListen) != 3 || r.tlsListen[0].Port() != 0 || r.tlsListen[2].Port() != DefaultTLSPort {
		t.Errorf("derived tls_listen = %v, want each listen host with port 0 for port 0, else 5349", r.tlsListen)
	}
	if len(r.external) != 2 {
		t.Errorf("external = %v", r.external)
	}
	if r.users[2].name != "carol" {
		t.Errorf("a password may hold colons: got user %q", r.users[2].name)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigFile(t *testing.T) {
	p := writeFile(t, `
listen: ["127.0.0.1:3478"]
relay_ips: [127.0.0.1, "::1"]
external_ips:
  127.0.0.1: 192.0.2.10
realm: example.org
users: ["alice:secret"]
auth_secrets: [one, two]
allow_loopback_peers: true
deny_peers: [203.0.113.0/24]
min_port: 40000
max_port: 40100
drain_timeout: 5s
`)
	c, err := LoadConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Realm != "example.org" || len(c.AuthSecrets) != 2 || !c.AllowLoopbackPeers || c.MinPort != 40000 {
		t.Errorf("fields not read: %+v", c)
	}
	if len(c.ExternalIPs) != 1 || c.ExternalIPs[0] != "127.0.0.1=192.0.2.10" {
		t.Errorf("external_ips mapping read as %v", c.ExternalIPs)
	}
	if time.Duration(c.DrainTimeout) != 5*time.Second {
		t.Errorf("drain_timeout = %v", time.Duration(c.DrainTimeout))
	}
	// Unset fields keep their defaults.
	if c.RecvBuffer != DefaultSocketBuffer || c.RelayRecvBuffer != DefaultRelayRecvBuffer || c.LogLevel != "info" {
		t.Errorf("defaults lost: recv_buffer=%d relay_recv_buffer=%d log_level=%q", c.RecvBuffer, c.RelayRecvBuffer, c.LogLevel)
	}
	// A YAML list replaces the default list, it does not append to it.
	if len(c.Listen) != 1 {
		t.Errorf("listen = %v, want only the file's address", c.Listen)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"typo is an error", "realms: x\n", "realms: unknown setting"},
		{"wrong type", "min_port: lots\n", "min_port: "},
		{"list where a string belongs", "realm: [a, b]\n", "realm: "},
		{"bad duration", "drain_timeout: soon\n", "drain_timeout: "},
		{"external_ips scalar", "external_ips: 1.2.3.4\n", "relayIP=advertisedIP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfigFile(writeFile(t, tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want a config error containing %q", err, tt.want)
			}
		})
	}
	if _, err := LoadConfigFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
	c, err := LoadConfigFile(writeFile(t, ""))
	if err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if len(c.Listen) != 2 || c.MinPort != 49152 {
		t.Errorf("empty file should give the defaults, got %+v", c)
	}
}

// turnadmin -k prints keys as 0x<hex> (coturn's userdb spelling): such a
// key is the same key as the bare hex. It used to be refused.
func TestUserKeyTurnadminSpelling(t *testing.T) {
	const hexKey = "0123456789abcdef0123456789abcdef"
	bare, err := parseUser("bob:key="+hexKey, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, spelled := range []string{"bob:key=0x" + hexKey, "bob:key=0X" + hexKey} {
		u, err := parseUser(spelled, "example.org")
		if err != nil {
			t.Fatalf("%s: %v", spelled, err)
		}
		if string(u.key) != string(bare.key) {
			t.Fatalf("%s: key differs from the bare hex", spelled)
		}
	}
	if _, err := parseUser("bob:key=0x"+hexKey[:30], "example.org"); err == nil {
		t.Fatal("a 0x key of 30 hex digits was accepted")
	}
}
