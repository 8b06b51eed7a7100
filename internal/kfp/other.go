//go:build !linux

package kfp

import "net/netip"

// Config sizes a Table.
type Config struct {
	MaxAllocations int
	MaxChannels    int
}

// Table is unavailable off Linux: New returns ErrUnsupported.
type Table struct{}

// AttachMode says how the program hangs off an interface.
type AttachMode int

// New returns ErrUnsupported.
func New(Config) (*Table, error) { return nil, ErrUnsupported }

// Probe reports that the kernel fast path needs Linux.
func Probe() (bool, string) { return false, ErrUnsupported.Error() }

// NewAllocation returns ErrUnsupported.
func (*Table) NewAllocation() (Alloc, error) { return Alloc{}, ErrUnsupported }

// DeleteAllocation returns ErrUnsupported.
func (*Table) DeleteAllocation(Alloc) (AllocStats, error) { return AllocStats{}, ErrUnsupported }

// Install returns ErrUnsupported.
func (*Table) Install(Channel) error { return ErrUnsupported }

// Remove returns ErrUnsupported.
func (*Table) Remove(Channel) error { return ErrUnsupported }

// Sync returns ErrUnsupported.
func (*Table) Sync(Alloc, []Channel, []netip.Addr) error { return ErrUnsupported }

// Suspend returns ErrUnsupported.
func (*Table) Suspend(Alloc) error { return ErrUnsupported }

// Resume returns ErrUnsupported.
func (*Table) Resume(Alloc) error { return ErrUnsupported }

// Stats returns ErrUnsupported.
func (*Table) Stats() (Stats, error) { return Stats{}, ErrUnsupported }

// Attach returns ErrUnsupported.
func (*Table) Attach(string) (AttachMode, error) { return 0, ErrUnsupported }

// Close does nothing.
func (*Table) Close() error { return nil }
