// Command lineage-bench builds a lineage graph of about a million edges on
// SQLite (10k models, 1k datasets, 100k targets, deployments over a year),
// then times random upstream/downstream walks of depth 5, At and Where
// queries and prints their percentiles against the goals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/lineage"
)

func main() {
	var (
		dbPath   = flag.String("db", "", "SQLite file (default: a temporary one)")
		edges    = flag.Int("edges", 1_000_000, "edges to build")
		models   = flag.Int("models", 10_000, "models")
		datasets = flag.Int("datasets", 1_000, "datasets")
		targets  = flag.Int("targets", 100_000, "targets")
		releases = flag.Int("releases", 100, "releases (each target belongs to one)")
		queries  = flag.Int("queries", 1000, "random queries per kind")
		chunk    = flag.Int("chunk", 50_000, "edges per transaction while building")
		profile  = flag.String("cpuprofile", "", "write a CPU profile of the queries to FILE")
		summary  = flag.String("summary", "", "append the key figures to FILE as label<TAB>value lines (bench/sidebyside.sh)")
		reuse    = flag.Bool("reuse", false, "keep the graph for the next run and use a graph already built: the -db file as it is, or on PostgreSQL the database lineage_bench_keep (not dropped)")
		sqlWalks = flag.Bool("sql", true, "time the SQL walks as well as the memory index")
	)
	flag.Parse()
	cpuProfile, summaryFile, reuseGraph, timeSQL = *profile, *summary, *reuse, *sqlWalks
	if err := run(*dbPath, *edges, *models, *datasets, *targets, *releases, *queries, *chunk); err != nil {
		fmt.Fprintln(os.Stderr, "lineage-bench:", err)
		os.Exit(1)
	}
}

var (
	cpuProfile string
	reuseGraph bool // keep the graph and skip building when it is there
	timeSQL    bool // time the SQL walks too
)

// threadCPU is the CPU time the calling OS thread has used
// (clock_gettime(CLOCK_THREAD_CPUTIME_ID), exact, unlike getrusage's ticks).
// summaryFile, when set, receives the key figures (figure).
var summaryFile string

