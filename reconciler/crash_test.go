package reconciler

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
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
// and operator commands (pause, resume, abort, retry), and restarts it on
// the same database and address, which four simulated targets and two
// agent processes (fleet/agent, downloads stubbed) follow. After every
// restart, once the queued commands ran, it checks what one transaction per
// reconcile step promises: no wave started twice, no commit admitted
// twice, no rollback recorded twice (per rollout attempt: a retry starts
// another), no duplicate lineage edge, every command sent run or reported
// ignored exactly once (none lost, none run twice); at the end every wave
// of every completed rollout started once, every commit was admitted once,
// every failed attempt rolled back once and every target runs the last
// version. On SQLite (24 kills) and PostgreSQL (8).
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
	simTarget{er: er, wait: 500 * time.Millisecond, timeout: 2 * time.Second,
		base: func(int) string {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.base
		},
		phase: func(d string) string {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.bad[d] {
				return fleet.PhaseFailed
			}
			return fleet.PhaseHealthy
		},
		told: func(_, d, _ string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.told[er.ID] = d
		},
	}.run(ctx)
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
		Enrollment: "auto", Data: data, Listen: freeAddr(t)}
	serve := startReplica(t, "serve", cfg)
	// Two agent processes (the agent loop with stubbed downloads) beside the
	// simulated targets; serve restarts on the same address for them.
	badFile := filepath.Join(t.TempDir(), "bad")
	for i := range crashAgents {
		startAgent(t, agentChildConfig{Server: serve.base, Name: fmt.Sprintf("agent-%d", i), Root: t.TempDir(), Bad: badFile})
	}
	fl := &crashFleet{base: serve.base, bad: map[string]bool{}, told: map[string]string{}}
	fctx, stopFleet := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopFleet(); wg.Wait() }()
	for i := range crashTargets - crashAgents {
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
		return ri != nil && ri.Phase == "Succeeded" && ri.Healthy == crashTargets
	})

	var commits []string // every commit pushed, in order
	commits = append(commits, head())
	bad := map[string]bool{} // commits whose version fails
	pushed := map[string]int{}
	commandsRun := func() {
		t.Helper()
		waitFor("every queued command run", 20*time.Second, func() bool {
			var n int
			db.QueryRowContext(ctx, `SELECT COUNT(*) FROM commands`).Scan(&n)
			return n == 0
		})
	}
	for k := 1; k <= kills; k++ {
		var did string
		switch a := rng.IntN(5); {
		case a <= 1:
			version++
			if a == 1 {
				fl.mu.Lock()
				fl.bad[crashDigest(version)] = true
				fl.mu.Unlock()
				f, err := os.OpenFile(badFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintln(f, crashDigest(version))
				f.Close()
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
			// One to three operator commands, each run or reported ignored
			// as the rollout's phase allows, in the order sent.
			var sent []string
			for range 1 + rng.IntN(3) {
				action := crashCommands[rng.IntN(len(crashCommands))]
				if err := admin().RolloutAction(ctx, "r", action); err != nil {
					t.Fatalf("%s: %v", action, err)
				}
				pushed[action]++
				sent = append(sent, action)
				time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
			}
			did = strings.Join(sent, ", ")
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
		commandsRun()
		crashCheck(t, ctx, db, commits, bad, pushed, false)
	}
	// A last good version, rolled out to every target.
	version++
	commitPush(t, work, crashManifests(version), fmt.Sprintf("v%d", version))
	commits = append(commits, head())
	waitFor("the last version rolled out", 60*time.Second, func() bool {
		ri := release()
		return ri != nil && ri.Digest == crashDigest(version) && ri.Phase == "Succeeded" && ri.Healthy == crashTargets
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

// The targets of TestCrashRestart, crashAgents of them agent processes.
const crashTargets, crashAgents = 6, 2

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// crashCommands are the operator commands TestCrashRestart sends.
var crashCommands = []string{"pause", "resume", "abort", "retry"}

// crashCheck reads the events and lineage edges from the database, once
// every queued command ran: at most once each of what happens once per
// rollout attempt (a retry starts another attempt of the same commit), each
// command sent run or reported ignored exactly once, rollouts named in
// lineage by their full key; when final, exactly once each of what must be.
func crashCheck(t *testing.T, ctx context.Context, db *sqldb.DB, commits []string, bad map[string]bool, pushed map[string]int, final bool) {
	t.Helper()
	rows, err := db.QueryContext(ctx, `SELECT type, reason, commit_sha, message FROM events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	count, ignored := map[string]int{}, map[string]int{}
	attempt := map[string]int{} // commit → retries run
	once := func(typ, commit string, more ...string) string {
		return strings.Join(append([]string{typ, commit, strconv.Itoa(attempt[commit])}, more...), "|")
	}
	for rows.Next() {
		var typ, reason, commit, msg string
		if err := rows.Scan(&typ, &reason, &commit, &msg); err != nil {
			t.Fatal(err)
		}
		switch typ {
		case manifests.EventWaveStarted:
			wave, _, _ := strings.Cut(msg, " of ")
			count[once(typ, commit, wave)]++
		case manifests.EventReleaseAdmitted:
			count[typ+"|"+commit]++
		case manifests.EventRolledBack, manifests.EventRolloutStarted, manifests.EventRolloutDone, manifests.EventRolloutFailed:
			count[once(typ, commit)]++
		case manifests.EventRolloutPaused:
			if reason == rollout.ReasonOperatorPause { // not a failure's pause
				count["pause"]++
			}
		case manifests.EventRolloutResumed:
			count["resume"]++
		case manifests.EventRolloutAborted:
			count["abort"]++
		case manifests.EventRolloutRetried:
			count["retry"]++
			attempt[commit]++
		case manifests.EventCommandIgnored:
			cmd, _, _ := strings.Cut(msg, " ")
			count[cmd]++
			ignored[cmd]++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for k, n := range count {
		if n > 1 && !slices.Contains(crashCommands, k) {
			t.Errorf("event recorded %d times: %s", n, k)
		}
	}
	for _, cmd := range crashCommands {
		if count[cmd] != pushed[cmd] {
			t.Errorf("%d %s commands sent, %d run or reported ignored", pushed[cmd], cmd, count[cmd])
		}
	}
	if final {
		t.Logf("commands sent (run + ignored): pause %d (%d ignored), resume %d (%d), abort %d (%d), retry %d (%d)",
			pushed["pause"], ignored["pause"], pushed["resume"], ignored["resume"], pushed["abort"], ignored["abort"], pushed["retry"], ignored["retry"])
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
	if err := drows.Err(); err != nil {
		t.Fatal(err)
	}
	// Every deployment names its rollout (a target is told a model only by
	// a rollout), also one reported to a replica that just restarted and
	// waits out the killed leader's lease: without it, two rollbacks to
	// one model in two attempts look like one recorded twice.
	var anonymous int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM lineage_edges WHERE kind = 'deployedTo' AND attrs NOT LIKE '%"rollout":"%'`).Scan(&anonymous); err != nil {
		t.Fatal(err)
	}
	if anonymous > 0 {
		t.Errorf("%d deployedTo edges name no rollout", anonymous)
	}
	// Rollouts are named by rollout.State.Key, never the short State.ID.
	nrows, err := db.QueryContext(ctx, `SELECT name FROM lineage_nodes WHERE name LIKE 'rollout:%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer nrows.Close()
	for nrows.Next() {
		var name string
		if err := nrows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !rolloutKey.MatchString(name) {
			t.Errorf("lineage rollout node %s is not named by its full key", name)
		}
	}
	if err := nrows.Err(); err != nil {
		t.Fatal(err)
	}
	if !final {
		return
	}
	for i, c := range commits {
		if count[manifests.EventReleaseAdmitted+"|"+c] != 1 {
			t.Errorf("commit %d (%s): ReleaseAdmitted %d times, want 1", i+1, c[:7], count[manifests.EventReleaseAdmitted+"|"+c])
		}
		for a := 0; a <= attempt[c]; a++ {
			key := func(typ string, more ...string) string {
				return strings.Join(append([]string{typ, c, strconv.Itoa(a)}, more...), "|")
			}
			// A failed attempt (a bad version, in its first wave unless
			// superseded or aborted first) is rolled back once.
			if count[key(manifests.EventRolloutFailed)] == 1 && count[key(manifests.EventRolledBack)] != 1 {
				t.Errorf("commit %d (%s) attempt %d failed but RolledBack %d times, want 1", i+1, c[:7], a+1, count[key(manifests.EventRolledBack)])
			}
			if count[key(manifests.EventRolloutDone)] == 1 {
				for w := 1; w <= 3; w++ {
					if n := count[key(manifests.EventWaveStarted, fmt.Sprintf("wave %d", w))]; n != 1 {
						t.Errorf("commit %d (%s) attempt %d rolled out, but wave %d started %d times, want 1", i+1, c[:7], a+1, w, n)
					}
				}
			}
		}
	}
	last := commits[len(commits)-1]
	if n := count[manifests.EventRolloutDone+"|"+last+"|0"]; n != 1 {
		t.Errorf("the last commit's RolloutDone: %d, want 1", n)
	}
}

// rolloutKey is a lineage rollout node named by rollout.State.Key.
var rolloutKey = regexp.MustCompile(`^rollout:r\|sha256:[0-9a-f]{64}\|[0-9]+$`)
