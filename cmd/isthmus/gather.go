package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/rs/zerolog"

	"github.com/isthmusrelay/isthmus/internal/zslog"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

func init() {
	register("gather", "gather ICE candidates of both families and print an SDP offer (or --json)", runGather)
}

const gatherUsage = `usage: isthmus gather [--stun stun:HOST:PORT]... [--turn turn:HOST:PORT?transport=udp|tcp]...
                      [--user U --pass P] [--timeout 2s] [--json] [agent flags]

Gathers host, server-reflexive and relayed candidates of both address
families (an IPv6-only host gets its IPv4 candidate from the TURN server)
and prints an SDP offer on stdout, or with --json the candidates as a JSON
array. The TURN allocations are released on exit.

Flags:
`

// agentFlags are the flags "gather" and "answer" share: where to gather.
type agentFlags struct {
	stun, turn, hosts, ifaces gatherList
	user, pass                string
	timeout                   time.Duration
	family, relayFamily       string
	linkLocal                 bool
	logLevel                  string
}

// gatherList is a repeatable (or comma-separated) string flag.
type gatherList []string

func (l *gatherList) String() string { return strings.Join(*l, ",") }

func (l *gatherList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func (f *agentFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.stun, "stun", "STUN server URL `stun:HOST:PORT` (repeatable)")
	fs.Var(&f.turn, "turn", "TURN server URL `turn:HOST:PORT?transport=udp|tcp` or turns:HOST:PORT (repeatable)")
	fs.StringVar(&f.user, "user", "", "TURN `username`")
	fs.StringVar(&f.pass, "pass", "", "TURN `password`")
	fs.DurationVar(&f.timeout, "timeout", gather.DefaultTimeout, "overall gathering deadline")
	fs.StringVar(&f.family, "family", "", "use only this local family: `4|6` (default: every usable one)")
	fs.StringVar(&f.relayFamily, "relay-family", "", "request only this relayed family: `4|6` (default: both)")
	fs.Var(&f.hosts, "host", "use exactly this host `address` instead of the interfaces' (repeatable; loopback allowed)")
	fs.Var(&f.ifaces, "interface", "gather host candidates only on this interface `name` (repeatable)")
	fs.BoolVar(&f.linkLocal, "link-local", false, "include link-local host candidates")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log `level` on stderr: trace, debug, info, warn, error")
}

func parseFamilyFlag(name, v string) ([]netaddr.Family, error) {
	switch strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(v), "ipv"), "ip")) {
	case "":
		return nil, nil
	case "4":
		return []netaddr.Family{netaddr.IPv4}, nil
	case "6":
		return []netaddr.Family{netaddr.IPv6}, nil
	}
	return nil, fmt.Errorf("--%s: %q is not 4 or 6", name, v)
}

// config turns the flags into a gather.Config.
func (f *agentFlags) config(stderr io.Writer) (gather.Config, error) {
	cfg := gather.Config{
		STUN: f.stun, TURN: f.turn, Username: f.user, Password: f.pass, Timeout: f.timeout,
		IncludeLinkLocal: f.linkLocal, Interfaces: f.ifaces,
	}
	var err error
	if cfg.Families, err = parseFamilyFlag("family", f.family); err != nil {
		return cfg, err
	}
	if cfg.RelayFamilies, err = parseFamilyFlag("relay-family", f.relayFamily); err != nil {
		return cfg, err
	}
	for _, h := range f.hosts {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return cfg, fmt.Errorf("--host: %q: %w", h, err)
		}
		cfg.HostAddrs = append(cfg.HostAddrs, a)
	}
	lvl, err := zerolog.ParseLevel(f.logLevel)
	if err != nil {
		return cfg, fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(zslog.New(zerolog.New(stderr).Level(lvl).With().Timestamp().Logger()))
	return cfg, nil
}

// candidateJSON is one candidate in "isthmus gather --json".
type candidateJSON struct {
	Foundation     string `json:"foundation"`
	Component      uint16 `json:"component"`
	Protocol       string `json:"protocol"`
	Priority       uint32 `json:"priority"`
	Address        string `json:"address"`
	Port           int    `json:"port"`
	Type           string `json:"type"`
	RelatedAddress string `json:"related_address,omitempty"`
	RelatedPort    int    `json:"related_port,omitempty"`
	Family         string `json:"family"`
	RelayProtocol  string `json:"relay_protocol,omitempty"`
}

func toCandidateJSON(c ice.Candidate) candidateJSON {
	out := candidateJSON{
		Foundation: c.Foundation(), Component: c.Component(), Protocol: c.NetworkType().NetworkShort(),
		Priority: c.Priority(), Address: c.Address(), Port: c.Port(), Type: c.Type().String(),
		Family: sdpcand.CandidateFamily(c).String(),
	}
	if r := c.RelatedAddress(); r != nil {
		out.RelatedAddress, out.RelatedPort = r.Address, r.Port
	}
	if r, ok := c.(*ice.CandidateRelay); ok {
		out.RelayProtocol = r.RelayProtocol()
	}
	return out
}

// parseFlags parses args into fs, printing usage for --help.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// runGather implements "isthmus gather".
func runGather(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gather", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af agentFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "print the candidates as a JSON array instead of an SDP offer")
	fs.Usage = func() {
		fmt.Fprint(stderr, gatherUsage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := af.config(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gather: %v\n", err)
		return 2
	}
	agent, err := gather.NewAgent(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gather: %v\n", err)
		return 2
	}
	defer agent.Close()

	ctx := context.Background()
	if *asJSON {
		cands, err := agent.Gather(ctx, nil)
		reportGather(stderr, agent)
		if err != nil {
			fmt.Fprintf(stderr, "gather: %v\n", err)
			return 1
		}
		out := make([]candidateJSON, 0, len(cands))
		for _, c := range cands {
			out = append(out, toCandidateJSON(c))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "gather: %v\n", err)
			return 1
		}
		return 0
	}
	offer, err := agent.Offer(ctx)
	reportGather(stderr, agent)
	if err != nil {
		fmt.Fprintf(stderr, "gather: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(offer); err != nil {
		return 1
	}
	return 0
}

// reportGather prints, on stderr, every STUN/TURN attempt that failed or
// was cut by the deadline, so an offer without relayed candidates says why.
func reportGather(stderr io.Writer, a *gather.Agent) {
	st := a.Stats()
	for _, f := range st.Failed {
		fmt.Fprintf(stderr, "gather: skipped: %s\n", f)
	}
	if st.DeadlineHit {
		fmt.Fprintf(stderr, "gather: deadline reached, %d attempt(s) abandoned\n", st.Late)
	}
}

// readOffer reads FILE, or standard input for "-".
func readOffer(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(stdin, 1<<20))
	}
	return os.ReadFile(path)
}