// figure appends one key figure to summaryFile.
func figure(label, value string) {
	if summaryFile == "" {
		return
	}
	f, err := os.OpenFile(summaryFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\n", label, value)
}

func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

func digest(kind byte, i int) string { return fmt.Sprintf("sha256:%c%063x", kind, i) }

func run(dbPath string, nEdges, nModels, nDatasets, nTargets, nReleases, nQueries, chunk int) error {
	ctx := context.Background()
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "lineage-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbPath = filepath.Join(dir, "lineage.db")
	}
	backend := "SQLite"
	if strings.HasPrefix(dbPath, "postgres") {
		backend = "PostgreSQL"
		if reuseGraph {
			url, err := keptDatabase(ctx, dbPath, "lineage_bench_keep")
			if err != nil {
				return err
			}
			dbPath = url
		} else {
			url, drop, err := sqldb.CreateDatabase(ctx, dbPath, "lineage_bench")
			if err != nil {
				return err
			}
			defer drop()
			dbPath = url
		}
	}
	db, err := sqldb.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	g, err := lineage.Open(ctx, db, lineage.WithoutMemoryIndex())
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	end := base.Add(365 * 24 * time.Hour)
	model := func(i int) string { return lineage.Node(lineage.NodeModel, digest('a', i)) }
	dataset := func(i int) string { return lineage.Node(lineage.NodeDataset, digest('d', i)) }
	target := func(i int) string { return lineage.Node(lineage.NodeTarget, fmt.Sprintf("dev-%06d", i)) }
	release := func(r int) string { return fmt.Sprintf("release-%03d", r) }

	// Models of release r are r, r+nReleases, r+2·nReleases, …, in the
	// order they were trained and admitted over the year.
	perRelease := nModels / nReleases
	modelTime := func(m int) time.Time {
		return base.Add(time.Duration(m/nReleases) * (end.Sub(base) / time.Duration(perRelease)))
	}

	var have int
	if reuseGraph {
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM lineage_edges`).Scan(&have); err != nil {
			return err
		}
	}
	start := time.Now()
	total := 0
	if have > 0 {
		fmt.Printf("reusing the graph already built (%d edges)\n", have)
		nEdges = 0 // skip building
	}
	var buf []lineage.Edge
	flush := func(force bool) error {
		if len(buf) >= chunk || (force && len(buf) > 0) {
			if err := g.Record(ctx, buf...); err != nil {
				return err
			}
			total += len(buf)
			buf = buf[:0]
		}
		return nil
	}
	add := func(e lineage.Edge) error {
		buf = append(buf, e)
		return flush(false)
	}
	// Provenance: each model trained on 3 datasets, packaged from a commit,
	// declared in its release at an admission commit.
	for m := 0; m < nModels && have == 0; m++ {
		t := modelTime(m)
		rel := m % nReleases
		picked := map[int]bool{}
		for len(picked) < min(3, nDatasets) {
			d := rng.IntN(nDatasets)
			if picked[d] {
				continue
			}
			picked[d] = true
			if err := add(lineage.Edge{Type: lineage.EdgeTrainedOn, From: model(m), To: dataset(d), Time: t}); err != nil {
				return err
			}
		}
		commit := lineage.Node(lineage.NodeCommit, fmt.Sprintf("%040x", m))
		admitted := lineage.Node(lineage.NodeCommit, fmt.Sprintf("%040x", 1<<40+m))
		for _, e := range []lineage.Edge{
			{Type: lineage.EdgePackagedFrom, From: model(m), To: commit, Time: t},
			{Type: lineage.EdgeDeclaredIn, From: model(m), To: lineage.Node(lineage.NodeRelease, release(rel)), Time: t.Add(time.Hour), Attrs: map[string]any{"commit": fmt.Sprintf("%040x", 1<<40+m)}},
			{Type: lineage.EdgeDeclaredIn, From: lineage.Node(lineage.NodeRelease, release(rel)), To: admitted, Time: t.Add(time.Hour)},
		} {
			if err := add(e); err != nil {
				return err
			}
		}
	}
	provenance := total + len(buf)
	// Deployments: round after round over the targets, each target taking a
	// later model of its release; 5% fail, 5% are rolled back (an end event).
	remaining := max(0, nEdges-provenance)
	rounds := (remaining + nTargets - 1) / nTargets
	for round := 0; remaining > 0; round++ {
		for tg := 0; tg < nTargets && remaining > 0; tg++ {
			rel := tg % nReleases
			idx := min(perRelease-1, round*perRelease/rounds+rng.IntN(max(1, perRelease/rounds)))
			m := rel + idx*nReleases
			at := modelTime(m).Add(2*time.Hour + time.Duration(rng.IntN(int(24*time.Hour/time.Second)))*time.Second)
			outcome := lineage.OutcomeSucceeded
			if rng.IntN(20) == 0 {
				outcome = lineage.OutcomeFailed
			}
			if err := add(lineage.Edge{Type: lineage.EdgeDeployedTo, From: model(m), To: target(tg), Time: at, Phase: lineage.PhaseStart, Outcome: outcome, Release: release(rel)}); err != nil {
				return err
			}
			remaining--
			if remaining > 0 && outcome == lineage.OutcomeSucceeded && rng.IntN(20) == 0 {
				if err := add(lineage.Edge{Type: lineage.EdgeDeployedTo, From: model(m), To: target(tg), Time: at.Add(time.Hour), Phase: lineage.PhaseEnd, Outcome: lineage.OutcomeRolledBack, Release: release(rel)}); err != nil {
					return err
				}
				remaining--
			}
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	built := time.Since(start)
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM lineage_edges`).Scan(&n); err != nil {
		return err
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	loadStart := time.Now()
	gi, err := lineage.Open(ctx, db)
	if err != nil {
		return err
	}
	if !gi.WaitIndex(ctx) {
		return fmt.Errorf("the in-memory lineage index did not load")
	}
	loaded := time.Since(loadStart)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := gi.IndexStats()
	size := int64(0)
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(dbPath + suffix); err == nil {
			size += fi.Size()
		}
	}
	fmt.Printf("graph: %d edges (%d models, %d datasets, %d targets, %d releases) on %s, built in %.1fs (%.0f edges/s)",
		n, nModels, nDatasets, nTargets, nReleases, backend, built.Seconds(), float64(total)/built.Seconds())
	if size > 0 {
		fmt.Printf(", %d MiB", size>>20)
	}
	figure("memory index (bytes an edge)", fmt.Sprintf("%.0f", float64(st.Bytes)/float64(max(1, st.Edges))))
	figure("memory index heap (bytes an edge)", fmt.Sprintf("%.0f", float64(heap)/float64(max(1, st.Edges))))
	fmt.Printf("\nmemory index: %d edges loaded in %.1fs, about %d MiB (%.0f bytes an edge); the heap grew by %d MiB (%.0f bytes an edge, with the node name cache)\n",
		st.Edges, loaded.Seconds(), st.Bytes>>20, float64(st.Bytes)/float64(max(1, st.Edges)), heap>>20, float64(heap)/float64(max(1, st.Edges)))
	// No ANALYZE: with its stat4 tables SQLite re-prepares a statement
	// whenever a bound value might change the plan, which costs more than
	// the query; the indexes are chosen well without statistics.

	plain := g
	queries := func(label string, g *lineage.Graph) error {
		qrng := rand.New(rand.NewPCG(3, 4)) // the same queries for each
		type result struct {
			name       string
			goal       time.Duration
			times, cpu []time.Duration
			nodes      int
		}
		// Wall time depends on what else the machine runs; the thread's CPU
		// time (the query runs on the calling goroutine, locked to its thread)
		// is what the query itself costs.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var results []*result
		var own [2]time.Duration // wall and cpu time a query measured of itself; -1 when it did not
		measure := func(name string, goal time.Duration, count int, q func() (int, error)) error {
			r := &result{name: name, goal: goal}
			for i := 0; i < count; i++ {
				own = [2]time.Duration{-1, -1}
				c := threadCPU()
				t := time.Now()
				k, err := q()
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				wall, cpu := time.Since(t), threadCPU()-c
				if own[0] >= 0 { // the query timed only its own part
					wall, cpu = own[0], own[1]
				}
				r.times = append(r.times, wall)
				r.cpu = append(r.cpu, cpu)
				r.nodes += k
			}
			results = append(results, r)
			return nil
		}
		if cpuProfile != "" {
			f, err := os.Create(cpuProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		randTime := func() time.Time { return base.Add(time.Duration(qrng.Int64N(int64(end.Sub(base))))) }
		if err := measure("upstream depth 5 from a target", 5*time.Millisecond, nQueries, func() (int, error) {
			sg, err := g.Upstream(ctx, target(qrng.IntN(nTargets)), 5)
			return nodes(sg, err)
		}); err != nil {
			return err
		}
		if err := measure("upstream depth 5 from a model", 5*time.Millisecond, nQueries, func() (int, error) {
			sg, err := g.Upstream(ctx, model(qrng.IntN(nModels)), 5)
			return nodes(sg, err)
		}); err != nil {
			return err
		}
		if err := measure("downstream depth 5 from a model", 5*time.Millisecond, nQueries, func() (int, error) {
			sg, err := g.Downstream(ctx, model(qrng.IntN(nModels)), 5)
			return nodes(sg, err)
		}); err != nil {
			return err
		}
		if err := measure("downstream depth 5 from a dataset", 5*time.Millisecond, max(1, nQueries/4), func() (int, error) {
			sg, err := g.Downstream(ctx, dataset(qrng.IntN(nDatasets)), 5)
			return nodes(sg, err)
		}); err != nil {
			return err
		}
		if err := measure("at (random target, random time)", time.Millisecond, nQueries, func() (int, error) {
			a, err := g.At(ctx, target(qrng.IntN(nTargets)), randTime())
			return count(a, err)
		}); err != nil {
			return err
		}
		if err := measure("where (random model, random time)", 10*time.Millisecond, max(1, nQueries/4), func() (int, error) {
			t := randTime()
			a, err := g.Where(ctx, model(qrng.IntN(nModels)), &t)
			return count(a, err)
		}); err != nil {
			return err
		}
		if err := measure("where (random dataset, random time)", 10*time.Millisecond, max(1, nQueries/20), func() (int, error) {
			t := randTime()
			a, err := g.Where(ctx, dataset(qrng.IntN(nDatasets)), &t)
			return count(a, err)
		}); err != nil {
			return err
		}
		if err := measure("where (random dataset, now)", 10*time.Millisecond, max(1, nQueries/4), func() (int, error) {
			a, err := g.Where(ctx, dataset(qrng.IntN(nDatasets)), nil)
			return count(a, err)
		}); err != nil {
			return err
		}
		// Last, as it adds to the graph: a deployment recorded through the
		// SQL-only handle (as by another replica), then Where of its model,
		// which first catches the index up (refresh and settle included).
		appended := 0
		if err := measure("where (model just deployed, now)", 10*time.Millisecond, max(1, nQueries/4), func() (int, error) {
			m, tg := qrng.IntN(nModels), qrng.IntN(nTargets)
			appended++
			e := lineage.Edge{Type: lineage.EdgeDeployedTo, From: model(m), To: target(tg), Time: end.Add(time.Duration(appended) * time.Second),
				Phase: lineage.PhaseStart, Outcome: lineage.OutcomeSucceeded, Release: release(tg % nReleases)}
			if err := plain.Record(ctx, e); err != nil {
				return 0, err
			}
			c, t := threadCPU(), time.Now()
			a, err := g.Where(ctx, model(m), nil)
			own = [2]time.Duration{time.Since(t), threadCPU() - c}
			return count(a, err)
		}); err != nil {
			return err
		}
		ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
		var load [3]float64
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			fmt.Sscan(string(b), &load[0], &load[1], &load[2])
		}
		fmt.Printf("queries on %s, %s (load average %.1f on %d CPUs; wall = elapsed, cpu = the querying thread's CPU time):\n", backend, label, load[0], runtime.NumCPU())
		for _, r := range results {
			pct := func(ds []time.Duration, q float64) time.Duration {
				sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
				return ds[min(len(ds)-1, int(q*float64(len(ds))))]
			}
			p50, p99, c50, c99 := pct(r.times, 0.5), pct(r.times, 0.99), pct(r.cpu, 0.5), pct(r.cpu, 0.99)
			verdict := "no goal"
			if r.goal > 0 {
				verdict = "goal p99 ≤ " + ms(r.goal) + ": "
				switch {
				case p99 <= r.goal:
					verdict += "met"
				case c99 <= r.goal:
					verdict += "met in cpu time, missed in wall time"
				default:
					verdict += "MISSED"
				}
			}
			if label == "memory index" {
				figure(r.name+" p99 (wall / cpu)", ms(p99)+" / "+ms(c99))
			}
			fmt.Printf("  %-36s n=%-5d wall p50 %8s p99 %9s | cpu p50 %8s p99 %8s | avg results %5.0f  (%s)\n", r.name, len(r.times), ms(p50), ms(p99), ms(c50), ms(c99), float64(r.nodes)/float64(len(r.times)), verdict)
		}
		return nil
	}
	for _, q := range []struct {
		label string
		g     *lineage.Graph
	}{{"SQL walks", g}, {"memory index", gi}} {
		if q.g == g && !timeSQL {
			continue
		}
		if err := queries(q.label, q.g); err != nil {
			return err
		}
	}
	return nil
}

// nodes is the size of a walk's answer; a node the graph never recorded
// (on a graph smaller than its targets, some were never deployed to) counts
// as an empty answer.
func nodes(sg *lineage.Subgraph, err error) (int, error) {
	if errors.Is(err, lineage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return len(sg.Nodes), nil
}

// count is the size of an At or Where answer, 0 for a node never recorded.
func count(a []lineage.Active, err error) (int, error) {
	if errors.Is(err, lineage.ErrNotFound) {
		return 0, nil
	}
	return len(a), err
}

// keptDatabase returns the URL of database name on the server of serverURL,
// creating it when it is not there.
func keptDatabase(ctx context.Context, serverURL, name string) (string, error) {
	admin, err := sqldb.Open(ctx, serverURL)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	var exists bool
	if err := admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}
