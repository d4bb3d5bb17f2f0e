package reconciler

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// slowStore makes a pass slower than the leader lease lives, as a pass over
// a large fleet on a loaded machine is: reading the fleet takes readDelay,
// outside any transaction, and writing the desired states keeps the pass's
// fenced transaction (and its lock on the lease row) open for writeDelay of
// database work (pg_sleep in the transaction, not idle in it).
type slowStore struct {
	*store.SQL
	on                    atomic.Bool
	readDelay, writeDelay time.Duration
}

func (s *slowStore) TargetStampsSince(ctx context.Context, since time.Time) ([]store.TargetStamp, error) {
	if s.on.Load() {
		time.Sleep(s.readDelay)
	}
	return s.SQL.TargetStampsSince(ctx, since)
}

func (s *slowStore) EachTargetStampSince(ctx context.Context, since time.Time, fn func(id, state []byte, at int64) error) error {
	if s.on.Load() {
		time.Sleep(s.readDelay)
	}
	return s.SQL.EachTargetStampSince(ctx, since, fn)
}

func (s *slowStore) PutDesired(ctx context.Context, ds []store.Desired) (int64, error) {
	if s.on.Load() {
		// In the pass's unit: the statement runs in its transaction.
		if _, err := s.DB().ExecContext(ctx, `SELECT pg_sleep($1)`, s.writeDelay.Seconds()); err != nil {
			return 0, err
		}
	}
	return s.SQL.PutDesired(ctx, ds)
}

