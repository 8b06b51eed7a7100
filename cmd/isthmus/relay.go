package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/isthmusrelay/isthmus/internal/sdnotify"
	"github.com/isthmusrelay/isthmus/internal/zslog"

	"github.com/isthmusrelay/isthmus/relay"
)

// Exit codes of isthmus relay, one convention for every failure (see
// docs/relay.md): a configuration the relay refuses, a failure of the
// running host (a port in use, TURN and metrics ports alike), or a drain
// that ended with allocations still live.
const (
	exitOK              = 0
	exitRuntime         = 1
	exitConfig          = 2
	exitDrainIncomplete = 3
)

func init() {
	register("relay", "run the dual-stack TURN relay (RFC 8656 + RFC 6156)", runRelay)
}

// relayFlags are --config and the flags relay.BindFlags generates from
// relay.Config's tags, one per setting.
type relayFlags struct {
	config string
	check  bool
	fs     *flag.FlagSet
	cfg    *relay.Flags
}

func newRelayFlagSet(stderr io.Writer) (*flag.FlagSet, *relayFlags) {
	fs := flag.NewFlagSet("isthmus relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &relayFlags{fs: fs}
	fs.StringVar(&f.config, "config", "", "YAML configuration `file`; flags given explicitly override it (SIGHUP reloads it)")
	fs.BoolVar(&f.check, "check", false, "validate the configuration as a start would (TLS files loaded, addresses present on this host) without binding anything, print it as YAML with secrets redacted and exit: 0 valid, 2 not")
	f.cfg = relay.BindFlags(fs, relay.DefaultConfig())
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: isthmus relay [flags]")
		fmt.Fprintln(stderr, "       isthmus relay --check [--config F] [flags]")
		fmt.Fprintln(stderr, "       isthmus relay import-coturn /etc/turnserver.conf [-o relay.yaml]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Runs the dual-stack TURN relay. With no flags it listens on 0.0.0.0:3478 and [::]:3478")
		fmt.Fprintln(stderr, "(UDP and TCP) and, when no --user or --auth-secret is given, generates a credential and")
		fmt.Fprintln(stderr, "prints it. It never relays without authentication. SIGTERM/SIGINT drain then stop;")
		fmt.Fprintln(stderr, "SIGHUP reloads users, secrets, peer policy and quotas from --config. Under systemd")
		fmt.Fprintln(stderr, "(Type=notify) it reports READY, RELOADING, STOPPING and pings the watchdog.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	return fs, f
}

// load builds the effective configuration: defaults, then the YAML file,
// then the ISTHMUS_* secret variables (relay.Config.ApplyEnv), then the
// flags given.
func (f *relayFlags) load(*flag.FlagSet) (relay.Config, error) {
	cfg := relay.DefaultConfig()
	if f.config != "" {
		var err error
		if cfg, err = relay.LoadConfigFile(f.config); err != nil {
			return cfg, err
		}
	}
	cfg.ApplyEnv(os.Getenv)
	f.cfg.Apply(&cfg)
	return cfg, nil
}

// relayLogger is the binary's log: zerolog JSON lines on stderr, through
// slog for the relay package.
func relayLogger(stderr io.Writer, lvl relay.LogLevel) *slog.Logger {
	l, _ := lvl.Level() // validated with the config
	zl := zerolog.New(stderr).Level(zslog.Level(l)).With().Timestamp().Str("component", "relay").Logger()
	return slog.New(zslog.New(zl))
}

func runRelay(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "import-coturn" {
		return runImportCoturn(args[1:], stdout, stderr)
	}
	relay.BuildVersion = version // isthmus_relay_build_info
	fs, f := newRelayFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "isthmus relay: unexpected argument %q\n", fs.Arg(0))
		return exitConfig
	}
	cfg, err := f.load(fs)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay: %v\n", err)
		return exitConfig
	}
	if f.check {
		return checkRelay(cfg, stdout, stderr)
	}
	// Never an open relay: with no credentials at all, make one up and say so.
	var generated string
	if noCredentials(cfg) {
		pw, err := randomPassword()
		if err != nil {
			fmt.Fprintf(stderr, "isthmus relay: generate credential: %v\n", err)
			return exitRuntime
		}
		generated = "isthmus:" + pw
		cfg.Users = []string{generated}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "isthmus relay: %v\n", err)
		return exitConfig
	}
	log := relayLogger(stderr, cfg.LogLevel)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if generated != "" {
		// Printed before "relay ready" so a script that waits for that line
		// has the credential already.
		user, pw, _ := strings.Cut(generated, ":")
		// The password goes to the terminal only, never into the log, which
		// is shipped and kept (coturn and eturnal users asked the same).
		log.Warn("no credentials configured; generated one (password printed to the terminal, not logged)",
			slog.String("user", user), slog.String("realm", cfg.Realm))
		fmt.Fprintf(stderr, "isthmus relay: no credentials configured; generated user %q password %q (realm %s)\n",
			user, pw, cfg.Realm)
	}
	srv, err := relay.New(cfg, log, reg)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay: %v\n", err)
		if errors.Is(err, relay.ErrConfig) {
			return exitConfig
		}
		return exitRuntime
	}

	// systemd (Type=notify, deploy/systemd/isthmus-relay.service): READY=1
	// once every listener is bound, RELOADING=1 around SIGHUP, STOPPING=1
	// when the drain begins, WATCHDOG=1 while the relay is open.
	notify, err := sdnotify.FromEnv()
	if err != nil {
		log.Warn("systemd notification socket unusable", slog.Any("error", err))
	}
	if err := notify.Ready(fmt.Sprintf("serving on %d addresses", len(srv.ListenAddrs()))); err != nil {
		log.Warn("sd_notify READY", slog.Any("error", err))
	}
	stopWatchdog := startWatchdog(notify, srv, log)
	defer stopWatchdog()

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reloadRelay(srv, f, fs, generated, notify, log)
			continue
		}
		_ = notify.Stopping(fmt.Sprintf("draining %d allocations", srv.Allocations()))
		return stopRelay(srv, cfg, sigs, log)
	}
	return exitOK
}

