package server

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// readCounter counts the target rows the status handler reads.
type readCounter struct {
	store.Store
	mu    sync.Mutex
	reads int
}

func (c *readCounter) Target(ctx context.Context, id string) (store.Target, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Store.Target(ctx, id)
}

func (c *readCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// TestStatusDigestsFromMemory: a report naming its desired digest, or the
// one its last report named, is taken without reading the store, and
// OnStored sees it with its receive time; a digest the target was never
// told to run is still refused (after the store is asked), and a report
// stored before this server started (another replica's) still counts.
func TestStatusDigestsFromMemory(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	rc := &readCounter{Store: st}
	var stored []time.Time
	var mu sync.Mutex
	s := New(Config{Store: rc, EnrollToken: "e", AutoAccept: true, StatusRate: 1000, StatusBurst: 1000,
		OnStored: func(id string, rep fleet.StatusReport, at time.Time) {
			mu.Lock()
			stored = append(stored, at)
			mu.Unlock()
		}})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	c := fleet.NewClient(hs.URL)
	er, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "e", Name: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	rep := func(digest, prev string) fleet.StatusReport {
		return fleet.StatusReport{Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: digest, Desired: digest, Previous: prev}}}
	}
	s.Publish([]store.Desired{fleetstate.EncodeDesired(er.ID, []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:1"}})})
	before := rc.count()
	for range 3 {
		if err := c.ReportStatus(ctx, er.ID, er.Credential, rep("sha256:1", "")); err != nil {
			t.Fatal(err)
		}
	}
	if n := rc.count() - before; n != 0 {
		t.Errorf("%d target reads for reports of the desired digest, want 0", n)
	}
	if len(stored) != 3 || stored[0].IsZero() {
		t.Errorf("OnStored saw %v, want 3 receive times", stored)
	}
	if got, _ := st.Target(ctx, er.ID); got.LastSeen.IsZero() || !got.LastSeen.Equal(stored[2]) {
		t.Errorf("last seen %v, OnStored's time %v: want the same", got.LastSeen, stored[2])
	}
	// Two desired states later, sha256:1 is only in the last report.
	s.Publish([]store.Desired{fleetstate.EncodeDesired(er.ID, []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:2"}})})
	s.Publish([]store.Desired{fleetstate.EncodeDesired(er.ID, []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:3"}})})
	before = rc.count()
	if err := c.ReportStatus(ctx, er.ID, er.Credential, rep("sha256:1", "")); err != nil {
		t.Fatalf("digest of the last report refused: %v", err)
	}
	if n := rc.count() - before; n != 0 {
		t.Errorf("%d target reads for a digest of the last report, want 0", n)
	}
	if err := c.ReportStatus(ctx, er.ID, er.Credential, rep("sha256:9", "")); err == nil {
		t.Error("a digest never desired was taken")
	}
	// A report stored by another replica (sha256:7 kept for rollback) counts.
	st.PutStatus(ctx, er.ID, rep("sha256:3", "sha256:7"), time.Now().UTC())
	if err := c.ReportStatus(ctx, er.ID, er.Credential, rep("sha256:7", "")); err != nil {
		t.Errorf("digest of a report stored elsewhere refused: %v", err)
	}
}
