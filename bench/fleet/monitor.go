package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
)

// monitor watches, phase by phase, what the run costs and where it is
// bound: CPU seconds of every replica, of this client and of the
// PostgreSQL backends serving the bench's database, the machine's busy
// share, PostgreSQL connections (sampled), and RSS at the phase's end.
type monitor struct {
	pids []int // the replicas
	db   *sqldb.DB
	name string // the bench's database

	mu     sync.Mutex
	conns  int            // largest connection count seen in this phase
	active int            // largest count of active ones
	pg     map[int]uint64 // CPU ticks of each backend when first or last seen
	pgUsed uint64         // ticks the backends used in this phase

	phases []phaseCost
}

// phaseCost is what one phase used.
type phaseCost struct {
	name             string
	wall             time.Duration
	replicaCPU       []float64 // seconds, per replica
	clientCPU, pgCPU float64   // seconds
	busy             float64   // share of all cores, 0..1
	conns, active    int
	replicaRSS       []int64
	clientRSS        int64
	pgSeen           bool
	note             string
}

// newMonitor watches pids; dbURL, when set, is the PostgreSQL database
// whose connections and backends it samples (through serverURL, which
// must let it read pg_stat_activity).
func newMonitor(ctx context.Context, pids []int, serverURL, dbURL string) *monitor {
	m := &monitor{pids: pids, pg: map[int]uint64{}}
	if dbURL != "" {
		if u, err := url.Parse(dbURL); err == nil {
			m.name = strings.TrimPrefix(u.Path, "/")
		}
		db, err := sqldb.Open(ctx, serverURL)
		if err == nil {
			db.SetMaxOpenConns(1)
			m.db = db
			go m.sample(ctx)
		}
	}
	return m
}

func (m *monitor) close() {
	if m.db != nil {
		m.db.Close()
	}
}

// sample reads pg_stat_activity twice a second until ctx ends.
func (m *monitor) sample(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rows, err := m.db.QueryContext(ctx, `SELECT pid, state FROM pg_stat_activity WHERE datname = $1`, m.name)
		if err != nil {
			continue
		}
		n, active := 0, 0
		var pids []int
		for rows.Next() {
			var pid int
			var state *string
			if rows.Scan(&pid, &state) == nil {
				n++
				if state != nil && *state == "active" {
					active++
				}
				pids = append(pids, pid)
			}
		}
		rows.Close()
		m.mu.Lock()
		m.conns, m.active = max(m.conns, n), max(m.active, active)
		for _, pid := range pids {
			ticks, ok := procTicks(pid)
			if !ok {
				continue
			}
			if last, seen := m.pg[pid]; seen && ticks >= last {
				m.pgUsed += ticks - last
			}
			m.pg[pid] = ticks
		}
		m.mu.Unlock()
	}
}

// ticksPerSecond is USER_HZ, 100 on Linux.
const ticksPerSecond = 100

// procTicks returns utime+stime of pid in clock ticks.
func procTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st, true
}

// machineTicks returns the busy and total ticks of all cores.
func machineTicks() (busy, total uint64) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for k, v := range f[1:] {
		x, _ := strconv.ParseUint(v, 10, 64)
		total += x
		if k != 3 && k != 4 { // idle, iowait
			busy += x
		}
	}
	return busy, total
}

// phase starts a phase; the returned function ends it, prints its costs
// and keeps them for the summary (note is said after the figures).
func (m *monitor) phase(name string) func(note string) {
	start := time.Now()
	rt := make([]uint64, len(m.pids))
	for k, pid := range m.pids {
		rt[k], _ = procTicks(pid)
	}
	ct, _ := procTicks(os.Getpid())
	mb, mt := machineTicks()
	m.mu.Lock()
	m.conns, m.active, m.pgUsed = 0, 0, 0
	m.mu.Unlock()
	return func(note string) {
		c := phaseCost{name: name, wall: time.Since(start), note: note}
		for k, pid := range m.pids {
			t, _ := procTicks(pid)
			c.replicaCPU = append(c.replicaCPU, float64(t-rt[k])/ticksPerSecond)
			r, _ := rss(pid)
			c.replicaRSS = append(c.replicaRSS, r)
		}
		t, _ := procTicks(os.Getpid())
		c.clientCPU = float64(t-ct) / ticksPerSecond
		c.clientRSS, _ = rss(os.Getpid())
		b, tot := machineTicks()
		if tot > mt {
			c.busy = float64(b-mb) / float64(tot-mt)
		}
		m.mu.Lock()
		c.conns, c.active, c.pgCPU, c.pgSeen = m.conns, m.active, float64(m.pgUsed)/ticksPerSecond, m.db != nil
		m.mu.Unlock()
		m.phases = append(m.phases, c)
		fmt.Printf("  [%s] %s\n", name, c.String())
		if note != "" {
			fmt.Printf("  [%s] %s\n", name, note)
		}
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

// String says the phase's costs on one line.
func (c phaseCost) String() string {
	var b strings.Builder
	w := c.wall.Seconds()
	fmt.Fprintf(&b, "%s wall; CPU (cores busy):", c.wall.Round(time.Millisecond))
	for k, s := range c.replicaCPU {
		fmt.Fprintf(&b, " replica %d %.2f", k, s/w)
	}
	fmt.Fprintf(&b, ", bench client %.2f", c.clientCPU/w)
	if c.pgSeen {
		fmt.Fprintf(&b, ", postgres backends %.2f", c.pgCPU/w)
	}
	fmt.Fprintf(&b, "; machine %.0f%% busy", 100*c.busy)
	if c.pgSeen {
		fmt.Fprintf(&b, "; PostgreSQL connections peak %d (%d active)", c.conns, c.active)
	}
	b.WriteString("; RSS MiB:")
	for k, r := range c.replicaRSS {
		fmt.Fprintf(&b, " replica %d %s", k, mib(r))
	}
	fmt.Fprintf(&b, ", client %s", mib(c.clientRSS))
	return b.String()
}

// bound says what held a phase back: the machine's cores when they were
// (nearly) all busy, naming the largest user; otherwise none of them.
func (c phaseCost) bound() string {
	w := c.wall.Seconds()
	who, most := "", 0.0
	for k, s := range c.replicaCPU {
		if s > most {
			who, most = fmt.Sprintf("replica %d", k), s
		}
	}
	if c.clientCPU > most {
		who, most = "the bench client", c.clientCPU
	}
	if c.pgCPU > most {
		who, most = "PostgreSQL", c.pgCPU
	}
	ours := c.clientCPU + c.pgCPU
	for _, s := range c.replicaCPU {
		ours += s
	}
	cores := float64(runtime.NumCPU())
	if c.busy >= 0.9 {
		other := ""
		if rest := c.busy*cores - ours/w; rest > 0.25 {
			other = fmt.Sprintf(", %.2f cores went to other work on the machine", rest)
		}
		return fmt.Sprintf("CPU: the machine was %.0f%% busy (%.0f cores); this bench used %.2f, most of it %s (%.2f)%s",
			100*c.busy, cores, ours/w, who, most/w, other)
	}
	return fmt.Sprintf("not CPU (machine %.0f%% busy of %.0f cores; this bench %.2f, most of it %s at %.2f): waits (locks, round trips, PostgreSQL I/O)",
		100*c.busy, cores, ours/w, who, most/w)
}

// summary prints every phase's bound.
func (m *monitor) summary() {
	fmt.Println("what bounded each phase:")
	for _, c := range m.phases {
		fmt.Printf("  %-22s %s\n", c.name+":", c.bound())
	}
}
