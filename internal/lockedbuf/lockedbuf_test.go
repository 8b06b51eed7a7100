package lockedbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestBufferKeepsTheTail(t *testing.T) {
	b := &Buffer{Max: 8}
	_, _ = b.Write([]byte("0123456789"))
	_, _ = b.Write([]byte("ab"))
	if got := b.String(); got != "456789ab" {
		t.Fatalf("String() = %q, want the last 8 bytes %q", got, "456789ab")
	}
}

func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = b.Write([]byte("x\n"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "x\n"); got != 800 || b.Len() != 1600 {
		t.Fatalf("%d lines, %d bytes; want 800 lines, 1600 bytes", got, b.Len())
	}
}
