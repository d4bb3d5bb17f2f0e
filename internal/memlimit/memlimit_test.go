package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	// Unset (or empty, which the runtime reads as unset): cairn's limit.
	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	if got := Set(Transfer); got != Transfer {
		t.Errorf("GOMEMLIMIT unset: Set returned %d, want %d", got, Transfer)
	}
	if got := debug.SetMemoryLimit(-1); got != Transfer {
		t.Errorf("GOMEMLIMIT unset: limit %d, want %d", got, Transfer)
	}

	// Set by the user (here, what the runtime did with GOMEMLIMIT=100MiB at
	// start): left alone.
	for _, env := range []string{"100MiB", "off"} {
		t.Setenv("GOMEMLIMIT", env)
		debug.SetMemoryLimit(100 << 20)
		if got := Set(Transfer); got != 100<<20 {
			t.Errorf("GOMEMLIMIT=%s: Set returned %d, want the user's %d", env, got, 100<<20)
		}
		if got := debug.SetMemoryLimit(-1); got != 100<<20 {
			t.Errorf("GOMEMLIMIT=%s: limit %d, want the user's %d", env, got, 100<<20)
		}
	}
}
