package main

import (
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"

	"github.com/isthmusrelay/isthmus/relay"
)

// checkRelay is isthmus relay --check: cfg (defaults, --config, ISTHMUS_*
// variables and flags, loaded as a start loads them) is validated by
// relay.Check, which binds nothing, and printed as YAML with secrets
// redacted, so an operator sees what a start would run with (coturn has
// no equivalent; nginx -t and haproxy -c are the model).
func checkRelay(cfg relay.Config, stdout, stderr io.Writer) int {
	if noCredentials(cfg) {
		// A start would generate a credential (runRelay); say so instead of
		// inventing one that would not be the one used.
		fmt.Fprintln(stderr, "isthmus relay --check: no users or auth_secrets: a start would generate a credential and print it")
		cfg.Users = []string{"isthmus:generated"}
	}
	log := relayLogger(stderr, relay.LogWarn)
	if err := relay.Check(cfg, log); err != nil {
		fmt.Fprintf(stderr, "isthmus relay --check: %v\n", err)
		if errors.Is(err, relay.ErrConfig) {
			return exitConfig
		}
		return exitRuntime
	}
	out, err := yaml.Marshal(cfg.Redacted())
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay --check: print config: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintln(stdout, "# isthmus relay --check: configuration valid; effective settings, secrets redacted")
	_, _ = stdout.Write(out)
	return exitOK
}
