package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// isthmusBinary builds cmd/isthmus once per test process: the relay and the
// endpoints run as separate processes inside the namespaces, because a
// goroutine cannot carry a namespace to the goroutines pion starts.
func isthmusBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "isthmus-demo-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "isthmus")
		out, err := exec.Command(goTool, "build", "-o", buildPath, "github.com/isthmusrelay/isthmus/cmd/isthmus").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out) + err.Error())
		}
	})
	if buildErr != nil {
		t.Fatalf("build isthmus: %v", buildErr)
	}
	return buildPath
}

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		// Namespaces of earlier runs that were killed before their cleanup.
		if stale, err := netns.Sweep(context.Background()); err == nil && len(stale) > 0 {
			fmt.Fprintf(os.Stderr, "removed stale namespaces: %s\n", strings.Join(stale, " "))
		}
	}
	code := m.Run()
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
	os.Exit(code)
}

func testOptions(t *testing.T) Options {
	opt := Options{Binary: isthmusBinary(t), WorkDir: t.TempDir(), Progress: testWriter{t}}
	if p, err := exec.LookPath("turnserver"); err == nil {
		opt.Turnserver = p
	}
	return opt
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func requirePassed(t *testing.T, r *Result) {
	t.Helper()
	if errors.Is(r.Err, ErrSkipped) {
		t.Skip(r.Err)
	}
	if r.Err != nil {
		t.Fatalf("scenario %s: %v", r.Scenario.ID, r.Err)
	}
	if len(r.Checks) == 0 {
		t.Fatalf("scenario %s: no checks ran", r.Scenario.ID)
	}
	failed := false
	for _, c := range r.Checks {
		if c.OK {
			t.Logf("ok   %s: %s", c.Name, c.Detail)
			continue
		}
		failed = true
		t.Errorf("FAIL %s: %s", c.Name, c.Detail)
	}
	if failed {
		t.Logf("offer:\n%s\nanswer:\n%s", r.Offer, r.Answer)
	}
	s := r.Offerer.Stats
	t.Logf("%s: RTT p50 %s p99 %s", r.Scenario.ID, s.RTTp50, s.RTTp99)
}

// TestHarnessPlainRTP runs two plain RTP phones on the IPv4 side, no relay:
// the orchestration, the control protocol and the probe exchange on their
// own, without the SDK.
func TestHarnessPlainRTP(t *testing.T) {
	skipUnlessRoot(t)
	opt := testOptions(t)
	opt.Packets = 100
	opt.Interval = 5 * time.Millisecond
	sc := Scenario{
		ID: "0", Title: "plain RTP between two IPv4 phones",
		Offerer: Side{HostLegacy4, RoleLegacyOffer}, Answerer: Side{HostUA4, RoleLegacyAnswer},
		Expect: func(r *Result) {
			r.Check("direct plain path", r.Offerer.Path.Remote.Addr == r.Answerer.Path.Local.Addr &&
				r.Answerer.Path.Remote.Addr == r.Offerer.Path.Local.Addr,
				"%s <-> %s", r.Offerer.Path.Local.Addr, r.Answerer.Path.Local.Addr)
		},
	}
	requirePassed(t, Run(context.Background(), sc, opt))
}

// TestScenarios runs every scenario of Scenarios, in parallel, each in its own
// namespaces with its own relay.
func TestScenarios(t *testing.T) {
	skipUnlessRoot(t)
	opt := testOptions(t)
	for _, sc := range Scenarios() {
		t.Run(sc.ID+" "+sc.Title, func(t *testing.T) {
			t.Parallel()
			r := Run(context.Background(), sc, opt)
			requirePassed(t, r)
		})
	}
	t.Cleanup(func() {
		// Every scenario tore its namespaces down.
		names, err := netns.List(context.Background())
		if err != nil {
			t.Error(err)
		}
		for _, n := range names {
			if strings.HasPrefix(n, netns.Prefix+strconv.Itoa(os.Getpid())+"-") {
				t.Errorf("namespace %s left behind", n)
			}
		}
	})
}
