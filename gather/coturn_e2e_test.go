//go:build e2e && linux

package gather

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/freeport"
	"github.com/isthmusrelay/isthmus/internal/relayproc"
)

const (
	coturnBin   = "/usr/bin/turnserver"
	serverReady = 10 * time.Second
)

func init() { startCoturnWith = startCoturn }

// startCoturn runs coturn on a port free on both loopback families, with a
// TLS listener on tlsPort when it is not 0; a start that loses the port to
// another process is retried on a new one. It skips the test when coturn is
// not installed.
func startCoturn(t *testing.T, tlsPort uint16, certFile, keyFile string) turnServer {
	t.Helper()
	if _, err := os.Stat(coturnBin); err != nil {
		t.Skipf("coturn not installed (%s): %v", coturnBin, err)
	}
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freeport.DualStack()
		if err != nil {
			t.Fatal(err)
		}
		cfg := relayproc.Config{
			ListenIPs: lo, Port: port, RelayIPs: lo,
			Realm: testRealm, Users: []string{testUser + ":" + testPass},
			AllowLoopbackPeers: true,
			TLSPort:            int(tlsPort), Cert: certFile, Key: keyFile,
		}
		dir := t.TempDir()
		conf, err := cfg.WriteCoturnConf(dir)
		if err != nil {
			t.Fatal(err)
		}
		p, err := relayproc.Start(exec.Command(coturnBin, "-c", conf), relayproc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), serverReady)
		err = relayproc.WaitBinding(ctx, []netip.AddrPort{cfg.ListenAddrs()[1], cfg.ListenAddrs()[0]}, p.Done(), nil)
		cancel()
		if err == nil {
			t.Cleanup(func() { p.Stop(0) })
			return turnServer{port4: int(port), port6: int(port)}
		}
		p.Stop(0)
		t.Logf("coturn on port %d did not come up (attempt %d): %v\n%s", port, attempt+1, err, p.Output())
	}
	t.Fatal("coturn did not start")
	return turnServer{}
}
