package reconciler

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/manifests"
)

// crashSeed is the random seed of TestCrashRestart: CAIRN_CRASH_SEED
// replays a failing run (the seed is in its log).
func crashSeed(t *testing.T) uint64 {
	if s := os.Getenv("CAIRN_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CAIRN_CRASH_SEED: %v", err)
		}
		return n
	}
	return uint64(time.Now().UnixNano() % 1_000_000)
}

// TestCrashRestart SIGKILLs `cairn serve` (a re-executed test binary
// running Serve) at random points of rollouts, failed rollouts rolled back
// and operator pause/resume commands, restarts it on the same database,
// and after every restart checks what one transaction per reconcile step
// promises: no wave started twice, no commit admitted twice, no rollback
// recorded twice, no duplicate lineage edge, no operator command lost or run
// twice; at the end every wave of every completed rollout started once, every
// commit was admitted once, every bad version rolled back once and every
// target runs the last version. On SQLite (24 kills) and PostgreSQL (8).
func TestCrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("about two minutes")
	}
	seed := crashSeed(t)
	t.Logf("seed %d (CAIRN_CRASH_SEED=%d replays this run)", seed, seed)
	t.Run("sqlite", func(t *testing.T) {
		data := t.TempDir()
		crashRun(t, rand.New(rand.NewPCG(seed, 1)), 24, filepath.Join(data, "cairn.db"), data)
	})
	t.Run("postgres", func(t *testing.T) {
		crashRun(t, rand.New(rand.NewPCG(seed, 2)), 8, freshPostgres(t), t.TempDir())
	})
}

// crashFleet is targets that report healthy on every digest but the bad
// ones, which they report failed.
type crashFleet struct {
	mu   sync.Mutex
	base string
	bad  map[string]bool
	told map[string]string // target → last digest told
}

func (f *crashFleet) run(ctx context.Context, er *fleet.EnrollResponse) {
	etag := ""
	var cur *fleet.DesiredState
	for ctx.Err() == nil {
		f.mu.Lock()
		c := fleet.NewClient(f.base)
		f.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ds, changed, err := c.Desired(pctx, er.ID, er.Credential, etag, 500*time.Millisecond)
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if changed {
			etag, cur = ds.ETag, ds
		}
		if cur == nil || len(cur.Models) != 1 {
			continue
		}
		d := cur.Models[0].Digest
		f.mu.Lock()
		f.told[er.ID] = d
		phase := fleet.PhaseHealthy
		if f.bad[d] {
			phase = fleet.PhaseFailed
		}
		f.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c.ReportStatus(rctx, er.ID, er.Credential, fleet.StatusReport{Releases: []fleet.ReleaseStatus{{Release: "r", Phase: phase, Digest: d, Desired: d}}})
		cancel()
	}
}

// crashManifests is manifestsFor(n) in three short baked waves, rolled
// back on the first failure.
func crashManifests(n int) string {
	return strings.ReplaceAll(strings.ReplaceAll(wavesFor(n), "bake: 3s", "bake: 1s"), digestOf(n), crashDigest(n))
}

// crashDigest is version n's digest; unlike digestOf's, their short forms
// (and so the rollouts' ids) differ.
func crashDigest(n int) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(strconv.Itoa(n))))
}

