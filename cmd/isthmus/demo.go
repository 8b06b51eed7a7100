package main

import (
	"io"
	"os"

	"github.com/isthmusrelay/isthmus/internal/demo"
)

func init() {
	register("demo", "run the IPv6-only <-> IPv4-only calls in network namespaces (root)", runDemo)
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "agent" {
		// Hidden: one endpoint of a scenario, started by the demo itself
		// inside a namespace.
		return demo.RunAgent(args[1:], os.Stdin, stdout, stderr)
	}
	return 2
}
