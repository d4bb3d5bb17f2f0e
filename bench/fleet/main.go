// Command fleet is the fleet-API load generator of `make bench`: N simulated
// targets enroll with a `cairn serve` on loopback, long-poll their desired
// state and report status. It measures the 304 poll path against a bare
// net/http handler in the same run, the server's memory with every target
// enrolled, and the time from a Git webhook to every target's new desired
// state.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
)

func main() {
	var (
		mode    = flag.String("mode", "bench", "bench, or bare (serve the bare handler on -listen)")
		listen  = flag.String("listen", "127.0.0.1:0", "bare mode: address")
		bin     = flag.String("cairn", "bin/cairn", "the cairn binary")
		n       = flag.Int("targets", 100000, "simulated targets")
		workers = flag.Int("workers", 64, "concurrent clients")
		dur     = flag.Duration("duration", 5*time.Second, "length of each throughput phase")
		polls   = flag.Int("longpolls", 2000, "targets long-polling during the webhook phase")
		work    = flag.String("dir", "", "work folder (default: a temporary one)")
		dbURL   = flag.String("database", "", "postgres:// URL of a server to keep the state on (a fresh database is made); default SQLite")
		budget  = flag.Duration("enroll-budget", 0, "stop enrolling after this long and go on with the targets enrolled (0: enroll all)")
		sumFile = flag.String("summary", "", "append the key figures to FILE as label<TAB>value lines (bench/sidebyside.sh)")
		nrep    = flag.Int("replicas", 1, "cairn serve replicas on the one database (more than 1 needs -database); targets are spread over them")
		rollout = flag.Duration("rollout-budget", 0, "how long the first rollout and the webhook's may take before the run fails (0: 3m, or 1ms a target when more)")
		sampled = flag.Int("sample", 100000, "targets whose desired state is fetched in full and which the 304 polls and long-polls use (spread over the fleet)")
		profs   = flag.String("profiles", "", "write the first replica's heap profiles (after enrollment, after the status reports, at the end) into FOLDER")
	)
	flag.Parse()
	summaryFile = *sumFile
	if *mode == "bare" {
		serveBare(*listen)
		return
	}
	database, replicas, enrollBudget, profileDir = *dbURL, max(1, *nrep), *budget, *profs
	rolloutBudget, sampleSize = *rollout, max(1, *sampled)
	if replicas > 1 && database == "" {
		fmt.Fprintln(os.Stderr, "bench fleet: -replicas needs -database")
		os.Exit(2)
	}
	if err := run(*bin, *n, *workers, *dur, *polls, *work); err != nil {
		fmt.Fprintln(os.Stderr, "bench fleet:", err)
		os.Exit(1)
	}
}

// serveBare answers the desired-state poll the cheapest way net/http can:
// a fixed ETag, 304 when it matches. Printed address on stdout.
func serveBare(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	body := []byte(`{"target":"x","etag":"bare","models":[]}`)
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"bare"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"bare"`)
		w.Write(body)
	}))
}

func git(dir string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=b@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func manifests(n int) string {
	return `apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: 1.0.` + strconv.Itoa(n) + `
  artifact: 127.0.0.1:7480/models/m@` + digest(n) + `
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: all}
spec:
  selector:
    matchLabels: {fleet: bench}
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: r}
spec:
  model: m
  targets: [{profile: all}]
  runtime: {path: /var/lib/m}
