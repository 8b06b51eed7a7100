//go:build !linux

package relay

// The relay is Linux-only: its listeners use SO_REUSEPORT groups and
// SO_RCVBUFFORCE/SO_SNDBUFFORCE (listen.go), and its data plane batched
// Linux socket I/O. Every other file of the package is built only on Linux,
// so on another OS the build stops here, with the reason in the error:
var _ int = "relay: linux only"
