// Package lockedbuf is a bytes buffer that several goroutines may write
// while another reads it: a child process's stdout and stderr, a logger's
// output, a command's stderr under test. With Max set it keeps only the
// last Max bytes, for the tail of a long-running process's output.
package lockedbuf

import (
	"bytes"
	"sync"
)

// Buffer is a goroutine-safe bytes.Buffer. The zero value is an empty,
// unbounded buffer.
type Buffer struct {
	// Max, when positive, bounds the buffer to the last Max bytes written.
	// Set it before the first Write.
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p (dropping the oldest bytes beyond Max); it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.Max; b.Max > 0 && extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

// String returns a copy of what the buffer holds.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len is the number of bytes the buffer holds.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
