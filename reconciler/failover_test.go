package reconciler

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
)

func otherThan(reps []*replica, r *replica) *replica {
	for _, o := range reps {
		if o != r {
			return o
		}
	}
	return nil
}

// simFleet is targets that poll whichever replica answers, report healthy
// on whatever they are told, and remember every digest they were told.
type simFleet struct {
	mu      sync.Mutex
	bases   []string
	history map[string][]string // target → digests in the order told
	trace   map[string][]string // target → when, where and what it was told
}

func (f *simFleet) setBases(bases ...string) {
	f.mu.Lock()
	f.bases = bases
	f.mu.Unlock()
}

func (f *simFleet) run(ctx context.Context, er *fleet.EnrollResponse, i int) {
	simTarget{er: er, wait: time.Second, timeout: 3 * time.Second,
		base: func(n int) string {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.bases[(n+i)%len(f.bases)]
		},
		told: func(base, d, etag string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.history[er.ID] = append(f.history[er.ID], d)
			f.trace[er.ID] = append(f.trace[er.ID], fmt.Sprintf("%s %s %s %s", time.Now().Format("15:04:05.000"), base, d[len(d)-1:], etag))
		},
	}.run(ctx)
}

// wavesFor is manifestsFor(n) rolled out in three baked waves.
func wavesFor(n int) string {
	return strings.Replace(manifestsFor(n), "  runtime: {path: /var/lib/m}\n", "  rolloutPolicy: waves\n  runtime: {path: /var/lib/m}\n", 1) + `---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: waves}
spec:
  waves: [{percent: 34, bake: 3s}, {percent: 67, bake: 3s}, {percent: 100}]
`
}

