package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat and /proc/stat CPU
// times. Linux fixes it at 100 for user space on every architecture we run.
const clockTick = 10 * time.Millisecond

// readSelfCPU returns the user+system CPU time of this process.
func readSelfCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("bench: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// readProcCPU returns utime+stime of process pid (all its threads) from
// /proc/PID/stat, in clock ticks converted to a duration.
func readProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields after it start
	// behind the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * clockTick, nil
}

// readRSS returns VmRSS of process pid in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read rss of pid %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("bench: /proc/%d/status VmRSS %q: %w", pid, rest, err)
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("bench: /proc/%d/status: no VmRSS", pid)
}

// readCPUSoftirq returns the softirq time of one CPU (the 7th value of its
// cpuN line in /proc/stat).
func readCPUSoftirq(cpu int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("bench: read /proc/stat: %w", err)
	}
	want := "cpu" + strconv.Itoa(cpu)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == want {
			v, err := strconv.ParseUint(f[7], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/stat %s softirq %q: %w", want, f[7], err)
			}
			return time.Duration(v) * clockTick, nil
		}
	}
	return 0, fmt.Errorf("bench: /proc/stat: no line for %s", want)
}

// UDPCounters are the kernel's system-wide UDP error counters.
type UDPCounters struct {
	RcvbufErrors  uint64 `json:"rcvbuf_errors"`
	InErrors      uint64 `json:"in_errors"`
	RcvbufErrors6 uint64 `json:"rcvbuf_errors6"`
	InErrors6     uint64 `json:"in_errors6"`
}

// Sub returns c - o, counter by counter.
func (c UDPCounters) Sub(o UDPCounters) UDPCounters {
	return UDPCounters{
		RcvbufErrors: c.RcvbufErrors - o.RcvbufErrors, InErrors: c.InErrors - o.InErrors,
		RcvbufErrors6: c.RcvbufErrors6 - o.RcvbufErrors6, InErrors6: c.InErrors6 - o.InErrors6,
	}
}

// Drops is the total of receive-buffer drops, both families.
func (c UDPCounters) Drops() uint64 { return c.RcvbufErrors + c.RcvbufErrors6 }

// readUDPCounters reads /proc/net/snmp (Udp:) and /proc/net/snmp6 (Udp6*).
func readUDPCounters() (UDPCounters, error) {
	var c UDPCounters
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return c, fmt.Errorf("bench: read /proc/net/snmp: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if i >= len(names) {
				break
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			switch names[i] {
			case "RcvbufErrors":
				c.RcvbufErrors = n
			case "InErrors":
				c.InErrors = n
			}
		}
	}
	b, err = os.ReadFile("/proc/net/snmp6")
	if err != nil {
		return c, fmt.Errorf("bench: read /proc/net/snmp6: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "Udp6RcvbufErrors":
			c.RcvbufErrors6 = n
		case "Udp6InErrors":
			c.InErrors6 = n
		}
	}
	return c, nil
}

// readProcRuntime returns the CPU time of every current thread of pid with
// nanosecond resolution: the sum of the first field (time spent on a CPU)
// of /proc/PID/task/*/schedstat. It is finer than the 10 ms ticks of
// /proc/PID/stat, which matters for short runs at low load; threads that
// exited during the run are missing from it (relay threads are long-lived).
func readProcRuntime(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("bench: read threads of pid %d: %w", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, fmt.Errorf("bench: %s/%s/schedstat: empty", dir, t.Name())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: %s/%s/schedstat %q: %w", dir, t.Name(), f[0], err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// IRQTimeAccounting reports the kernel's CONFIG_IRQ_TIME_ACCOUNTING from
// /proc/config.gz: "on", "off" or "unknown". When it is off, softirq work
// done while the relay was running counts in the relay's own CPU time and in
// its CPU's softirq column alike, so process+softirq double counts it.
func IRQTimeAccounting() string {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "unknown"
	}
	b, err := io.ReadAll(io.LimitReader(zr, 4<<20))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch line {
		case "CONFIG_IRQ_TIME_ACCOUNTING=y":
			return "on"
		case "# CONFIG_IRQ_TIME_ACCOUNTING is not set":
			return "off"
		}
	}
	return "unknown"
}

// socketInodes returns the inodes of the sockets process pid holds open.
func socketInodes(pid int) (map[string]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bench: list fds of pid %d: %w", pid, err)
	}
	out := make(map[string]bool, len(fds))
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/" + fd.Name())
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return out, nil
}

// socketDrops sums the per-socket drop counters (the last column of
// /proc/net/udp and /proc/net/udp6) of the sockets pid holds. Sockets live
// for one run, so the total is the drops of that run.
func socketDrops(pid int) (uint64, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			return 0, fmt.Errorf("bench: read %s: %w", name, err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 13 || !inodes[f[9]] {
				continue
			}
			n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: %s drops %q: %w", name, f[len(f)-1], err)
			}
			sum += n
		}
	}
	return sum, nil
}