// A pass longer than the leader lease, on PostgreSQL with a second replica
// campaigning: the leader keeps its lease through the pass (renewed on its
// own goroutine and connection, not queued behind its own fenced write),
// the pass's desired states are written and published, and the other
// replica never takes over. Before, the lease was checked against the
// snapshot taken when the pass began (every pass longer than the lease
// lapsed and was refused, again and again), and the renewal waited on the
// pass's share lock until its lock timeout, so the lease expired during the
// write and another replica took over after it.
func TestLeaseHeldThroughPassLongerThanLease(t *testing.T) {
	dsn := freshPostgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *sqldb.DB {
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	const ttl = 2 * time.Second
	sq, err := store.Open(ctx, open(), store.WithLeaseTTL(ttl), store.WithHolder("leader"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(ctx, open(), store.WithLeaseTTL(ttl), store.WithHolder("other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := sq.EnrollTarget(ctx, store.Target{ID: "dev-1", Name: "dev-1", Labels: map[string]string{"env": "prod"}, CredHash: "h"}); err != nil {
		t.Fatal(err)
	}
	st := &slowStore{SQL: sq, readDelay: 2 * ttl, writeDelay: ttl + 2500*time.Millisecond}
	var mu sync.Mutex
	var published []store.Desired
	r := New(Options{Store: st, LeaseRenew: ttl / 6, Interval: time.Hour,
		Publish: func(ds []store.Desired) { mu.Lock(); published = append(published, ds...); mu.Unlock() }})
	go r.Run(ctx)
	lease := func() store.Lease { r.leaseMu.Lock(); defer r.leaseMu.Unlock(); return r.lease }
	deadline := time.Now().Add(10 * time.Second)
	// Leading (state loaded under the lease), so OnCommit admits at once.
	for !r.Leading() {
		if time.Now().After(deadline) {
			t.Fatal("the only replica never led")
		}
		time.Sleep(20 * time.Millisecond)
	}
	term := lease().Term

	// From here every pass is slow, and the other replica campaigns.
	st.on.Store(true)
	var lapses, takeovers atomic.Int64
	watch, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for watch.Err() == nil {
			if l := lease(); !l.Valid() || l.Term != term {
				lapses.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for watch.Err() == nil {
			lctx, c := context.WithTimeout(watch, ttl/6)
			if l, err := other.Lead(lctx); err == nil && l.Held {
				takeovers.Add(1)
			}
			c()
			time.Sleep(ttl / 6)
		}
	}()
	// The pass is done once the model is published to the fleet API.
	hasModel := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range published {
			if d.Target == "dev-1" && strings.Contains(d.Text(), digestOf(1)) {
				return true
			}
		}
		return false
	}
	t0 := time.Now()
	r.OnCommit(ctx, repoAt(1))
	deadline = time.Now().Add(30 * time.Second)
	for {
		if hasModel() {
			break
		}
		if time.Now().After(deadline) {
			stopWatch()
			wg.Wait()
			t.Fatalf("the model was not published %s after the commit (lease lapsed in %d samples, other replica took over %d times)", time.Since(t0).Round(time.Millisecond), lapses.Load(), takeovers.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(t0)
	stopWatch()
	wg.Wait()
	if n := lapses.Load(); n > 0 {
		t.Errorf("the leader's lease lapsed or changed term in %d samples during a %s pass", n, took.Round(time.Millisecond))
	}
	if n := takeovers.Load(); n > 0 {
		t.Errorf("the other replica took the lease %d times during the leader's pass", n)
	}
	if took < st.readDelay+st.writeDelay {
		t.Fatalf("published %s after the commit, sooner than a slow pass takes", took)
	}
	if d, err := sq.Desired(ctx, "dev-1"); err != nil || !strings.Contains(d.Text(), digestOf(1)) {
		t.Fatalf("desired state of dev-1 not stored: %s %v", d.Text(), err)
	}
	if !t.Failed() {
		t.Logf("pass of %s under a %s lease: published, lease held throughout", took.Round(time.Millisecond), ttl)
	}
}

// While the leader's fenced write is open, a replica finding the lease
// expired waits for it before taking over (the key-share lock of the fence
// still holds a takeover back), and the write made before the takeover is
// kept while the deposed leader's next one is refused.
func TestTakeoverWaitsForFencedWrite(t *testing.T) {
	dsn := freshPostgres(t)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const ttl = 300 * time.Millisecond
	s, err := store.Open(ctx, db, store.WithLeaseTTL(ttl), store.WithHolder("a"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(ctx, db, store.WithLeaseTTL(ttl), store.WithHolder("b"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Lead(ctx)
	if err != nil || !l.Held {
		t.Fatalf("lead: %+v %v", l, err)
	}
	// A renewal while the fence's lock is held does not wait for it.
	inTx := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Atomic(s.Fenced(ctx, l), func(ctx context.Context) error {
			if err := s.PutMeta(ctx, "k", []byte("leader")); err != nil {
				return err
			}
			close(inTx)
			_, err := db.ExecContext(ctx, `SELECT pg_sleep(1.5)`)
			return err
		})
	}()
	<-inTx
	t0 := time.Now()
	if l2, err := s.Lead(ctx); err != nil || !l2.Held || l2.Term != l.Term {
		t.Fatalf("renewal during the leader's write: %+v %v", l2, err)
	} else if d := time.Since(t0); d > time.Second {
		t.Fatalf("renewal waited %s for the leader's own write", d)
	}
	// The leader stops renewing; once the lease expired the other replica
	// tries to take over, and must wait for the write to commit.
	time.Sleep(ttl + 100*time.Millisecond)
	for {
		o, err := other.Lead(ctx)
		if err == nil && o.Held {
			if o.Term != l.Term+1 {
				t.Fatalf("takeover term %d, want %d", o.Term, l.Term+1)
			}
			break
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatal("no takeover")
		}
	}
	// The write slept 1.5 s in its transaction from just before t0.
	if d := time.Since(t0); d < 1400*time.Millisecond {
		t.Fatalf("the other replica took over %s after the leader's fenced write began, before it committed", d)
	}
	if err := <-done; err != nil {
		t.Fatalf("the leader's write before the takeover: %v", err)
	}
	if v, err := s.Meta(ctx, "k"); err != nil || string(v) != "leader" {
		t.Fatalf("the write committed before the takeover: %q %v", v, err)
	}
	if err := s.PutMeta(s.Fenced(ctx, l), "k", []byte("late")); err == nil {
		t.Fatal("the deposed leader's write was accepted")
	}
}
