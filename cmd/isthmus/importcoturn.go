package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/isthmusrelay/isthmus/internal/coturnconf"
	"github.com/isthmusrelay/isthmus/relay"
)

// runImportCoturn is "isthmus relay import-coturn turnserver.conf [-o F]":
// the relay's YAML on stdout (or in F), and on stderr every option it
// mapped, changed in meaning or could not map.
func runImportCoturn(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("isthmus relay import-coturn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the YAML to this `file` (0600) instead of stdout")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: isthmus relay import-coturn /etc/turnserver.conf [-o relay.yaml]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Translates coturn's configuration into the relay's YAML and lists every option")
		fmt.Fprintln(stderr, "it mapped, changed in meaning (external-ip order, allow/deny precedence,")
		fmt.Fprintln(stderr, "alternate-server, max-bps, logging, realms) or could not map.")
		fs.PrintDefaults()
	}
	// The file may come before or after -o.
	var file string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		file, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 || file == "" {
		fs.Usage()
		return 2
	}
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay import-coturn: %v\n", err)
		return 1
	}
	defer f.Close()
	res, err := coturnconf.Convert(f)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay import-coturn: %s: %v\n", file, err)
		return 1
	}
	y, err := res.YAML(file)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay import-coturn: %v\n", err)
		return 1
	}
	for _, k := range []coturnconf.Kind{coturnconf.Mapped, coturnconf.Changed, coturnconf.Unmapped} {
		n := 0
		for _, note := range res.Notes {
			if note.Kind == k {
				n++
			}
		}
		fmt.Fprintf(stderr, "%s (%d):\n", k, n)
		for _, note := range res.Notes {
			if note.Kind == k {
				fmt.Fprintf(stderr, "  %s\n", note)
			}
		}
	}
	if err := res.Config.Validate(); err != nil {
		fmt.Fprintf(stderr, "note: the result does not start as it is: %v\n", err)
	}
	if *out == "" {
		_, _ = stdout.Write(y)
		return 0
	}
	if err := os.WriteFile(*out, y, 0o600); err != nil {
		fmt.Fprintf(stderr, "isthmus relay import-coturn: %v\n", err)
		return 1
	}
	if _, err := relay.LoadConfigFile(*out); err != nil {
		fmt.Fprintf(stderr, "isthmus relay import-coturn: %s does not load: %v\n", *out, err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s\n", *out)
	return 0
}
