package bench

import (
	"os"
	"strings"
	"testing"
)

func TestProcReaders(t *testing.T) {
	if _, err := readProcCPU(os.Getpid()); err != nil {
		t.Errorf("readProcCPU(self): %v", err)
	}
	// This test has run for a while: its threads' schedstat total is > 0.
	if rt, err := readProcRuntime(os.Getpid()); err != nil || rt <= 0 {
		t.Errorf("readProcRuntime(self) = %v, %v; want > 0", rt, err)
	}
	if rss, err := readRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("readRSS(self) = %d, %v; want > 0", rss, err)
	}
	if _, err := readCPUSoftirq(0); err != nil {
		t.Errorf("readCPUSoftirq(0): %v", err)
	}
	if _, err := readCPUSoftirq(4096); err == nil {
		t.Errorf("readCPUSoftirq(4096) succeeded on a machine without that CPU")
	}
	if _, err := readUDPCounters(); err != nil {
		t.Errorf("readUDPCounters: %v", err)
	}
	if _, err := socketDrops(os.Getpid()); err != nil {
		t.Errorf("socketDrops(self): %v", err)
	}
	if _, err := readProcCPU(-1); err == nil {
		t.Errorf("readProcCPU(-1) succeeded")
	}
}

func TestCoturnConfigIsEquivalent(t *testing.T) {
	spec := RelaySpec{Username: "u", Password: "p", Realm: "r", MinPort: 20000, MaxPort: 20999, CPU: 1}
	conf := coturnConfig(spec, 3479, "/tmp/x")
	// Each line mirrors one of our relay's flags (docs/bench.md has the table).
	for _, want := range []string{
		"listening-port=3479", "listening-ip=127.0.0.1", "listening-ip=::1",
		"relay-ip=127.0.0.1", "relay-ip=::1", "min-port=20000", "max-port=20999",
		"lt-cred-mech", "user=u:p", "realm=r", "allow-loopback-peers",
		"no-tls", "no-dtls", "total-quota=0", "user-quota=0", "relay-threads=1", "no-cli",
	} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("coturn config lacks %q:\n%s", want, conf)
		}
	}
}
