package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// maxSize is the budget of the stripped linux/arm64 binary (issue 17).
const maxSize = 15_000_000

// TestSizeArm64 cross-compiles cairn-agent for linux/arm64, stripped, and
// fails over maxSize. Skipped with -short (a cold cross-build takes a
// minute on 2 cores).
func TestSizeArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-build: skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "cairn-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cairn-agent linux/arm64 stripped: %.1f MB", float64(fi.Size())/1e6)
	if fi.Size() > maxSize {
		t.Errorf("cairn-agent is %d bytes for linux/arm64, over the %d budget", fi.Size(), maxSize)
	}
}
