package relay

import (
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

// kernelDropSum collects k and returns the sample for socket/family.
func kernelDropSum(t *testing.T, k *kernelDrops, socket, family string) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	k.Collect(ch)
	close(ch)
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		var s, f string
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "socket":
				s = l.GetValue()
			case "family":
				f = l.GetValue()
			}
		}
		if s == socket && f == family {
			return pb.GetCounter().GetValue()
		}
	}
	t.Fatalf("no sample socket=%s family=%s", socket, family)
	return 0
}

// A socket of this process that nobody reads drops datagrams once its
// receive buffer is full; the collector counts them from /proc/net/udp,
// and keeps them after the socket is closed.
func TestKernelDrops(t *testing.T) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := sink.SyscallConn()
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1024) })
	k := &kernelDrops{srv: &Server{}, gone: map[string]uint64{}, last: map[uint64]sockDrops{}}
	before := kernelDropSum(t, k, "relay", "ip4")
	src, err := net.DialUDP("udp4", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	payload := make([]byte, 1000)
	for i := 0; i < 200; i++ {
		_, _ = src.Write(payload)
	}
	during := kernelDropSum(t, k, "relay", "ip4")
	if during-before < 100 {
		t.Fatalf("kernel drops %v -> %v after 200 datagrams into a 1 KiB buffer, want >= 100 more", before, during)
	}
	_ = sink.Close()
	if after := kernelDropSum(t, k, "relay", "ip4"); after < during {
		t.Errorf("counter went back from %v to %v when the socket closed", during, after)
	}
	t.Logf("isthmus_relay_kernel_drops_total{socket=relay,family=ip4}: %v -> %v", before, during)
}