// Two `cairn serve` processes on one PostgreSQL: the leader is SIGKILLed in
// the middle of one rollout and SIGSTOPped for 20 s in the middle of the
// next. Each time the other replica takes the lease within 15 s, no target
// is ever told an older digest, no event is recorded twice, and the frozen
// leader stands down when it wakes. Then a leader frozen inside a write
// while the lease passes on finds that write refused when it wakes.
func TestFailoverKillAndFreezeOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute")
	}
	dsn := freshPostgres(t)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	repo, work := gitServer(t)
	commitPush(t, work, wavesFor(1), "v1")
	cfg := Config{Repo: repo, Interval: Duration(300 * time.Millisecond), Database: dsn, EnrollToken: "enroll-secret",
		AdminToken: "admin-secret", ReconcileInterval: Duration(200 * time.Millisecond), PollInterval: Duration(2 * time.Second), Enrollment: "auto"}
	reps := []*replica{startReplica(t, "a", cfg), startReplica(t, "b", cfg)}

	fl := &simFleet{history: map[string][]string{}, trace: map[string][]string{}}
	fl.setBases(reps[0].base, reps[1].base)
	fctx, stopFleet := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopFleet(); wg.Wait() }()
	for i := range 6 {
		er := enroll(t, fleet.NewClient(reps[i%2].base), fmt.Sprintf("dev-%d", i))
		wg.Add(1)
		go func() { defer wg.Done(); fl.run(fctx, er, i) }()
	}

	leader := func() (*replica, int64) {
		var holder string
		var term, expires int64
		if err := db.QueryRowContext(ctx, `SELECT holder, term, expires FROM leader_lease WHERE id = 1`).Scan(&holder, &term, &expires); err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(holder, ":")
		if len(parts) < 3 {
			return nil, term
		}
		pid, _ := strconv.Atoi(parts[len(parts)-2])
		for _, r := range reps {
			if r.pid() == pid {
				return r, term
			}
		}
		return nil, term
	}
	release := func() *fleet.ReleaseInfo {
		for _, r := range reps {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ri, err := fleet.NewAdminClient(r.base, "admin-secret").Release(rctx, "r")
			cancel()
			if err == nil {
				return ri
			}
		}
		return nil
	}
	waitFor := func(what string, within time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > within {
				t.Fatalf("%s: not within %s", what, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	succeeded := func(n int) func() bool {
		return func() bool {
			ri := release()
			return ri != nil && ri.Digest == digestOf(n) && ri.Phase == "Succeeded" && ri.Healthy == 6
		}
	}
	midRollout := func(n int) func() bool {
		return func() bool {
			ri := release()
			return ri != nil && ri.Digest == digestOf(n) && ri.Updated > 0 && ri.Updated < 6
		}
	}
	waitFor("v1 rolled out", 40*time.Second, succeeded(1))

	// 1. SIGKILL the leader in the middle of v2's rollout.
	commitPush(t, work, wavesFor(2), "v2")
	waitFor("v2 mid-rollout", 30*time.Second, midRollout(2))
	killed, term := leader()
	if killed == nil {
		t.Fatal("no leader")
	}
	killed.cmd.Process.Kill()
	<-killed.done
	took := waitFor("takeover after SIGKILL", 15*time.Second, func() bool {
		l, tm := leader()
		return l != nil && l != killed && tm > term
	})
	t.Logf("SIGKILL of %s: the other replica leads after %s", killed.name, took.Round(10*time.Millisecond))
	// Two replicas again: a new process in place of the killed one.
	for i, r := range reps {
		if r == killed {
			reps[i] = startReplica(t, r.name+"2", cfg)
		}
	}
	fl.setBases(reps[0].base, reps[1].base)
	waitFor("v2 rolled out after the takeover", 60*time.Second, succeeded(2))

	// 2. SIGSTOP the leader in the middle of v3's rollout, for 20 s.
	commitPush(t, work, wavesFor(3), "v3")
	waitFor("v3 mid-rollout", 30*time.Second, midRollout(3))
	frozen, term := leader()
	if frozen == nil {
		t.Fatal("no leader")
	}
	frozen.cmd.Process.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	fl.setBases(otherThan(reps, frozen).base) // the frozen replica answers nobody
	took = waitFor("takeover of a frozen leader", 15*time.Second, func() bool {
		l, tm := leader()
		return l != nil && l != frozen && tm > term
	})
	t.Logf("SIGSTOP of %s: the other replica leads after %s", frozen.name, took.Round(10*time.Millisecond))
	time.Sleep(20*time.Second - time.Since(stopped))
	frozen.cmd.Process.Signal(syscall.SIGCONT)
	fl.setBases(reps[0].base, reps[1].base)
	waitFor("v3 rolled out", 60*time.Second, succeeded(3))
	waitFor("the woken leader stands down", 10*time.Second, func() bool {
		return strings.Contains(frozen.logText(), "lost the leader lease")
	})
	if l, _ := leader(); l == frozen {
		t.Fatal("the frozen leader took the lease back")
	}

	// 3. A leader frozen inside a write while the lease passes on: hold the
	// lease row so the leader's next write waits for it, freeze the leader,
	// hand the lease on (as a takeover does) and let the write go on. When
	// the leader wakes, its write is refused by the fencing term.
	commitPush(t, work, wavesFor(4), "v4")
	waitFor("v4 mid-rollout", 30*time.Second, midRollout(4))
	writer, term := leader()
	if writer == nil {
		t.Fatal("no leader")
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT term FROM leader_lease WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	waitFor("a leader write waiting for the lease row", 20*time.Second, func() bool {
		var n int
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%leader_lease%FOR KEY SHARE%'`).Scan(&n)
		return n > 0
	})
	writer.cmd.Process.Signal(syscall.SIGSTOP)
	if _, err := tx.ExecContext(ctx, `UPDATE leader_lease SET holder = 'intruder', term = term + 1, expires = 0 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	fl.setBases(otherThan(reps, writer).base)
	waitFor("takeover after the intruder", 15*time.Second, func() bool {
		l, tm := leader()
		return l != nil && l != writer && tm > term+1
	})
	time.Sleep(6 * time.Second) // PostgreSQL ends the frozen session after 5 s idle in it
	writer.cmd.Process.Signal(syscall.SIGCONT)
	fl.setBases(reps[0].base, reps[1].base)
	if !waitUntil(10*time.Second, func() bool { return strings.Contains(writer.logText(), "write refused") }) {
		for _, line := range strings.Split(writer.logText(), "\n") {
			if strings.Contains(line, "WARN") || strings.Contains(line, "ERROR") {
				t.Log(line)
			}
		}
		t.Fatal("the woken leader's write was not refused")
	}
	for _, line := range strings.Split(writer.logText(), "\n") {
		if strings.Contains(line, "write refused") {
			t.Logf("woken leader: %s", line)
			break
		}
	}
	waitFor("v4 rolled out", 60*time.Second, succeeded(4))

	// No target was ever told an older digest.
	stopFleet()
	wg.Wait()
	want := []string{digestOf(1), digestOf(2), digestOf(3), digestOf(4)}
	for id, h := range fl.history {
		if !slices.Equal(h, want) {
			t.Errorf("%s was told %v, want %v", id, h, want)
			t.Logf("%s", strings.Join(fl.trace[id], "\n"))
		}
	}
	// No event recorded twice.
	evs, err := fleet.NewAdminClient(reps[0].base, "admin-secret").Events(ctx, fleet.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		if e.Type == "CommitRejected" || e.Type == "TargetOffline" {
			continue
		}
		k := e.Type + "|" + e.Commit + "|" + e.Message + "|" + strings.Join(e.Targets, ",")
		seen[k]++
	}
	admitted := 0
	for k, n := range seen {
		if n > 1 {
			t.Errorf("event recorded %d times: %s", n, k)
		}
		if strings.HasPrefix(k, "ReleaseAdmitted|") {
			admitted++
		}
	}
	if admitted != 4 {
		t.Errorf("ReleaseAdmitted for %d commits, want 4: %v", admitted, seen)
	}
}
