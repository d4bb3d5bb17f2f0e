package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/manifests"
)

// A receiver that answers 500 for a while, then 200, gets every alert
// exactly once per delivery id, across a restart of the notifier (a new
// process on the same database). The backoff is shortened for the test:
// 20 ms doubling to 200 ms, for 1.5 s of 500s instead of minutes.
func TestOutboxDeliversOnceAcrossFailuresAndRestart(t *testing.T) {
	for name, dsn := range testenv.Databases("outbox") {
		t.Run(name, func(t *testing.T) { testOutbox(t, dsn(t)) })
	}
}

func testOutbox(t *testing.T, dsn string) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	ok := map[string]int{}
	var failing atomic.Bool
	failing.Store(true)
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			refused.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		mu.Lock()
		ok[r.Header.Get("X-Cairn-Delivery")]++
		mu.Unlock()
	}))
	defer srv.Close()
	alert := manifests.Alert{Metadata: manifests.ObjectMeta{Name: "ops"}, Spec: manifests.AlertSpec{
		Events: []string{manifests.EventRolledBack, manifests.EventRolloutFailed}, Webhook: manifests.Webhook{URL: srv.URL}}}
	start := func() (*Notifier, context.CancelFunc) {
		o, err := OpenOutbox(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
		n := New(Options{Outbox: o, Tick: 10 * time.Millisecond})
		rctx, cancel := context.WithCancel(ctx)
		go n.Run(rctx, func() bool { return true })
		return n, cancel
	}
	n, stop := start()
	const alerts = 10
	for i := range alerts {
		evs := []fleet.Event{{ID: int64(2*i + 1), Type: manifests.EventRolloutFailed, Release: "r"}, {ID: int64(2*i + 2), Type: manifests.EventRolledBack, Release: "r"}}
		n.Send([]manifests.Alert{alert}, evs)
		if i == 3 {
			n.Send([]manifests.Alert{alert}, evs) // a retried step: the same delivery
		}
	}
	time.Sleep(700 * time.Millisecond)
	stop() // the server restarts while the receiver still fails
	n, stop = start()
	defer stop()
	time.Sleep(800 * time.Millisecond)
	failing.Store(false)
	// A delivery the first notifier had claimed when it stopped waits out
	// its claim (twice the client's 10 s timeout) before the second takes it.
	deadline := time.Now().Add(40 * time.Second)
	for {
		pending, err := n.opts.Outbox.List(ctx, StatePending)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still pending: %+v", len(pending), pending[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ok) != alerts {
		t.Fatalf("%d delivery ids received, want %d: %v", len(ok), alerts, ok)
	}
	for id, c := range ok {
		if c != 1 {
			t.Errorf("delivery %s accepted %d times", id, c)
		}
	}
	all, _ := n.opts.Outbox.List(ctx)
	for _, d := range all {
		if d.State != StateDelivered || d.Attempts < 2 {
			t.Errorf("delivery %+v", d)
		}
	}
	t.Logf("%d deliveries, %d answered 500 first, each accepted once", alerts, refused.Load())
}

// A delivery still refused after MaxAge is marked failed and not retried.
func TestOutboxGivesUpAfterMaxAge(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "cairn.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	o, err := OpenOutbox(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	o.MinBackoff, o.MaxBackoff, o.MaxAge = 10*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
	n := New(Options{Outbox: o, Tick: 5 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go n.Run(rctx, func() bool { return true })
	alert := manifests.Alert{Metadata: manifests.ObjectMeta{Name: "ops"}, Spec: manifests.AlertSpec{
		Events: []string{manifests.EventRolledBack}, Webhook: manifests.Webhook{URL: srv.URL}}}
	n.Send([]manifests.Alert{alert}, []fleet.Event{{ID: 1, Type: manifests.EventRolledBack}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		ds, _ := o.List(ctx, StateFailed)
		if len(ds) == 1 {
			if !strings.Contains(ds[0].LastError, "502") {
				t.Fatalf("failed delivery: %+v", ds[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never given up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := calls.Load()
	time.Sleep(100 * time.Millisecond)
	if calls.Load() != before {
		t.Fatal("a failed delivery is retried")
	}
	// A follower (lead false) delivers nothing.
	n.Send([]manifests.Alert{alert}, []fleet.Event{{ID: 2, Type: manifests.EventRolledBack}})
	cancel()
	f := New(Options{Outbox: o, Tick: 5 * time.Millisecond})
	fctx, fcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer fcancel()
	before = calls.Load()
	f.Run(fctx, func() bool { return false })
	if calls.Load() != before {
		t.Fatal("a follower delivered")
	}
}
