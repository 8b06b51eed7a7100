//go:build linux

package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sort"
	"strings"
)

// restartTag marks a Config field that a running server cannot change
// (reload:"restart"): Reload leaves it as it is and names it in an error
// wrapping ErrRestartRequired.
const restartTag = "restart"

// restartOnly lists the indexes of Config's reload:"restart" fields.
var restartOnly = func() []int {
	var idx []int
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("reload") == restartTag {
			idx = append(idx, i)
		}
	}
	return idx
}()

// yamlKey is the name a field has in the file and in errors.
func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return k
}

// restartFields names the restart-only fields in which next differs from
// running, in field order.
func restartFields(running, next Config) []string {
	rv, nv := reflect.ValueOf(running), reflect.ValueOf(next)
	var names []string
	for _, i := range restartOnly {
		if !sameValue(rv.Field(i), nv.Field(i)) {
			names = append(names, yamlKey(rv.Type().Field(i)))
		}
	}
	return names
}

// keepRestartFields returns next with every restart-only field taken from
// running: what the server keeps running with after a Reload.
func keepRestartFields(next, running Config) Config {
	nv, rv := reflect.ValueOf(&next).Elem(), reflect.ValueOf(running)
	for _, i := range restartOnly {
		nv.Field(i).Set(rv.Field(i))
	}
	return next
}

// sameValue treats an empty and a nil list as the same.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// ErrRestartRequired is wrapped by Reload when the new configuration changes
// fields that only a restart applies (listeners, relay IPs, ports, realm,
// TLS, buffers, metrics address, log level). The reloadable part is applied
// anyway.
var ErrRestartRequired = errors.New("relay: reload: some fields need a restart")

// Reload applies a new configuration without dropping allocations: users,
// auth secrets, peer policy (allow/deny/loopback) and quotas are swapped
// atomically. The new peer policy also applies to live permissions: traffic
// to and from a peer it denies stops at once (the allocation stays). Fields that need a restart are left as they are and named
// in an error wrapping ErrRestartRequired (the rest is still applied).
func (s *Server) Reload(cfg Config) error {
	if s.closed.Load() {
		return ErrClosed
	}
	res, err := cfg.resolve()
	s.opsMetrics.reloaded(err == nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cfg
	restart := restartFields(old, cfg)
	// The realm is fixed inside pion for the server's life, so keys are
	// always computed with the running realm.
	s.creds.Store(newCredentials(old.Realm, reRealmUsers(cfg, old.Realm, res.users), res.secrets))
	pol := newPeerPolicy(res, cfg.AllowLoopbackPeers, s.own, s.relayed)
	s.policy.Store(pol)
	// Live permissions to peers the new policy denies stop relaying now
	// (data plane here, pion's path in relayConn), rather than when they
	// expire; the client's refresh of them is already answered 403.
	suspended := s.fwd.FilterPeers(func(a netip.Addr) bool { return pol.Check(a).Allowed })
	s.limits.Store(s.newLimits(cfg))
	s.alt.Store(res.alternates)
	s.cfg = keepRestartFields(cfg, old)
	s.reloadCert()
	s.log.Info("config reloaded", slog.Int("users", len(res.users)), slog.Int("auth_secrets", len(res.secrets)), slog.Int("allocations", s.liveAllocations()), slog.Int("permissions_suspended", suspended), slog.Any("needs_restart", restart))
	if len(restart) > 0 {
		sort.Strings(restart)
		return fmt.Errorf("%w: %s", ErrRestartRequired, strings.Join(restart, ", "))
	}
	return nil
}

// reRealmUsers recomputes plaintext users' keys with the running realm.
func reRealmUsers(cfg Config, realm string, users []staticUser) []staticUser {
	if cfg.Realm == realm {
		return users
	}
	_, all, _ := cfg.fileSecrets() // read once more by resolve just before
	out := make([]staticUser, 0, len(all))
	for _, u := range all {
		if su, err := parseUser(u, realm); err == nil {
			out = append(out, su)
		}
	}
	return out
}