// startWatchdog pings systemd's watchdog at half of WATCHDOG_USEC while
// the relay is open, and returns what stops it. A relay that has closed
// (or a process whose goroutines no longer run) stops pinging and
// systemd restarts it.
func startWatchdog(n *sdnotify.Notifier, srv *relay.Server, log *slog.Logger) func() {
	d, err := sdnotify.WatchdogInterval()
	if !n.Enabled() || err != nil {
		if err != nil && !errors.Is(err, sdnotify.ErrNoWatchdog) {
			log.Warn("systemd watchdog", slog.Any("error", err))
		}
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d / 2)
		defer t.Stop()
		for {
			if !errors.Is(srv.Ready(), relay.ErrClosed) {
				_ = n.Watchdog()
			}
			select {
			case <-t.C:
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

func reloadRelay(srv *relay.Server, f *relayFlags, fs *flag.FlagSet, generated string, notify *sdnotify.Notifier, log *slog.Logger) {
	if f.config == "" {
		log.Info("SIGHUP: no --config file; nothing to reload")
		return
	}
	_ = notify.Reloading()
	status := "reloaded"
	defer func() { _ = notify.Ready(status) }()
	cfg, err := f.load(fs)
	if err != nil {
		// Nothing of a file that does not parse or validate is applied.
		log.Error("SIGHUP: reload failed; the running configuration stays in effect", slog.Any("error", err), slog.String("config", f.config))
		status = "reload: " + strings.ReplaceAll(err.Error(), "\n", " ")
		return
	}
	if generated != "" && noCredentials(cfg) {
		cfg.Users = []string{generated}
	}
	if err := srv.Reload(cfg); err != nil {
		if errors.Is(err, relay.ErrRestartRequired) {
			log.Warn("SIGHUP: reloaded; the fields named need a restart and keep their running values", slog.Any("error", err))
			return
		}
		log.Error("SIGHUP: reload failed; the running configuration stays in effect", slog.Any("error", err), slog.String("config", f.config))
		status = "reload: " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
}

func stopRelay(srv *relay.Server, cfg relay.Config, sigs <-chan os.Signal, log *slog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	go func() {
		// A second SIGTERM/SIGINT stops waiting. The goroutine ends with
		// the drain (ctx), not only on a signal that may never come.
		for {
			select {
			case s := <-sigs:
				if s != syscall.SIGHUP {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	code := exitOK
	if err := srv.Drain(ctx); err != nil {
		// Closing now ends the allocations still live: say how many calls
		// this cut, and exit non-zero so a supervisor or deploy script sees
		// that the drain did not finish in time.
		log.Warn("drain incomplete; closing live allocations", slog.Any("error", err),
			slog.Int("allocations_cut", srv.Allocations()), slog.Duration("drain_timeout", cfg.DrainTimeout))
		code = exitDrainIncomplete
	}
	if err := srv.Close(); err != nil {
		log.Error("close", slog.Any("error", err))
		return exitRuntime
	}
	return code
}

// noCredentials reports a configuration with no user and no REST secret,
// inline or in a file.
func noCredentials(cfg relay.Config) bool {
	return len(cfg.Users) == 0 && len(cfg.AuthSecrets) == 0 && cfg.UsersFile == "" && cfg.AuthSecretFile == ""
}

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
