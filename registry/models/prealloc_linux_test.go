package models

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A preallocated download keeps the size of what was written (a resume
// starts from it) while its blocks are reserved.
func TestPreallocateKeepsSize(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	preallocate(f, 4<<20)
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 3 {
		t.Fatalf("size after preallocate: %d, want 3", fi.Size())
	}
	st := fi.Sys().(*syscall.Stat_t)
	t.Logf("blocks reserved: %d bytes", st.Blocks*512)
	preallocate(f, 0) // nothing to reserve: no call, no error
}
