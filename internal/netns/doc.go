// Package netns builds throw-away Linux network namespaces joined by veth
// pairs and bridges, for tests and demos that need hosts whose missing
// address family is really missing.
//
// Everything is done with iproute2 (`ip netns`, `ip -n NS link/addr`) and,
// where a socket or a sysctl must belong to a namespace, with a goroutine
// locked to an OS thread that has joined the namespace (setns) for exactly
// that one call. The root namespace is never given an address or a route:
// both ends of every veth are created inside namespaces of the same [Run].
//
// A [Run] owns every namespace it creates. Names are
// "isthmus-<pid>-<random>-<role>", so parallel runs never clash and a later
// [Sweep] can recognise the leftovers of a run whose process died (killed
// with SIGKILL, say) and delete them.
//
//	run, err := netns.NewRun()
//	if err != nil { ... }                // ErrNotRoot when not root
//	defer run.Close()                    // kills what runs inside, deletes all
//	a, _ := run.Namespace(ctx, "a")
//	b, _ := run.Namespace(ctx, "b")
//	_ = netns.Veth(ctx, a, "eth0", b, "eth0")
//	_ = a.AddAddr(ctx, "eth0", netip.MustParsePrefix("2001:db8::1/64"))
//	cmd := a.Command(ctx, "/path/to/program", "arg")   // runs inside a
package netns
