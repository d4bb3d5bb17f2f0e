package dashboard_test

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/reconciler/dashboard"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// countingStore counts the target reads of a refresh.
type countingStore struct {
	store.Store
	reads atomic.Int64
}

func (c *countingStore) Targets(ctx context.Context) ([]store.Target, error) {
	c.reads.Add(1)
	return c.Store.Targets(ctx)
}

func (c *countingStore) TargetsUpdatedSince(ctx context.Context, since time.Time) ([]store.Target, error) {
	c.reads.Add(1)
	return c.Store.TargetsUpdatedSince(ctx, since)
}

// TestRefreshOnlyWhileWatched: a dashboard nobody looks at reads nothing;
// the first page asked for refreshes the cache before it is rendered (a
// target enrolled meanwhile is there), and Run refreshes while pages are
// asked for.
func TestRefreshOnlyWhileWatched(t *testing.T) {
	e := newEnv(t)
	cs := &countingStore{Store: e.st}
	d, err := dashboard.New(dashboard.Config{Store: cs, AdminToken: "admin-tok", OfflineAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d)
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	if n := cs.reads.Load(); n != 0 {
		t.Fatalf("%d target reads with nobody watching, want 0", n)
	}
	if err := e.st.EnrollTarget(ctx, store.Target{ID: "dev-late", Name: "dev-late", Labels: map[string]string{"env": "prod"}, CredHash: "h"}); err != nil {
		t.Fatal(err)
	}
	pe := &env{t: t, st: e.st, hs: hs, dash: d}
	c := pe.login("admin-tok")
	if code, body := pe.get(c, "/targets/dev-late"); code != 200 {
		t.Fatalf("first page after an idle spell: %d %.200s; want the target enrolled meanwhile", code, body)
	}
	before := cs.reads.Load()
	time.Sleep(200 * time.Millisecond)
	if cs.reads.Load() <= before {
		t.Error("Run did not refresh while the dashboard is watched")
	}
}