func crashRun(t *testing.T, rng *rand.Rand, kills int, database, data string) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	repo, work := gitServer(t)
	version := 1
	commitPush(t, work, crashManifests(version), "v1")
	cfg := Config{Repo: repo, Interval: Duration(200 * time.Millisecond), Database: database, EnrollToken: "enroll-secret",
		AdminToken: "admin-secret", ReconcileInterval: Duration(200 * time.Millisecond), PollInterval: Duration(time.Second),
		Enrollment: "auto", Data: data}
	serve := startReplica(t, "serve", cfg)
	fl := &crashFleet{base: serve.base, bad: map[string]bool{}, told: map[string]string{}}
	fctx, stopFleet := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopFleet(); wg.Wait() }()
	for i := range 4 {
		er := enroll(t, fleet.NewClient(serve.base), fmt.Sprintf("dev-%d", i))
		wg.Add(1)
		go func() { defer wg.Done(); fl.run(fctx, er) }()
	}
	admin := func() *fleet.AdminClient { return fleet.NewAdminClient(serve.base, "admin-secret") }
	head := func() string {
		out, err := exec.Command("git", "-C", work, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	release := func() *fleet.ReleaseInfo {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		ri, err := admin().Release(rctx, "r")
		if err != nil {
			return nil
		}
		return ri
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		if !waitUntil(within, cond) {
			t.Fatalf("%s: not within %s; release: %+v", what, within, release())
		}
	}
	admitted := func() {
		t.Helper()
		c := head()
		waitFor("commit "+c[:7]+" admitted", 20*time.Second, func() bool { ri := release(); return ri != nil && ri.Commit == c })
	}
	waitFor("v1 rolled out", 30*time.Second, func() bool {
		ri := release()
		return ri != nil && ri.Phase == "Succeeded" && ri.Healthy == 4
	})

	var commits []string // every commit pushed, in order
	commits = append(commits, head())
	bad := map[string]bool{} // commits whose version fails
	pushed := map[string]int{}
	for k := 1; k <= kills; k++ {
		var did string
		switch a := rng.IntN(3); {
		case a == 0 || a == 1:
			version++
			if a == 1 {
				fl.mu.Lock()
				fl.bad[crashDigest(version)] = true
				fl.mu.Unlock()
			}
			commitPush(t, work, crashManifests(version), fmt.Sprintf("v%d", version))
			commits = append(commits, head())
			if a == 1 {
				bad[head()] = true
				did = fmt.Sprintf("push bad v%d", version)
			} else {
				did = fmt.Sprintf("push v%d", version)
			}
		default:
			for _, action := range []string{"pause", "resume"} {
				if err := admin().RolloutAction(ctx, "r", action); err != nil {
					t.Fatalf("%s: %v", action, err)
				}
				pushed[action]++
				time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
			}
			did = "pause, resume"
		}
		wait := time.Duration(rng.IntN(1200)) * time.Millisecond
		time.Sleep(wait)
		serve.cmd.Process.Kill()
		<-serve.done
		t.Logf("kill %d: %s, SIGKILL after %s", k, did, wait)
		serve = startReplica(t, "serve", cfg)
		fl.mu.Lock()
		fl.base = serve.base
		fl.mu.Unlock()
		admitted()
		crashCheck(t, ctx, db, commits, bad, pushed, false)
	}
	// A last good version, rolled out to every target.
	version++
	commitPush(t, work, crashManifests(version), fmt.Sprintf("v%d", version))
	commits = append(commits, head())
	waitFor("the last version rolled out", 60*time.Second, func() bool {
		ri := release()
		return ri != nil && ri.Digest == crashDigest(version) && ri.Phase == "Succeeded" && ri.Healthy == 4
	})
	waitFor("every command run", 10*time.Second, func() bool {
		var n int
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM commands`).Scan(&n)
		return n == 0
	})
	crashCheck(t, ctx, db, commits, bad, pushed, true)
	stopFleet()
	wg.Wait()
	for id, d := range fl.told {
		if d != crashDigest(version) {
			t.Errorf("%s was last told %s, want %s", id, d, crashDigest(version))
		}
	}
}

// crashCheck reads the events and lineage edges from the database: at
// most once each, and, when final, exactly once each of what must be.
func crashCheck(t *testing.T, ctx context.Context, db *sqldb.DB, commits []string, bad map[string]bool, pushed map[string]int, final bool) {
	t.Helper()
	rows, err := db.QueryContext(ctx, `SELECT type, commit_sha, message FROM events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	count := map[string]int{}
	for rows.Next() {
		var typ, commit, msg string
		if err := rows.Scan(&typ, &commit, &msg); err != nil {
			t.Fatal(err)
		}
		switch typ {
		case manifests.EventWaveStarted:
			wave, _, _ := strings.Cut(msg, " of ")
			count[typ+"|"+commit+"|"+wave]++
		case manifests.EventReleaseAdmitted, manifests.EventRolledBack, manifests.EventRolloutStarted, manifests.EventRolloutDone, manifests.EventRolloutFailed:
			count[typ+"|"+commit]++
		case manifests.EventRolloutPaused:
			count["pause"]++
		case manifests.EventRolloutResumed:
			count["resume"]++
		case manifests.EventCommandIgnored:
			cmd, _, _ := strings.Cut(msg, " ")
			count[cmd]++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for k, n := range count {
		if n > 1 && k != "pause" && k != "resume" {
			t.Errorf("event recorded %d times: %s", n, k)
		}
	}
	for _, cmd := range []string{"pause", "resume"} {
		if count[cmd] > pushed[cmd] || (final && count[cmd] != pushed[cmd]) {
			t.Errorf("%d %s commands pushed, %d run or reported ignored", pushed[cmd], cmd, count[cmd])
		}
	}
	// Lineage: an admission or a rollback recorded twice would add its
	// edges again at another time.
	drows, err := db.QueryContext(ctx, `SELECT e.kind, u.name, d.name, e.phase, e.outcome, e.rel, e.attrs, e.at FROM lineage_edges e
		JOIN lineage_nodes u ON u.id = e.up JOIN lineage_nodes d ON d.id = e.down
		WHERE (e.kind IN ('declaredIn', 'rolledBack') OR e.outcome = 'RolledBack') AND EXISTS (SELECT 1 FROM lineage_edges o WHERE o.id <> e.id
		AND o.kind = e.kind AND o.up = e.up AND o.down = e.down AND o.phase = e.phase AND o.outcome = e.outcome AND o.rel = e.rel AND o.attrs = e.attrs)`)
	if err != nil {
		t.Fatal(err)
	}
	defer drows.Close()
	for drows.Next() {
		var kind, up, down, phase, outcome, rel, attrs string
		var at int64
		if err := drows.Scan(&kind, &up, &down, &phase, &outcome, &rel, &attrs, &at); err != nil {
			t.Fatal(err)
		}
		t.Errorf("lineage edge recorded more than once: %s %s → %s %s %s %s %s at %d", kind, up, down, phase, outcome, rel, attrs, at)
	}
	if !final {
		return
	}
	for i, c := range commits {
		if count[manifests.EventReleaseAdmitted+"|"+c] != 1 {
			t.Errorf("commit %d (%s): ReleaseAdmitted %d times, want 1", i+1, c[:7], count[manifests.EventReleaseAdmitted+"|"+c])
		}
		if bad[c] {
			// Admitted and started, it fails in its first wave (unless a
			// later commit superseded it first).
			if count[manifests.EventRolloutFailed+"|"+c] == 1 && count[manifests.EventRolledBack+"|"+c] != 1 {
				t.Errorf("commit %d (%s) failed but RolledBack %d times, want 1", i+1, c[:7], count[manifests.EventRolledBack+"|"+c])
			}
		}
		if count[manifests.EventRolloutDone+"|"+c] == 1 {
			for w := 1; w <= 3; w++ {
				if n := count[fmt.Sprintf("%s|%s|wave %d", manifests.EventWaveStarted, c, w)]; n != 1 {
					t.Errorf("commit %d (%s) rolled out, but wave %d started %d times, want 1", i+1, c[:7], w, n)
				}
			}
		}
	}
	last := commits[len(commits)-1]
	if count[manifests.EventRolloutDone+"|"+last] != 1 {
		t.Errorf("the last commit's RolloutDone: %d, want 1", count[manifests.EventRolloutDone+"|"+last])
	}
}
