package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func init() {
	register("health", "probe a running relay's /readyz (container HEALTHCHECK)", runHealth)
}

// defaultHealthURL is the relay's readiness endpoint on the metrics port
// the container image and the examples in deploy/ use.
const defaultHealthURL = "http://127.0.0.1:9641/readyz"

// healthURLEnv overrides the default URL (so one image serves any port).
const healthURLEnv = "ISTHMUS_HEALTH_URL"

// runHealth GETs the URL and exits 0 on 200, 1 otherwise (draining, closed,
// a listener failing, nothing listening). It needs no shell or curl, which
// the distroless image has not.
func runHealth(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("isthmus health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := defaultHealthURL
	if v := os.Getenv(healthURLEnv); v != "" {
		def = v
	}
	u := fs.String("url", def, "`URL` to GET: the relay's /readyz (or /healthz: the process is up); also $"+healthURLEnv)
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	quiet := fs.Bool("q", false, "print nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "isthmus health: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	pu, err := url.Parse(*u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		fmt.Fprintf(stderr, "isthmus health: --url %q is not an http(s) URL\n", *u)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pu.String(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus health: %v\n", err)
		return 2
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		if !*quiet {
			fmt.Fprintf(stderr, "isthmus health: %v\n", err)
		}
		return 1
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	msg := strings.TrimSpace(string(body))
	if res.StatusCode != http.StatusOK {
		if !*quiet {
			fmt.Fprintf(stderr, "isthmus health: %s: %s %s\n", pu, res.Status, msg)
		}
		return 1
	}
	if !*quiet {
		fmt.Fprintf(stdout, "%s: %s\n", pu, msg)
	}
	return 0
}
