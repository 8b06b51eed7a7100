package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/isthmusrelay/isthmus/relay"
)

func init() {
	register("relay", "run the dual-stack TURN relay (RFC 8656 + RFC 6156)", runRelay)
}

// listFlag is a repeatable flag. Given on the command line it replaces the
// YAML list as a whole.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// relayFlags holds every flag; apply copies the ones given onto a Config.
type relayFlags struct {
	config                             string
	listen, tlsListen, relayIPs, extIP listFlag
	users, secrets, allow, deny        listFlag
	tlsCert, tlsKey, realm, metrics    string
	logLevel, rawSend, dataPlane       string
	listenerSockets, minPort, maxPort  int
	maxAllocs, userQuota, bandwidth    int
	recvBuf, relayRecvBuf, sendBuf     int
	maxUnauth, maxUnauthPerSource      int
	allowLoopback                      bool
	drainTimeout                       time.Duration
}

func newRelayFlagSet(stderr io.Writer) (*flag.FlagSet, *relayFlags) {
	d := relay.DefaultConfig()
	f := &relayFlags{}
	fs := flag.NewFlagSet("isthmus relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "YAML configuration `file`; flags given explicitly override it (SIGHUP reloads it)")
	fs.Var(&f.listen, "listen", "`ip:port` to serve TURN on, UDP and TCP; repeat for more (YAML listen; default 0.0.0.0:3478 and [::]:3478)")
	fs.Var(&f.tlsListen, "tls-listen", "`ip:port` for TURN over TLS; repeat (YAML tls_listen; default: each listen host on 5349)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate `file`; with --tls-key enables TLS (YAML tls_cert)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key `file` (YAML tls_key)")
	fs.IntVar(&f.listenerSockets, "listener-sockets", 0, "SO_REUSEPORT UDP sockets per listen address, 0 = GOMAXPROCS (YAML listener_sockets)")
	fs.Var(&f.relayIPs, "relay-ip", "`ip` to allocate relayed addresses on; repeat, any number per family (YAML relay_ips; default: specific listen IPs, else interface addresses)")
	fs.Var(&f.extIP, "external-ip", "`relayIP=advertisedIP` for 1:1 NAT; repeat (YAML external_ips)")
	fs.IntVar(&f.minPort, "min-port", d.MinPort, "lowest relay port (YAML min_port)")
	fs.IntVar(&f.maxPort, "max-port", d.MaxPort, "highest relay port (YAML max_port)")
	fs.StringVar(&f.realm, "realm", d.Realm, "long-term credential realm (YAML realm)")
	fs.Var(&f.users, "user", "static user `name:password` or name:key=<hex MD5(name:realm:password)>; repeat (YAML users)")
	fs.Var(&f.secrets, "auth-secret", "TURN REST API shared `secret` (coturn use-auth-secret); repeat for rotation (YAML auth_secrets)")
	fs.BoolVar(&f.allowLoopback, "allow-loopback-peers", false, "allow relaying to loopback peers (YAML allow_loopback_peers)")
	fs.Var(&f.allow, "allow-peer", "`CIDR` of peers to allow despite the default policy; repeat (YAML allow_peers)")
	fs.Var(&f.deny, "deny-peer", "`CIDR` of peers to deny; wins over allow; repeat (YAML deny_peers)")
	fs.IntVar(&f.maxAllocs, "max-allocations", 0, "total allocations, 508 beyond; 0 = port range only (YAML max_allocations)")
	fs.IntVar(&f.userQuota, "user-quota", 0, "allocations per user, 486 beyond; 0 = unlimited (YAML user_quota)")
	fs.IntVar(&f.bandwidth, "allocation-bandwidth", 0, "bytes/s per allocation, both directions; 0 = unlimited (YAML allocation_bandwidth)")
	fs.IntVar(&f.maxUnauth, "max-unauthenticated-streams", d.MaxUnauthStreams, "TCP/TLS connections not yet authenticated, all sources; 0 = no cap (YAML max_unauthenticated_streams)")
	fs.IntVar(&f.maxUnauthPerSource, "max-unauthenticated-streams-per-source", d.MaxUnauthStreamsPerSource, "the same per source IP (IPv6: per /64); 0 = no cap (YAML max_unauthenticated_streams_per_source)")
	fs.IntVar(&f.recvBuf, "recv-buffer", d.RecvBuffer, "listener socket receive buffer `bytes` (YAML recv_buffer)")
	fs.IntVar(&f.relayRecvBuf, "relay-recv-buffer", d.RelayRecvBuffer, "receive buffer `bytes` of each allocation's relay socket (YAML relay_recv_buffer)")
	fs.IntVar(&f.sendBuf, "send-buffer", d.SendBuffer, "socket send buffer `bytes` (YAML send_buffer)")
	fs.StringVar(&f.rawSend, "raw-send", d.RawSend, "`mode` auto, on or off: client-to-peer datagrams of many allocations per sendmmsg on raw IP sockets, needs CAP_NET_RAW (YAML raw_send)")
	fs.StringVar(&f.dataPlane, "data-plane", d.DataPlane, "`mode` on or off: per-core forwarding of UDP clients' channels and indications; off leaves every datagram to pion (YAML data_plane)")
	fs.StringVar(&f.metrics, "metrics", "", "`ip:port` for /metrics, /healthz, /readyz; empty = off (YAML metrics)")
	fs.StringVar(&f.logLevel, "log-level", d.LogLevel, "trace, debug, info, warn or error; trace adds pion's per-packet logs (YAML log_level)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", time.Duration(d.DrainTimeout), "on SIGTERM, wait this long for allocations to end (YAML drain_timeout)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: isthmus relay [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Runs the dual-stack TURN relay. With no flags it listens on 0.0.0.0:3478 and [::]:3478")
		fmt.Fprintln(stderr, "(UDP and TCP) and, when no --user or --auth-secret is given, generates a credential and")
		fmt.Fprintln(stderr, "prints it. It never relays without authentication. SIGTERM/SIGINT drain then stop;")
		fmt.Fprintln(stderr, "SIGHUP reloads users, secrets, peer policy and quotas from --config.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	return fs, f
}

// apply copies every flag given on the command line onto cfg.
func (f *relayFlags) apply(fs *flag.FlagSet, cfg *relay.Config) {
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "listen":
			cfg.Listen = f.listen
		case "tls-listen":
			cfg.TLSListen = f.tlsListen
		case "tls-cert":
			cfg.TLSCert = f.tlsCert
		case "tls-key":
			cfg.TLSKey = f.tlsKey
		case "listener-sockets":
			cfg.ListenerSockets = f.listenerSockets
		case "relay-ip":
			cfg.RelayIPs = f.relayIPs
		case "external-ip":
			cfg.ExternalIPs = relay.ExternalIPs(f.extIP)
		case "min-port":
			cfg.MinPort = f.minPort
		case "max-port":
			cfg.MaxPort = f.maxPort
		case "realm":
			cfg.Realm = f.realm
		case "user":
			cfg.Users = f.users
		case "auth-secret":
			cfg.AuthSecrets = f.secrets
		case "allow-loopback-peers":
			cfg.AllowLoopbackPeers = f.allowLoopback
		case "allow-peer":
			cfg.AllowPeers = f.allow
		case "deny-peer":
			cfg.DenyPeers = f.deny
		case "max-allocations":
			cfg.MaxAllocations = f.maxAllocs
		case "user-quota":
			cfg.UserQuota = f.userQuota
		case "allocation-bandwidth":
			cfg.AllocationBandwidth = f.bandwidth
		case "max-unauthenticated-streams":
			cfg.MaxUnauthStreams = f.maxUnauth
		case "max-unauthenticated-streams-per-source":
			cfg.MaxUnauthStreamsPerSource = f.maxUnauthPerSource
		case "recv-buffer":
			cfg.RecvBuffer = f.recvBuf
		case "relay-recv-buffer":
			cfg.RelayRecvBuffer = f.relayRecvBuf
		case "send-buffer":
			cfg.SendBuffer = f.sendBuf
		case "raw-send":
			cfg.RawSend = f.rawSend
		case "data-plane":
			cfg.DataPlane = f.dataPlane
		case "metrics":
			cfg.Metrics = f.metrics
		case "log-level":
			cfg.LogLevel = f.logLevel
		case "drain-timeout":
			cfg.DrainTimeout = relay.Duration(f.drainTimeout)
		}
	})
}

