package netns

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Sweep deletes the namespaces that earlier runs left behind: names that
// carry [Prefix] and whose creating process (the pid in the name) no longer
// exists. Namespaces of live runs, this one included, are left alone. It
// returns the names it deleted.
func Sweep(ctx context.Context) ([]string, error) {
	ours, err := List(ctx)
	if err != nil {
		return nil, err
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoIproute2, err)
	}
	var deleted []string
	var errs []error
	for _, name := range ours {
		pid, ok := ownerPID(name)
		if !ok || processAlive(pid) {
			continue
		}
		if err := deleteNamespace(ctx, ip, name); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, name)
	}
	return deleted, errors.Join(errs...)
}

// List returns the names of all namespaces that carry [Prefix], live or not.
func List(ctx context.Context) ([]string, error) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoIproute2, err)
	}
	out, err := runIP(ctx, ip, "netns", "list")
	if err != nil {
		return nil, err
	}
	var ours []string
	for _, name := range parseList(out) {
		if strings.HasPrefix(name, Prefix) {
			ours = append(ours, name)
		}
	}
	return ours, nil
}

// parseList reads `ip netns list` output: "name" or "name (id: 3)" per line.
func parseList(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// ownerPID extracts the pid from "isthmus-<pid>-<random>-<role>".
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