`
}

func commit(repo string, n int) error {
	if err := os.WriteFile(filepath.Join(repo, "manifests.yaml"), []byte(manifests(n)), 0o644); err != nil {
		return err
	}
	if err := git(repo, "add", "-A"); err != nil {
		return err
	}
	return git(repo, "commit", "-q", "-m", "model "+strconv.Itoa(n))
}

func freeAddr() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
}

func waitUp(url string) error {
	for i := 0; i < 300; i++ {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", url)
}

// rss returns VmRSS and VmHWM of pid in bytes.
func rss(pid int) (cur, peak int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmRSS:":
				cur = v << 10
			case "VmHWM:":
				peak = v << 10
			}
		}
	}
	return
}

var (
	desiredWrites    = regexp.MustCompile(`(?m)^cairn_desired_writes_total (\S+)$`)
	desiredPublished = regexp.MustCompile(`(?m)^cairn_desired_published_total (\S+)$`)
	desiredSynced    = regexp.MustCompile(`(?m)^cairn_desired_synced_total (\S+)$`)
)

func metric(url string) float64 { return metricOf(url, desiredWrites) }

func metricOf(url string, re *regexp.Regexp) float64 {
	b, err := scrape(url)
	if err != nil {
		return -1
	}
	m := re.FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// scrapes keeps each server's last /metrics page for scrapeFresh: the
// waits poll several counters every 20 ms, and a scrape for each cost the
// server measured CPU of its own (the process collector reads /proc).
var scrapes struct {
	sync.Mutex
	at   map[string]time.Time
	body map[string][]byte
}

const scrapeFresh = 10 * time.Millisecond

// scrape returns url's /metrics page, fetched at most scrapeFresh ago.
func scrape(url string) ([]byte, error) {
	scrapes.Lock()
	if at, ok := scrapes.at[url]; ok && time.Since(at) < scrapeFresh {
		b := scrapes.body[url]
		scrapes.Unlock()
		return b, nil
	}
	scrapes.Unlock()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	scrapes.Lock()
	if scrapes.at == nil {
		scrapes.at, scrapes.body = map[string]time.Time{}, map[string][]byte{}
	}
	scrapes.at[url], scrapes.body[url] = time.Now(), b
	scrapes.Unlock()
	return b, nil
}

type target struct {
	id, cred, etag string
}

func run(bin string, n, workers int, dur time.Duration, longpolls int, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "cairn-bench-fleet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	repo := filepath.Join(dir, "repo")
	os.MkdirAll(repo, 0o755)
	if err := git(repo, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	if err := commit(repo, 1); err != nil {
		return err
	}
	env := append(os.Environ(), "CAIRN_ENROLL_TOKEN=bench-enroll", "CAIRN_ADMIN_TOKEN=bench-admin")
	// The simulated models are in no registry: admission does not look.
	cfgFile := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(cfgFile, []byte("skipArtifactCheck: true\n"), 0o644); err != nil {
		return err
	}
	backend, dbURL := "SQLite", ""
	if database != "" {
		backend = "PostgreSQL"
		url, drop, err := sqldb.CreateDatabase(context.Background(), database, "fleet_bench")
		if err != nil {
			return err
		}
		defer drop()
		dbURL = url
		env = append(env, "CAIRN_DATABASE="+url)
	}
	fmt.Printf("state on %s, %d cairn serve replica(s), aiming at %d targets, load %s\n", backend, replicas, n, loadavg())
	var bases []string
	var srvs []*exec.Cmd
	var pids []int
	var baseRSS int64
	for k := range replicas {
		addr := freeAddr()
		srv := exec.Command(bin, "serve", "--listen", addr, "--data", filepath.Join(dir, fmt.Sprintf("data-%d", k)), "--repo", repo, "--config", cfgFile, "--interval", "1h",
			"--enrollment", "auto", "--enrollment-rate", "1000000",
			"--request-rate", "1000000", "--max-connections-per-address", "1000000")
		srv.Env = env
		logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("serve-%d.log", k)))
		srv.Stdout, srv.Stderr = logf, logf
		if err := srv.Start(); err != nil {
			return err
		}
		defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
		if err := waitUp("http://" + addr); err != nil {
			return err
		}
		r, _ := rss(srv.Process.Pid)
		baseRSS = max(baseRSS, r)
		bases, srvs, pids = append(bases, "http://"+addr), append(srvs, srv), append(pids, srv.Process.Pid)
	}
	base := bases[0]
	ctx := context.Background()
	mctx, stopMon := context.WithCancel(ctx)
	defer stopMon()
	mon := newMonitor(mctx, pids, database, dbURL)
	defer mon.close()
	multi := len(bases) > 1
	// allRSS is the largest RSS of a replica now and at its peak.
	allRSS := func() (cur, peak int64) {
		for _, srv := range srvs {
			c, p := rss(srv.Process.Pid)
			cur, peak = max(cur, c), max(peak, p)
		}
		return cur, peak
	}
	// written sums a counter over the replicas (only the leader writes);
	// published is the largest count of published desired states (the
	// leader's; followers pick desired states up from the database, which
	// the long-polls spread over the replicas measure).
	written := func() float64 {
		sum := 0.0
		for _, b := range bases {
			sum += max(0, metric(b))
		}
		return sum
	}
	published := func() float64 {
		least := -1.0
		for _, b := range bases {
			if v := metricOf(b, desiredPublished); v > least {
				least = v
			}
		}
		return least
	}
	// held is, per replica, how many desired states its fleet API took in:
	// published by its own leader or read from the store by its sync.
	held := func() []float64 {
		var out []float64
		for _, b := range bases {
			out = append(out, max(0, metricOf(b, desiredPublished))+max(0, metricOf(b, desiredSynced)))
		}
		return out
	}
	leader := func() int {
		for k, b := range bases {
			if metricOf(b, desiredPublished) > 0 {
				return k
			}
		}
		return -1
	}
	role := func(k, lead int) string {
		if !multi {
			return "server"
		}
		if k == lead {
			return fmt.Sprintf("replica %d (leader)", k)
		}
		return fmt.Sprintf("replica %d (follower)", k)
	}
	// untilHeld waits, up to limit, until every replica took in n more
	// desired states than in before, and returns when each did (0: not
	// within limit).
	untilHeld := func(before []float64, limit time.Duration, also func() bool) []time.Duration {
		start := time.Now()
		took := make([]time.Duration, len(bases))
		for {
			done := also == nil || also()
			for k, v := range held() {
				if took[k] == 0 && v-before[k] >= float64(n) {
					took[k] = time.Since(start)
				}
				done = done && took[k] > 0
			}
			if done || time.Since(start) > limit {
				return took
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr}
	var cs []*fleet.Client
	for _, b := range bases {
		cs = append(cs, fleet.NewClient(b, fleet.WithHTTPClient(hc)))
	}
	// Target i enrolls with, polls and reports to replica i%replicas, as
	// agents spread over the replicas by a load balancer would.
	clientOf := func(i int) *fleet.Client { return cs[i%len(cs)] }
	perReplica := func(what string, counts []atomic.Int64, d time.Duration) {
		if !multi {
			return
		}
		var parts []string
		for k := range counts {
			parts = append(parts, fmt.Sprintf("replica %d %.0f/s", k, float64(counts[k].Load())/d.Seconds()))
		}
		fmt.Printf("  %s per replica: %s\n", what, strings.Join(parts, ", "))
	}

	// Enroll.
	endPhase := mon.phase("enroll")
	targets := make([]target, n)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || (enrollBudget > 0 && time.Since(start) > enrollBudget) {
					return
				}
				name := fmt.Sprintf("dev-%06d", i)
				er, err := clientOf(i).Enroll(ctx, fleet.EnrollRequest{Token: "bench-enroll", Name: name,
					Labels: map[string]string{"fleet": "bench", "site": "s" + strconv.Itoa(i%50)},
					Facts:  fleet.Facts{Arch: "arm64", OS: "linux", OSVersion: "12", Memory: 4 << 30, CPUs: 4}})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				targets[i] = target{id: er.ID, cred: er.Credential}
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return e.(error)
	}
	enrollTook := time.Since(start)
	aimed, budgetHit := n, false
	if k := slices.IndexFunc(targets, func(t target) bool { return t.id == "" }); k >= 0 {
		budgetHit = true
		n, targets = k, slices.Clip(targets[:k])
	}
	enrollNote := "all enrolled within the budget"
	if budgetHit {
		enrollNote = fmt.Sprintf("enrollment budget of %s spent: going on with %d of %d targets", enrollBudget, n, aimed)
	} else if enrollBudget == 0 {
		enrollNote = ""
	}
	fmt.Printf("enrolled %d targets in %s (%.0f/s)\n", n, enrollTook.Round(time.Millisecond), float64(n)/enrollTook.Seconds())
	if multi {
		fmt.Printf("  enrollments per replica: about %d each, %.0f/s each\n", n/len(bases), float64(n)/float64(len(bases))/enrollTook.Seconds())
	}
	endPhase(enrollNote)
	figure("targets enrolled", fmt.Sprint(n))
	figure("enrollment (/s)", fmt.Sprintf("%.0f", float64(n)/enrollTook.Seconds()))

	// Wait for every target to get the first model, on every replica.
	endPhase = mon.phase("first rollout")
	admin := fleet.NewAdminClient(base, "bench-admin", fleet.WithHTTPClient(hc))
	limit := rolloutBudget
	if limit <= 0 {
		limit = max(3*time.Minute, time.Duration(n)*time.Millisecond)
	}
	zero := make([]float64, len(bases))
	t0 := time.Now()
	var lastRel *fleet.ReleaseInfo
	took := untilHeld(zero, limit, func() bool {
		r, err := admin.Release(ctx, "r")
		if err == nil {
			lastRel = r
		}
		return err == nil && r.Targets == n && r.Updated == n && written() >= float64(n) && published() >= float64(n)
	})
	lead := leader()
	if slices.Contains(took, 0) {
		fmt.Printf("first rollout did not reach every target on every replica within %s: release %+v, written %v, taken in per replica %v\n", limit, lastRel, written(), held())
		endPhase("")
		mon.summary()
		return fmt.Errorf("first rollout not done within %s (-rollout-budget)", limit)
	}
	// The replicas' counts include the desired states written during
	// enrollment (a target's, again at each pass that changed it), so they
	// say when a replica had taken in n states, not when it served the
	// rollout to every target: only the total is a rollout time here; the
	// webhook phase times each replica (n new states each).
	var parts []string
	for k, v := range held() {
		parts = append(parts, fmt.Sprintf("%s %.0f", role(k, lead), v))
	}
	fmt.Printf("first rollout (plan, %d desired states written, every replica serving them): %s\n  desired states taken in since the start, per replica: %s\n", n, time.Since(t0).Round(time.Millisecond), strings.Join(parts, ", "))
	endPhase("")

	// Learn each sampled target's ETag (also checks credentials): every
	// target up to -sample, else a sample spread over the fleet.
	endPhase = mon.phase("GET desired (200)")
	sample := make([]int, 0, min(n, sampleSize))
	for k := range min(n, sampleSize) {
		sample = append(sample, int(int64(k)*int64(n)/int64(min(n, sampleSize))))
	}
	next.Store(0)
	getStart := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1)) - 1
				if j >= len(sample) {
					return
				}
				i := sample[j]
				var ds *fleet.DesiredState
				for try := 0; ; try++ {
					var err error
					ds, _, err = clientOf(i).Desired(ctx, targets[i].id, targets[i].cred, "", 0)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					if len(ds.Models) == 1 || try == 600 { // a follower may not have caught up yet
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				targets[i].etag = ds.ETag
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return e.(error)
	}
	fmt.Printf("full desired states fetched (200) for %d targets: %.0f/s\n", len(sample), float64(len(sample))/time.Since(getStart).Seconds())
	endPhase("")
	cur, peak := allRSS()
	fmt.Printf("server RSS with %d targets enrolled: %.0f MiB (peak %.0f MiB, idle %.0f MiB; %.0f bytes a target above idle, RSS/N %.0f bytes)\n", n, float64(cur)/(1<<20), float64(peak)/(1<<20), float64(baseRSS)/(1<<20), float64(cur-baseRSS)/float64(n), float64(cur)/float64(n))
	fmt.Printf("  memory: %s\n", memBreakdown(pids[0], base))
	heapProfile(hc, base, "enrolled")
	figure("RSS after enrollment (MiB)", fmt.Sprintf("%.0f", float64(cur)/(1<<20)))
	figure("bytes a target after enrollment", fmt.Sprintf("%.0f", float64(cur-baseRSS)/float64(n)))

	// Poll throughput: the 304 path of cairn against a bare handler.
	endPhase = mon.phase("304 polls")
	pollsOn := make([]atomic.Int64, len(bases))
	cairnRate, err := pollRate(hc, workers, dur, func(i int) (string, string, string) {
		t := sample[i%len(sample)]
		k := t % len(bases)
		pollsOn[k].Add(1)
		return bases[k] + "/api/v1/targets/" + targets[t].id + "/desired?wait=0s", targets[t].cred, targets[t].etag
	})
	if err != nil {
		return err
	}
	fmt.Printf("304 polls: %.0f/s in all\n", cairnRate)
	perReplica("304 polls", pollsOn, dur)
	endPhase("")
	bare := exec.Command(os.Args[0], "-mode", "bare")
	out, _ := bare.StdoutPipe()
	if err := bare.Start(); err != nil {
		return err
	}
	defer func() { bare.Process.Kill(); bare.Wait() }()
	line := make([]byte, 64)
	k, _ := out.Read(line)
	bareURL := "http://" + strings.TrimSpace(string(line[:k]))
	bareRate, err := pollRate(hc, workers, dur, func(i int) (string, string, string) {
		return bareURL + "/api/v1/targets/x/desired?wait=0s", "x", "bare"
	})
	if err != nil {
		return err
	}
	fmt.Printf("poll throughput (304 path, %d clients): cairn %.0f/s, bare net/http %.0f/s, ratio %.2f — goal ≥ 0.60\n", workers, cairnRate, bareRate, cairnRate/bareRate)
	figure("304 polls (/s)", fmt.Sprintf("%.0f", cairnRate))
	figure("304 polls vs bare net/http (goal ≥ 0.60)", fmt.Sprintf("%.2f", cairnRate/bareRate))

	// Status reports.
	endPhase = mon.phase("status reports")
	reportsOn := make([]atomic.Int64, len(bases))
	srvCPU0, cliCPU0 := serveCPU(srvs), selfCPU()
	statusRate, err := statusRate(func(i int) *fleet.Client { reportsOn[i%len(cs)].Add(1); return clientOf(i) }, targets, workers, dur)
	if err != nil {
		return err
	}
	reports := statusRate * dur.Seconds()
	srvPer, cliPer := (serveCPU(srvs)-srvCPU0)/reports, (selfCPU()-cliCPU0)/reports
	fmt.Printf("status reports: %.0f/s — goal ≥ 10000/s (CPU a report: serve %.0f µs, this client %.0f µs; load %s)\n", statusRate, srvPer*1e6, cliPer*1e6, loadavg())
	figure("status report serve CPU (µs a report)", fmt.Sprintf("%.0f", srvPer*1e6))
	// The wall rate is bounded by the CPU this run got, which the client
	// (simulating the whole fleet on the same cores) shares with the
	// server: say what the server itself sustains per CPU-second, and what
	// the cores of this machine would sustain with the client elsewhere.
	cores := float64(runtime.NumCPU())
	wallCPU := (srvPer + cliPer) * statusRate
	fmt.Printf("  serve capacity: %.0f reports per serve CPU-second, %.0f/s on %.0f cores with the client elsewhere; this phase got %.2f cores (serve %.2f, client %.2f), so serve and client together would top out at %.0f/s here\n",
		1/srvPer, cores/srvPer, cores, wallCPU, srvPer*statusRate, cliPer*statusRate, cores/(srvPer+cliPer))
	figure("status reports per serve CPU-second", fmt.Sprintf("%.0f", 1/srvPer))
	perReplica("status reports", reportsOn, dur)
	endPhase("")
	cur, _ = allRSS()
	fmt.Printf("server RSS after the status reports: %.0f MiB (RSS/N %.0f bytes)\n", float64(cur)/(1<<20), float64(cur)/float64(n))
	fmt.Printf("  memory: %s\n", memBreakdown(pids[0], base))
	heapProfile(hc, base, "reports")
	figure("status reports (/s, goal ≥ 10000)", fmt.Sprintf("%.0f", statusRate))

	// Webhook → every desired state: long-polls open, commit, hook.
	endPhase = mon.phase("webhook → desired")
	before, beforePub, beforeHeld := written(), published(), held()
	lpCtx, cancelLP := context.WithCancel(ctx)
	defer cancelLP()
	longpolls = min(longpolls, len(sample))
	type woken struct {
		got    atomic.Int64
		opened int
		worst  atomic.Int64 // ns
	}
	wokenOn := make([]woken, len(bases))
	var t0ns atomic.Int64
	for j := range longpolls {
		idx := sample[(j*7919)%len(sample)]
		t, c, w := targets[idx], clientOf(idx), &wokenOn[idx%len(bases)]
		w.opened++
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lpCtx.Err() == nil {
				ds, changed, err := c.Desired(lpCtx, t.id, t.cred, t.etag, 30*time.Second)
				if err != nil || !changed {
					continue
				}
				if len(ds.Models) == 1 && ds.Models[0].Digest == digest(2) {
					w.got.Add(1)
					d := time.Now().UnixNano() - t0ns.Load()
					for {
						old := w.worst.Load()
						if d <= old || w.worst.CompareAndSwap(old, d) {
							break
						}
					}
				}
				return
			}
		}()
	}
	time.Sleep(time.Second) // let the long-polls park
	if err := commit(repo, 2); err != nil {
		return err
	}
	cpuDone := cpuProfile(hc, base, "webhook", 4*time.Second)
	defer cpuDone()
	t0ns.Store(time.Now().UnixNano())
	hookStart := time.Now()
	for _, b := range bases { // a load balancer would pick one; the leader must hear it
		resp, err := hc.Post(b+"/hooks/git", "application/json", bytes.NewReader([]byte(`{}`)))
		if err != nil {
			return err
		}
		resp.Body.Close()
	}
	var allTook, pubTook time.Duration
	hookLimit := max(2*time.Minute, limit)
	took = untilHeld(beforeHeld, hookLimit, func() bool {
		if pubTook == 0 && published()-beforePub >= float64(n) {
			pubTook = time.Since(hookStart)
		}
		if allTook == 0 && written()-before >= float64(n) {
			allTook = time.Since(hookStart)
		}
		return pubTook > 0 && allTook > 0
	})
	if allTook == 0 {
		endPhase("")
		mon.summary()
		return fmt.Errorf("desired states not updated within %s (%v written)", hookLimit, written()-before)
	}
	everyTook := slices.Max(took)
	waitLP := make(chan struct{})
	go func() { wg.Wait(); close(waitLP) }()
	select {
	case <-waitLP:
	case <-time.After(30 * time.Second):
	}
	cancelLP()
	fmt.Printf("webhook → all %d desired states served to agents: %s — goal ≤ 1s (stored in the database: %s)\n", n, pubTook.Round(time.Millisecond), allTook.Round(time.Millisecond))
	figure("webhook → all desired states (goal ≤ 1s)", pubTook.Round(time.Millisecond).String())
	var got, worst int64
	for k := range wokenOn {
		got, worst = got+wokenOn[k].got.Load(), max(worst, wokenOn[k].worst.Load())
	}
	fmt.Printf("long-polls woken with the new model: %d of %d, slowest %s after the webhook\n", got, longpolls, time.Duration(worst).Round(time.Millisecond))
	if multi {
		parts = parts[:0]
		for k, d := range took {
			s := "not within " + hookLimit.String()
			if d > 0 {
				s = d.Round(time.Millisecond).String()
			}
			w := &wokenOn[k]
			parts = append(parts, fmt.Sprintf("%s: all %d desired states after %s, long-polls woken %d of %d (slowest %s)",
				role(k, lead), n, s, w.got.Load(), w.opened, time.Duration(w.worst.Load()).Round(time.Millisecond)))
		}
		fmt.Printf("webhook → desired on every replica: %s\n  %s\n", everyTook.Round(time.Millisecond), strings.Join(parts, "\n  "))
		figure("webhook → all desired on every replica", everyTook.Round(time.Millisecond).String())
	}
	endPhase("")
	// Spot-check a few targets.
	for _, i := range []int{0, n / 2, n - 1} {
		ds, _, err := clientOf(i).Desired(ctx, targets[i].id, targets[i].cred, "", 0)
		if err != nil || len(ds.Models) != 1 || ds.Models[0].Digest != digest(2) {
			return fmt.Errorf("target %s: desired %+v, %v", targets[i].id, ds, err)
		}
	}
	cur, peak = allRSS()
	fmt.Printf("server RSS at the end: %.0f MiB (peak %.0f MiB; %.0f bytes a target above idle, RSS/N %.0f bytes) — goal ≤ 512 MiB at 100,000 targets\n", float64(cur)/(1<<20), float64(peak)/(1<<20), float64(cur-baseRSS)/float64(n), float64(cur)/float64(n))
	fmt.Printf("  memory: %s\n", memBreakdown(pids[0], base))
	heapProfile(hc, base, "end")
	figure("RSS at the end (MiB, goal ≤ 512 at 100k)", fmt.Sprintf("%.0f", float64(cur)/(1<<20)))
	figure("bytes a target at the end", fmt.Sprintf("%.0f", float64(cur-baseRSS)/float64(n)))
	if multi {
		parts = parts[:0]
		for k, srv := range srvs {
			c, p := rss(srv.Process.Pid)
			parts = append(parts, fmt.Sprintf("%s %s MiB (peak %s)", role(k, lead), mib(c), mib(p)))
		}
		fmt.Printf("RSS per replica at the end: %s\n", strings.Join(parts, ", "))
	}
	c, p := rss(os.Getpid())
	fmt.Printf("bench client RSS: %s MiB (peak %s MiB) for %d simulated targets\n", mib(c), mib(p), n)
	var r fleet.ReleaseInfo
	if rr, err := admin.Release(ctx, "r"); err == nil {
		r = *rr
	}
	b, _ := json.Marshal(map[string]any{"release": r.Name, "digest": r.Digest, "targets": r.Targets, "updated": r.Updated})
	fmt.Printf("release after the webhook: %s\n", b)
	mon.summary()
	if budgetHit {
		fmt.Printf("the run was bounded by the enrollment budget (%s): %d of %d targets enrolled at %.0f/s\n", enrollBudget, n, aimed, float64(n)/enrollTook.Seconds())
	}
	return nil
}

// pollRate runs workers issuing conditional GETs for dur and returns
// requests per second; every answer must be 304.
func pollRate(hc *http.Client, workers int, dur time.Duration, req func(i int) (url, cred, etag string)) (float64, error) {
	var count atomic.Int64
	var bad atomic.Value
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := w * 104729
			for time.Now().Before(stop) {
				url, cred, etag := req(i)
				i += rand.IntN(97) + 1
				r, _ := http.NewRequest(http.MethodGet, url, nil)
				r.Header.Set("Authorization", "Bearer "+cred)
				r.Header.Set("If-None-Match", `"`+etag+`"`)
				resp, err := hc.Do(r)
				if err != nil {
					bad.CompareAndSwap(nil, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotModified {
					bad.CompareAndSwap(nil, fmt.Errorf("GET %s: %d, want 304", url, resp.StatusCode))
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if e := bad.Load(); e != nil {
		return 0, e.(error)
	}
	return float64(count.Load()) / dur.Seconds(), nil
}

func statusRate(clientOf func(int) *fleet.Client, targets []target, workers int, dur time.Duration) (float64, error) {
	var count atomic.Int64
	var bad atomic.Value
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				i := int(next.Add(1)) % len(targets)
				t := targets[i]
				err := clientOf(i).ReportStatus(context.Background(), t.id, t.cred, fleet.StatusReport{Time: time.Now(),
					Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: digest(1)}},
					Metrics:  map[string]float64{"cpu_percent": 20, "memory_bytes": 1 << 28, "temperature_c": 51, "error_rate": 0.001}})
				if err != nil {
					bad.CompareAndSwap(nil, err)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if e := bad.Load(); e != nil {
		return 0, e.(error)
	}
	return float64(count.Load()) / dur.Seconds(), nil
}

// serveCPU is the user and system CPU time the serve processes have used,
// in seconds (/proc/PID/stat, clock ticks of 1/100 s).
func serveCPU(srvs []*exec.Cmd) float64 {
	var sum float64
	for _, srv := range srvs {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", srv.Process.Pid))
		// The command name may hold spaces: fields count from its ")".
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				sum += (u + st) / 100
			}
		}
	}
	return sum
}

// selfCPU is the CPU time this process (the simulated fleet) has used, in
// seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// loadavg is the machine's 1-minute load average: the figures of a run are
// only comparable with another's at a like load.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// database is the -database flag: a PostgreSQL server, or "" for SQLite;
// replicas the number of cairn serve processes.
var (
	database     string
	replicas     int
	enrollBudget time.Duration
	// rolloutBudget bounds the wait for desired states (0: by fleet size);
	// sampleSize is the -sample flag.
	rolloutBudget time.Duration
	sampleSize    int
)

// profileDir, when set, receives heap profiles (heapProfile).
var profileDir string

// debugGet fetches path from base's debug endpoints as the bench's admin.
func debugGet(hc *http.Client, base, path string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer bench-admin")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return b, nil
}

// saveProfile fetches path from base into profileDir/file and says where
// it went; a failure goes to stderr under what.
func saveProfile(hc *http.Client, base, path, file, what string) {
	b, err := debugGet(hc, base, path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		return
	}
	os.MkdirAll(profileDir, 0o755)
	f := filepath.Join(profileDir, file)
	if err := os.WriteFile(f, b, 0o644); err == nil {
		fmt.Printf("%s: %s\n", what, f)
	}
}

// heapProfile saves base's heap profile as of its last GC, as
// profileDir/heap-name-lastgc.pb.gz, and after a forced GC, as
// profileDir/heap-name.pb.gz.
func heapProfile(hc *http.Client, base, name string) {
	if profileDir == "" {
		return
	}
	// First as of the last collection the server ran itself: what was
	// live when its current GC goal was set.
	saveProfile(hc, base, "/debug/pprof/heap", "heap-"+name+"-lastgc.pb.gz", "heap profile as of the last GC")
	saveProfile(hc, base, "/debug/pprof/heap?gc=1", "heap-"+name+".pb.gz", "heap profile")
	// The text form ends with runtime.MemStats: heap in use and held,
	// stacks, what was returned to the system.
	if b, err := debugGet(hc, base, "/debug/pprof/heap?debug=1"); err == nil {
		os.WriteFile(filepath.Join(profileDir, "heap-"+name+".txt"), b, 0o644)
		var stats []string
		for _, l := range strings.Split(string(b), "\n") {
			for _, k := range []string{"# HeapAlloc", "# HeapSys", "# HeapIdle", "# HeapReleased", "# StackSys", "# Sys "} {
				if strings.HasPrefix(l, k) {
					stats = append(stats, strings.TrimPrefix(l, "# "))
				}
			}
		}
		fmt.Printf("  go memory: %s\n", strings.Join(stats, ", "))
	}
}

// cpuProfile starts saving base's CPU profile of the next d as
// profileDir/cpu-name.pb.gz; the returned func waits for it.
func cpuProfile(hc *http.Client, base, name string, d time.Duration) (wait func()) {
	if profileDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		saveProfile(hc, base, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), "cpu-"+name+".pb.gz", "cpu profile")
	}()
	return func() { <-done }
}

// summaryFile, when set, receives the key figures (figure).
var summaryFile string

// figure appends one key figure to summaryFile as label<TAB>value.
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