// loadRelayConfig builds the effective configuration: defaults, then the
// YAML file, then the flags given.
func (f *relayFlags) load(fs *flag.FlagSet) (relay.Config, error) {
	cfg := relay.DefaultConfig()
	if f.config != "" {
		var err error
		if cfg, err = relay.LoadConfigFile(f.config); err != nil {
			return cfg, err
		}
	}
	f.apply(fs, &cfg)
	return cfg, nil
}

func runRelay(args []string, _, stderr io.Writer) int {
	fs, f := newRelayFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "isthmus relay: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := f.load(fs)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay: %v\n", err)
		return 2
	}
	// Never an open relay: with no credentials at all, make one up and say so.
	var generated string
	if len(cfg.Users) == 0 && len(cfg.AuthSecrets) == 0 {
		pw, err := randomPassword()
		if err != nil {
			fmt.Fprintf(stderr, "isthmus relay: generate credential: %v\n", err)
			return 1
		}
		generated = "isthmus:" + pw
		cfg.Users = []string{generated}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "isthmus relay: %v\n", err)
		return 2
	}
	lvl, _ := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel))
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Str("component", "relay").Logger()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if generated != "" {
		// Printed before "relay ready" so a script that waits for that line
		// has the credential already.
		user, pw, _ := strings.Cut(generated, ":")
		log.Warn().Str("user", user).Str("password", pw).Str("realm", cfg.Realm).
			Msg("no credentials configured; generated one")
		fmt.Fprintf(stderr, "isthmus relay: no credentials configured; generated user %q password %q (realm %s)\n",
			user, pw, cfg.Realm)
	}
	srv, err := relay.New(cfg, log, reg)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus relay: %v\n", err)
		if errors.Is(err, relay.ErrConfig) {
			return 2
		}
		return 1
	}

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reloadRelay(srv, f, fs, generated, log)
			continue
		}
		return stopRelay(srv, cfg, sigs, log)
	}
	return 0
}

func reloadRelay(srv *relay.Server, f *relayFlags, fs *flag.FlagSet, generated string, log zerolog.Logger) {
	if f.config == "" {
		log.Info().Msg("SIGHUP: no --config file; nothing to reload")
		return
	}
	cfg, err := f.load(fs)
	if err == nil {
		if generated != "" && len(cfg.Users) == 0 && len(cfg.AuthSecrets) == 0 {
			cfg.Users = []string{generated}
		}
		err = srv.Reload(cfg)
	}
	if err != nil {
		log.Error().Err(err).Msg("SIGHUP: reload")
	}
}

func stopRelay(srv *relay.Server, cfg relay.Config, sigs <-chan os.Signal, log zerolog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.DrainTimeout))
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
	if err := srv.Drain(ctx); err != nil {
		log.Warn().Err(err).Msg("drain incomplete; closing")
	}
	if err := srv.Close(); err != nil {
		log.Error().Err(err).Msg("close")
		return 1
	}
	return 0
}

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
