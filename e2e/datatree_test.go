package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDataTreeStreams: `cairn data ls` and `data diff` of a large tree
// (CAIRN_TREE_ENTRIES entries, default 300,000; bench/datatree runs ten
// million) keep their peak RSS within 256 MiB, and a tree over
// --max-entries is refused with an error naming the limit.
func TestDataTreeStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("large tree")
	}
	n := 300_000
	if v := os.Getenv("CAIRN_TREE_ENTRIES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	bin := cairnBin(t)
	work := t.TempDir()
	gen := filepath.Join(work, "gentree")
	build := exec.Command("go", "build", "-o", gen, "./bench/datatree/gentree")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gentree: %v\n%s", err, out)
	}
	storeDir := filepath.Join(work, "store")
	digest := func(seed int) string {
		return strings.TrimSpace(run(t, work, gen, storeDir, strconv.Itoa(n), strconv.Itoa(n/1000+1), strconv.Itoa(seed)))
	}
	a, b := digest(1), digest(2)
	store := "file://" + storeDir
	// peak runs cairn with stdout counted, not kept, and returns the
	// child's VmHWM as last read from /proc while it ran (rusage's maxrss
	// would count the test process the child was forked from).
	peak := func(args ...string) (int64, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		lc := &lineCounter{}
		cmd.Stdout = lc
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var hwm int64
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
				}
				return hwm, fmt.Sprintf("%d lines", lc.n)
			case <-time.After(20 * time.Millisecond):
				if v := vmHWM(cmd.Process.Pid); v > 0 {
					hwm = v
				}
			}
		}
	}
	for _, tc := range []struct {
		name  string
		args  []string
		lines int
	}{
		{"ls", []string{"data", "ls", a, "--store", store}, n + 1},
		{"ls -o json", []string{"data", "ls", a, "--store", store, "-o", "json"}, n + 2},
		// One file in 16 changed.
		{"diff", []string{"data", "diff", a, b, "--store", store}, -1},
	} {
		rss, lines := peak(tc.args...)
		t.Logf("cairn data %s of %d entries: peak RSS %d MiB, %s", tc.name, n, rss>>20, lines)
		if tc.lines > 0 && lines != fmt.Sprintf("%d lines", tc.lines) {
			t.Errorf("data %s: %s, want %d", tc.name, lines, tc.lines)
		}
		if rss > 256<<20 {
			t.Errorf("data %s: peak RSS %d MiB, want at most 256 MiB", tc.name, rss>>20)
		}
	}
	cmd := exec.Command(bin, "data", "ls", a, "--store", store, "--max-entries", strconv.Itoa(n-1))
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte(fmt.Sprintf("too many entries: more than %d", n-1))) {
		t.Errorf("ls over --max-entries: %v\n%s", err, out)
	}
}

type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// vmHWM is the peak resident memory of process pid, 0 when unreadable.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
