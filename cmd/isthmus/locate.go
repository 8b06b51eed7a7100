package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/isthmusrelay/isthmus/siplocate"
)

func init() {
	register("locate", "find the servers of a SIP, TURN or STUN URI (RFC 3263/5928): locate URI [--dns HOST:PORT] [--json]", runLocate)
}

const locateUsage = `usage: isthmus locate URI [--dns HOST:PORT] [--json] [--timeout 5s] [--verbose]

Finds the servers a sip:, sips:, turn:, turns:, stun: or stuns: URI
designates: NAPTR, then SRV, then A/AAAA (RFC 3263, RFC 5928, RFC 8489 §8),
SRV records in RFC 2782 order and each server's addresses in RFC 6724 order
for this host's routes. Prints the targets in the order to try them, one per
line:

  <transport> <address> <port> <records it came from>

With --json, a JSON array of the same. Exit status: 0 found, 1 not found or
DNS failure (reason on stderr), 2 usage error.

Flags:
`

// locateTarget is one line of "isthmus locate --json".
type locateTarget struct {
	Transport string `json:"transport"`
	Address   string `json:"address"`
	Port      uint16 `json:"port"`
	Host      string `json:"host,omitempty"`
	Priority  uint16 `json:"priority,omitempty"`
	Weight    uint16 `json:"weight,omitempty"`
	SRV       string `json:"srv,omitempty"`
	NAPTR     string `json:"naptr,omitempty"`
}

// runLocate implements "isthmus locate".
func runLocate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("locate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, locateUsage)
		fs.PrintDefaults()
	}
	dnsServer := fs.String("dns", "", "DNS server `HOST:PORT` to ask (default: the nameservers of /etc/resolv.conf)")
	asJSON := fs.Bool("json", false, "print a JSON array")
	timeout := fs.Duration("timeout", 5*time.Second, "overall deadline")
	verbose := fs.Bool("verbose", false, "log every DNS query and answer on stderr")

	// The URI may come before or after the flags.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "locate: want exactly one URI, got %d\n\n", len(pos))
		fs.Usage()
		return 2
	}

	r := &siplocate.Resolver{Server: *dnsServer}
	if *verbose {
		r.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	targets, err := r.Locate(ctx, pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "locate: %v\n", err)
		if errors.Is(err, siplocate.ErrBadURI) {
			return 2
		}
		return 1
	}

	if *asJSON {
		out := make([]locateTarget, len(targets))
		for i, t := range targets {
			out[i] = locateTarget{
				Transport: t.Transport.String(), Address: t.AddrPort.Addr().String(), Port: t.AddrPort.Port(),
				Host: t.Host, Priority: t.Priority, Weight: t.Weight, SRV: t.SRV, NAPTR: t.NAPTR,
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "locate: %v\n", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, t := range targets {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", t.Transport, t.AddrPort.Addr(), t.AddrPort.Port(), t.From())
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "locate: %v\n", err)
		return 1
	}
	return 0
}
