package memlimit

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CgroupShare and CgroupReserve set what `cairn serve --memory-limit auto`
// gives the Go runtime of a cgroup memory limit n: min(CgroupShare*n,
// n-CgroupReserve), never below n/2 (AutoLimit). The cgroup also counts
// what the runtime does not: the binary's mapped pages (~55 MiB of cairn
// serve's RSS) and SQLite's C allocator (modernc.org/libc, measured under
// 20 MiB at 100,000 targets), so a flat 90% of a small limit (230 of 256
// MiB) leaves too little and the cgroup kills the process first.
const (
	CgroupShare   = 0.9
	CgroupReserve = 96 << 20
)

// AutoLimit is the soft limit --memory-limit auto takes from a cgroup
// memory limit of n bytes, and whether the floor n/2 cut into
// CgroupReserve (a cgroup under 192 MiB: the headroom outside the Go
// runtime is then smaller than cairn serve is known to need).
func AutoLimit(n int64) (limit int64, tight bool) {
	limit = min(int64(float64(n)*CgroupShare), n-CgroupReserve)
	if limit < n/2 {
		return n / 2, true
	}
	return limit, false
}

// ForServe returns the soft memory limit for `cairn serve --memory-limit
// v`: a size as GOMEMLIMIT spells it (768MiB, 2GiB, a number of bytes),
// "off" for none, or "auto": AutoLimit of the memory limit of the
// process's cgroup when it has one, else none. None is math.MaxInt64, as
// for debug.SetMemoryLimit. warn, when not empty, says the limit leaves
// little room outside the Go runtime.
func ForServe(v string) (limit int64, warn string, err error) {
	switch v {
	case "off":
		return math.MaxInt64, "", nil
	case "auto", "":
		if n, ok := CgroupLimit("/"); ok {
			limit, tight := AutoLimit(n)
			if tight {
				warn = fmt.Sprintf("cgroup memory limit of %d MiB leaves %d MiB outside the Go runtime's %d MiB; cairn serve's binary pages and SQLite's allocator need ~%d MiB",
					n>>20, (n-limit)>>20, limit>>20, CgroupReserve>>20)
			}
			return limit, warn, nil
		}
		return math.MaxInt64, "", nil
	}
	n, err := ParseSize(v)
	if err != nil || n <= 0 {
		return 0, "", fmt.Errorf("memory limit %q: want auto, off or a size such as 768MiB", v)
	}
	return n, "", nil
}

// ParseSize reads a size as GOMEMLIMIT spells it: a number of bytes with
// an optional suffix B, KiB, MiB, GiB or TiB.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	if s == "" || s[0] < '0' || s[0] > '9' { // ParseInt would take a sign
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional B, KiB, MiB, GiB or TiB", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional B, KiB, MiB, GiB or TiB", s)
	}
	return n * mult, nil
}

// CgroupLimit returns the memory limit of this process's cgroup (v2
// memory.max, else v1 memory.limit_in_bytes), with root the system's root
// folder ("/"; tests pass another); false when there is none or it cannot
// be read. A parent's limit binds too (a systemd slice's MemoryMax=): the
// smallest limit from the process's cgroup up to the hierarchy's root
// counts, "max" at one level meaning none there. Inside a container, the
// cgroup namespace shows the container's own cgroup at the root of the
// hierarchy. A cgroup path with a ".." element (a process outside the
// reader's cgroup namespace shows as /../..) is not followed.
func CgroupLimit(root string) (int64, bool) {
	f, err := os.Open(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	best, found := int64(0), false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") || slices.Contains(strings.Split(parts[2], "/"), "..") {
			continue
		}
		var base, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			base, file = filepath.Join(root, "sys/fs/cgroup"), "memory.max"
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			base, file = filepath.Join(root, "sys/fs/cgroup/memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		for dir := path.Clean(parts[2]); ; dir = path.Dir(dir) {
			if n, ok := readLimit(filepath.Join(base, filepath.FromSlash(dir), file)); ok && (!found || n < best) {
				best, found = n, true
			}
			if dir == "/" {
				break
			}
		}
	}
	return best, found
}

// readLimit reads one memory.max or memory.limit_in_bytes; false for "max",
// v1's page-rounded MaxInt64 and anything unreadable.
func readLimit(file string) (int64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}
