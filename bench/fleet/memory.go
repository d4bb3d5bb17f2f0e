package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// memBreakdown says what pid's RSS is made of: anonymous against
// file-backed pages (the binary), the Go runtime's own account from base's
// /metrics (heap in use, heap held but not returned to the OS, stacks, the
// runtime's structures, the next GC's goal, goroutines), and what is
// anonymous outside that account (SQLite's C allocator: modernc.org/libc
// maps its memory itself; the binary's data).
func memBreakdown(pid int, base string) string {
	st := procStatus(pid)
	m := goMetrics(base)
	idle := m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"]
	other := m["go_memstats_mspan_sys_bytes"] + m["go_memstats_mcache_sys_bytes"] + m["go_memstats_gc_sys_bytes"] + m["go_memstats_other_sys_bytes"] + m["go_memstats_buck_hash_sys_bytes"]
	goHeld := m["go_memstats_heap_inuse_bytes"] + idle + m["go_memstats_stack_sys_bytes"] + other
	mb := func(v float64) string { return fmt.Sprintf("%.0f", v/(1<<20)) }
	return fmt.Sprintf("RssAnon %s MiB, RssFile %s MiB; Go: heap in use %s, heap idle not returned %s, stacks %s, runtime other %s, GC goal %s MiB (memory limit %s); anonymous outside Go's account %s MiB; %.0f goroutines; load %s",
		mib(st["RssAnon:"]), mib(st["RssFile:"]),
		mb(m["go_memstats_heap_inuse_bytes"]), mb(idle), mb(m["go_memstats_stack_sys_bytes"]), mb(other),
		mb(m["go_memstats_next_gc_bytes"]), memLimit(m["go_gc_gomemlimit_bytes"]), mb(float64(st["RssAnon:"])-goHeld), m["go_goroutines"], loadavg())
}

func memLimit(v float64) string {
	if v <= 0 || v >= 1<<62 {
		return "none"
	}
	return fmt.Sprintf("%.0f MiB", v/(1<<20))
}

// procStatus returns the kB fields of /proc/PID/status in bytes.
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[2] == "kB" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			out[f[0]] = v << 10
		}
	}
	return out
}

var promLine = regexp.MustCompile(`(?m)^(go_[a-z_]+) (\S+)$`)

// goMetrics returns the unlabelled go_* gauges of base's /metrics.
func goMetrics(base string) map[string]float64 {
	out := map[string]float64{}
	b, err := scrape(base)
	if err != nil {
		return out
	}
	for _, m := range promLine.FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseFloat(string(bytes.TrimSpace(m[2])), 64)
		out[string(m[1])] = v
	}
	return out
}
