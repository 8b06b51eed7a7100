package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestAgentLegacyAnswerOnLoopback drives the hidden agent subcommand in
// process, as the orchestrator would, against a plain RTP peer played by
// the test: control protocol, SDP, probe exchange and result, no root.
func TestAgentLegacyAnswerOnLoopback(t *testing.T) {
	peerUDP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := peerUDP.LocalAddr().(*net.UDPAddr).AddrPort()
	offer, err := legacySDP(peerAddr, 9)
	if err != nil {
		t.Fatal(err)
	}

	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	var stderr strings.Builder
	opts := AgentOptions{Role: RoleLegacyAnswer, Addr: "127.0.0.1",
		Probe: ProbeConfig{Packets: 50, Interval: time.Millisecond, Drain: 2 * time.Second}, Timeout: 20 * time.Second}
	exit := make(chan int, 1)
	go func() {
		exit <- RunAgent(opts.Args(), stdinR, stdoutW, &stderr)
		stdoutW.Close()
	}()
	t.Cleanup(func() { stdinW.Close(); peerUDP.Close() })

	out := bufio.NewScanner(stdoutR)
	next := func(want string) Message {
		t.Helper()
		if !out.Scan() {
			t.Fatalf("agent stopped before %s; stderr: %s", want, stderr.String())
		}
		var m Message
		if err := json.Unmarshal(out.Bytes(), &m); err != nil || m.Event != want {
			t.Fatalf("agent said %q, want event %s", out.Text(), want)
		}
		return m
	}
	send := func(m Message) {
		t.Helper()
		b, _ := json.Marshal(m)
		if _, err := stdinW.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}

	send(Message{Event: EventOffer, SDP: string(offer)})
	answer := next(EventAnswer)
	agentAddr, err := legacyRemote([]byte(answer.SDP))
	if err != nil {
		t.Fatal(err)
	}
	conn := next(EventConnected)
	if conn.Path == nil || conn.Path.Remote.Addr != peerAddr.String() || conn.Path.Local.Addr != agentAddr.String() {
		t.Fatalf("agent path %+v, want %s -> %s", conn.Path, agentAddr, peerAddr)
	}

	peer, err := newProber(&plainConn{udp: peerUDP, remote: agentAddr}, opts.Probe)
	if err != nil {
		t.Fatal(err)
	}
	send(Message{Event: EventStart})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peerStats, err := peer.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := next(EventResult)
	send(Message{Event: EventExit})
	if code := <-exit; code != 0 {
		t.Fatalf("agent exit %d; stderr: %s", code, stderr.String())
	}
	peerUDP.Close()
	peer.Wait()

	s := res.Stats
	if s == nil || s.ProbesReceived != 50 || s.EchoesReceived != 50 || peerStats.ProbesReceived != 50 || peerStats.EchoesReceived != 50 {
		t.Errorf("agent %+v, peer %+v: want 50 probes and 50 echoes each", s, peerStats)
	}
}

func TestAgentRejectsUnknownRole(t *testing.T) {
	var stdout, stderr strings.Builder
	code := RunAgent([]string{"--role", "proxy"}, strings.NewReader(""), &stdout, &stderr)
	if code != 1 || !strings.Contains(stdout.String(), `"event":"error"`) || !strings.Contains(stdout.String(), "unknown role") {
		t.Errorf("exit %d, stdout %q", code, stdout.String())
	}
	if code := RunAgent([]string{"--packets", "x"}, strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}
