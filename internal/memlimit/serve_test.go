package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1234": 1234, "512B": 512, "4KiB": 4 << 10, "768MiB": 768 << 20, "2GiB": 2 << 30, "1TiB": 1 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "1.5GiB", "2G", "lots", "99999999999TiB", "+1", "+1MiB", "-0", " 1"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestCgroupLimit reads a cgroup's memory limit from fake v2 and v1
// hierarchies, with and without a limit.
func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name, cgroup string
		files        map[string]string
		want         int64
		ok           bool
	}{
		{"v2 limit", "0::/app.slice/cairn.service\n", map[string]string{"sys/fs/cgroup/app.slice/cairn.service/memory.max": "1073741824\n"}, 1 << 30, true},
		{"v2 no limit", "0::/app\n", map[string]string{"sys/fs/cgroup/app/memory.max": "max\n"}, 0, false},
		{"v2 namespaced (root)", "0::/\n", map[string]string{"sys/fs/cgroup/memory.max": "536870912\n"}, 512 << 20, true},
		{"v1 limit", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", map[string]string{"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20, true},
		{"v1 no limit", "4:memory:/x\n", map[string]string{"sys/fs/cgroup/memory/x/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"no cgroup files", "0::/gone\n", nil, 0, false},
		{"v2 parent slice limit", "0::/system.slice/cairn.service\n", map[string]string{
			"sys/fs/cgroup/system.slice/cairn.service/memory.max": "max\n",
			"sys/fs/cgroup/system.slice/memory.max":               "805306368\n",
		}, 768 << 20, true},
		{"v2 parent smaller", "0::/a/b/c\n", map[string]string{
			"sys/fs/cgroup/a/b/c/memory.max": "1073741824\n",
			"sys/fs/cgroup/a/b/memory.max":   "max\n",
			"sys/fs/cgroup/a/memory.max":     "536870912\n",
			"sys/fs/cgroup/memory.max":       "2147483648\n",
		}, 512 << 20, true},
		{"v2 child smaller", "0::/a/b\n", map[string]string{
			"sys/fs/cgroup/a/b/memory.max": "268435456\n",
			"sys/fs/cgroup/a/memory.max":   "536870912\n",
		}, 256 << 20, true},
		{"v2 all max", "0::/a/b\n", map[string]string{
			"sys/fs/cgroup/a/b/memory.max": "max\n",
			"sys/fs/cgroup/a/memory.max":   "max\n",
			"sys/fs/cgroup/memory.max":     "max\n",
		}, 0, false},
		{"v2 path climbing out", "0::/../..\n", map[string]string{"memory.max": "268435456\n", "sys/memory.max": "268435456\n", "sys/fs/cgroup/memory.max": "268435456\n"}, 0, false},
		{"v2 path with ..", "0::/a/../../..\n", map[string]string{"memory.max": "268435456\n", "sys/fs/cgroup/memory.max": "268435456\n"}, 0, false},
		{"v1 parent limit", "4:memory:/docker/abc\n", map[string]string{
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
			"sys/fs/cgroup/memory/docker/memory.limit_in_bytes":     "268435456\n",
		}, 256 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{"proc/self/cgroup": tc.cgroup}
			for k, v := range tc.files {
				files[k] = v
			}
			for p, body := range files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, p), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got, ok := CgroupLimit(root); got != tc.want || ok != tc.ok {
				t.Errorf("CgroupLimit = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestForServe(t *testing.T) {
	if got, _, err := ForServe("off"); err != nil || got != math.MaxInt64 {
		t.Errorf(`ForServe("off") = %d, %v; want no limit`, got, err)
	}
	if got, _, err := ForServe("600MiB"); err != nil || got != 600<<20 {
		t.Errorf(`ForServe("600MiB") = %d, %v`, got, err)
	}
	for _, bad := range []string{"0", "some"} {
		if _, _, err := ForServe(bad); err == nil {
			t.Errorf("ForServe(%q): no error", bad)
		}
	}
	want := int64(math.MaxInt64)
	if n, ok := CgroupLimit("/"); ok {
		want, _ = AutoLimit(n)
	}
	if got, _, err := ForServe("auto"); err != nil || got != want {
		t.Errorf(`ForServe("auto") = %d, %v; want %d (this machine's cgroup)`, got, err, want)
	}
}

// TestAutoLimit: a large cgroup gives the runtime 90%, a small one all but
// CgroupReserve, a tiny one half (and says the headroom is small).
func TestAutoLimit(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		n, want int64
		tight   bool
	}{
		{4000 * MiB, 3600 * MiB, false}, // 90%: 400 MiB left
		{960 * MiB, 864 * MiB, false},   // 90% and n-96MiB meet
		{512 * MiB, 416 * MiB, false},   // n-96MiB, not 460
		{256 * MiB, 160 * MiB, false},   // not the 230 MiB that OOMs
		{192 * MiB, 96 * MiB, false},
		{128 * MiB, 64 * MiB, true}, // floor n/2
		{64 * MiB, 32 * MiB, true},
	} {
		got, tight := AutoLimit(tc.n)
		if got != tc.want || tight != tc.tight {
			t.Errorf("AutoLimit(%d MiB) = %d MiB (%d), %v; want %d MiB, %v", tc.n/MiB, got/MiB, got, tight, tc.want/MiB, tc.tight)
		}
	}
}
