package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// backends opens a fresh store of each kind for the contract suite.
var backends = map[string]func(t *testing.T) *store.SQL{}

func init() {
	for name, dsn := range testenv.Databases("store") {
		backends[name] = func(t *testing.T) *store.SQL { return open(t, dsn(t)) }
	}
}

func open(t *testing.T, dsn string) *store.SQL {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	// Migrating twice is a no-op.
	if _, err := store.Open(ctx, db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) { c.fn(t, mk(t)) })
			}
		})
	}
}

var contract = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"targets", testTargets},
	{"target stamps", testTargetStamps},
	{"acceptance and preauth", testAcceptance},
	{"status and log", testStatus},
	{"desired", testDesired},
	{"releases", testReleases},
	{"records", testRecords},
	{"events", testEvents},
	{"event_keys", testEventKeys},
	{"commands", testCommands},
	{"meta", testMeta},
	{"leader", testLeader},
}

var ctx = context.Background()

func testTargets(t *testing.T, s store.Store) {
	if _, err := s.Target(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing target: %v", err)
	}
	before := time.Now().Add(-time.Second)
	a := store.Target{ID: "a", Name: "a", Labels: map[string]string{"env": "prod"}, Facts: fleet.Facts{Arch: "arm64", Memory: 1 << 30}, CredHash: "h1"}
	if err := s.EnrollTarget(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.EnrollTarget(ctx, store.Target{ID: "b", Name: "b", CredHash: "h2"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Target(ctx, "a")
	if err != nil || got.Labels["env"] != "prod" || got.Facts.Arch != "arm64" || got.CredHash != "h1" || !got.LastSeen.IsZero() || got.Status != nil {
		t.Fatalf("target a = %+v, %v", got, err)
	}
	// Enrolling again replaces the credential.
	a.CredHash = "h3"
	if err := s.EnrollTarget(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Target(ctx, "a"); got.CredHash != "h3" {
		t.Fatalf("re-enrolled hash = %s", got.CredHash)
	}
	all, err := s.Targets(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "a" || all[1].ID != "b" {
		t.Fatalf("targets = %+v, %v", all, err)
	}
	since, err := s.TargetsUpdatedSince(ctx, before)
	if err != nil || len(since) != 2 {
		t.Fatalf("updated since = %d, %v", len(since), err)
	}
	if since, _ := s.TargetsUpdatedSince(ctx, time.Now().Add(time.Hour)); len(since) != 0 {
		t.Fatalf("updated in the future = %d", len(since))
	}
}

func testTargetStamps(t *testing.T, s store.Store) {
	before := time.Now().Add(-time.Second)
	for _, id := range []string{"a", "b", "c"} {
		if err := s.EnrollTarget(ctx, store.Target{ID: id, Name: id, CredHash: "h-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().Add(time.Minute).UTC()
	if err := s.PutStatus(ctx, "b", fleet.StatusReport{Releases: []fleet.ReleaseStatus{}}, at); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTargetAuth(ctx, "c", store.StateDeleted, "", ""); err != nil {
		t.Fatal(err)
	}
	stamps, err := s.TargetStampsSince(ctx, before)
	if err != nil || len(stamps) != 3 {
		t.Fatalf("stamps = %+v, %v", stamps, err)
	}
	byID := map[string]store.TargetStamp{}
	for _, st := range stamps {
		byID[st.ID] = st
	}
	if !byID["b"].UpdatedAt.Equal(at) || byID["c"].State != store.StateDeleted || byID["a"].State != store.StateAccepted {
		t.Fatalf("stamps = %+v; want b at %v (its report's time), c deleted", stamps, at)
	}
	if later, _ := s.TargetStampsSince(ctx, at); len(later) != 1 || later[0].ID != "b" {
		t.Fatalf("stamps since the report = %+v", later)
	}
	// Read one at a time, the same stamps.
	each := map[string]store.TargetStamp{}
	err = s.(interface {
		EachTargetStampSince(context.Context, time.Time, func(id, state []byte, at int64) error) error
	}).EachTargetStampSince(ctx, before, func(id, state []byte, at int64) error {
		each[string(id)] = store.TargetStamp{ID: string(id), State: string(state), UpdatedAt: time.Unix(0, at).UTC()}
		return nil
	})
	if err != nil || len(each) != len(byID) {
		t.Fatalf("stamps one at a time = %+v, %v", each, err)
	}
	for id, st := range byID {
		if e := each[id]; e.State != st.State || !e.UpdatedAt.Equal(st.UpdatedAt) {
			t.Fatalf("stamp of %s one at a time %+v, want %+v", id, e, st)
		}
	}
	ts, err := s.TargetsByID(ctx, []string{"b", "nope", "a"})
	if err != nil || len(ts) != 2 || ts[0].ID != "a" || ts[1].ID != "b" || ts[1].Status == nil || !ts[1].LastSeen.Equal(at) {
		t.Fatalf("by id = %+v, %v", ts, err)
	}
	if ts, err := s.TargetsByID(ctx, nil); err != nil || len(ts) != 0 {
		t.Fatalf("by no id = %+v, %v", ts, err)
	}
}

func testAcceptance(t *testing.T, s store.Store) {
	if err := s.SetTargetAuth(ctx, "nope", store.StateAccepted, "h", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("set auth of a missing target: %v", err)
	}
	if err := s.EnrollTarget(ctx, store.Target{ID: "p", Name: "p", State: store.StatePending, PendingHash: "hp"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Target(ctx, "p"); got.State != store.StatePending || got.PendingHash != "hp" || got.CredHash != "" {
		t.Fatalf("pending target = %+v", got)
	}
	if err := s.SetTargetAuth(ctx, "p", store.StateAccepted, "hp", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Target(ctx, "p"); got.State != store.StateAccepted || got.PendingHash != "" || got.CredHash != "hp" {
		t.Fatalf("accepted target = %+v", got)
	}
	if err := s.EnrollTarget(ctx, store.Target{ID: "q", Name: "q", CredHash: "hq"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Target(ctx, "q"); got.State != store.StateAccepted {
		t.Fatalf("default state = %q", got.State)
	}
	if err := s.PutPreauth(ctx, "r", "t1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TakePreauth(ctx, "r", "wrong"); ok || err != nil {
		t.Fatalf("wrong preauth token taken: %v %v", ok, err)
	}
	if ok, err := s.TakePreauth(ctx, "r", "t1"); !ok || err != nil {
		t.Fatalf("preauth token refused: %v %v", ok, err)
	}
	if ok, _ := s.TakePreauth(ctx, "r", "t1"); ok {
		t.Fatal("a preauth token was used twice")
	}
}

func testStatus(t *testing.T, s store.Store) {
	s.EnrollTarget(ctx, store.Target{ID: "a", Name: "a", CredHash: "h"})
	at := time.Now().UTC().Truncate(time.Microsecond)
	rep := fleet.StatusReport{Facts: &fleet.Facts{Arch: "amd64"}, Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: "sha256:1"}},
		Metrics: map[string]float64{"cpu_percent": 3.5}}
	for i := range 3 {
		rep.Log = []fleet.LogEntry{{Release: "r", Phase: fleet.PhaseInstalling, Message: fmt.Sprint("step ", i)}}
		if err := s.PutStatus(ctx, "a", rep, at); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Target(ctx, "a")
	if err != nil || !got.LastSeen.Equal(at) || got.Facts.Arch != "amd64" || got.Status == nil || got.Status.Metrics["cpu_percent"] != 3.5 || got.Status.Releases[0].Phase != fleet.PhaseHealthy {
		t.Fatalf("after status: %+v, %v", got, err)
	}
	if len(got.Status.Log) != 0 {
		t.Fatal("log kept in the status record")
	}
	log, err := s.Log(ctx, "a", 2)
	if err != nil || len(log) != 2 || log[0].Message != "step 1" || log[1].Message != "step 2" {
		t.Fatalf("log = %+v, %v", log, err)
	}
	if err := s.PutStatus(ctx, "ghost", rep, at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status of unknown target: %v", err)
	}
}

func testDesired(t *testing.T, s store.Store) {
	if _, err := s.Desired(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing desired: %v", err)
	}
	var batch []store.Desired
	for i := range 1203 { // crosses the multi-row batch size
		batch = append(batch, store.Desired{Target: fmt.Sprintf("t%04d", i), ETag: "e1", Body: []byte(`{"models":[]}`)})
	}
	rev1, err := s.PutDesired(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := s.PutDesired(ctx, []store.Desired{{Target: "t0005", ETag: "e2", Body: []byte(`{"x":1}`)}})
	if err != nil || rev2 <= rev1 {
		t.Fatalf("revisions %d then %d, %v", rev1, rev2, err)
	}
	d, err := s.Desired(ctx, "t0005")
	if err != nil || d.ETag != "e2" || string(d.Body) != `{"x":1}` || d.Rev != rev2 {
		t.Fatalf("desired t0005 = %+v, %v", d, err)
	}
	all, err := s.DesiredSince(ctx, 0)
	if err != nil || len(all) != 1203 {
		t.Fatalf("desired since 0 = %d, %v", len(all), err)
	}
	newer, err := s.DesiredSince(ctx, rev1)
	if err != nil || len(newer) != 1 || newer[0].Target != "t0005" {
		t.Fatalf("desired since %d = %+v, %v", rev1, newer, err)
	}

	// States in two parts: each reads back whole, by one target or since
	// a revision, also after their rest moved on to another body and back.
	parts := func(rest string, ids ...string) []store.Desired {
		var ds []store.Desired
		for _, id := range ids {
			ds = append(ds, store.Desired{Target: id, ETag: "p-" + rest, Head: `{"target":"` + id + `",`, Rest: rest})
		}
		return ds
	}
	check := func(since int64, want map[string]string) {
		t.Helper()
		got, err := s.DesiredSince(ctx, since)
		if err != nil || len(got) != len(want) {
			t.Fatalf("desired since %d: %d states, %v; want %d", since, len(got), err, len(want))
		}
		for _, d := range got {
			if d.Text() != want[d.Target] || d.ETag != "p-"+want[d.Target][len(`{"target":"`+d.Target+`",`):] {
				t.Fatalf("desired since %d: %s = %q tagged %s, want %q", since, d.Target, d.Text(), d.ETag, want[d.Target])
			}
			one, err := s.Desired(ctx, d.Target)
			if err != nil || string(one.Body) != want[d.Target] || one.ETag != d.ETag || one.Rev != d.Rev {
				t.Fatalf("desired %s = %+v, %v; want %q", d.Target, one, err, want[d.Target])
			}
		}
	}
	restA, restB := `"models":[{"digest":"a"}]}`, `"models":[{"digest":"b"}]}`
	rev3, err := s.PutDesired(ctx, append(parts(restA, "u1", "u2", "u3"), parts(restB, "u4")...))
	if err != nil {
		t.Fatal(err)
	}
	check(rev3-1, map[string]string{"u1": `{"target":"u1",` + restA, "u2": `{"target":"u2",` + restA, "u3": `{"target":"u3",` + restA, "u4": `{"target":"u4",` + restB})
	rev4, err := s.PutDesired(ctx, parts(restB, "u1", "u2", "u3"))
	if err != nil {
		t.Fatal(err)
	}
	check(rev4-1, map[string]string{"u1": `{"target":"u1",` + restB, "u2": `{"target":"u2",` + restB, "u3": `{"target":"u3",` + restB})
	restC := `"models":[{"digest":"c"}]}`
	rev5, err := s.PutDesired(ctx, append(parts(restA, "u1"), parts(restC, "u2")...))
	if err != nil {
		t.Fatal(err)
	}
	check(rev4, map[string]string{"u1": `{"target":"u1",` + restA, "u2": `{"target":"u2",` + restC})
	check(rev3, map[string]string{"u1": `{"target":"u1",` + restA, "u2": `{"target":"u2",` + restC, "u3": `{"target":"u3",` + restB})
	if rev5 <= rev4 {
		t.Fatalf("revisions %d then %d", rev4, rev5)
	}
	// A read across a rewrite of every state (the bodies it names
	// deleted meanwhile) reads the states as they were when it began,
	// each whole; a read after it gets the new ones.
	if _, err := s.PutDesired(ctx, append(parts(restA, "v1"), parts(restB, "v2")...)); err != nil {
		t.Fatal(err)
	}
	each := s.(interface {
		EachDesiredSince(context.Context, int64, func(store.Desired) error) error
	})
	before, err := s.DesiredSince(ctx, rev5)
	if err != nil {
		t.Fatal(err)
	}
	all, err = s.DesiredSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range all {
		ids = append(ids, d.Target)
	}
	restD := `"models":[{"digest":"d"}]}`
	var during []store.Desired
	err = each.EachDesiredSince(ctx, rev5, func(d store.Desired) error {
		if during == nil {
			if _, err := s.PutDesired(ctx, parts(restD, ids...)); err != nil {
				t.Fatal(err)
			}
		}
		during = append(during, d)
		return nil
	})
	if err != nil || len(during) != len(before) {
		t.Fatalf("read across a rewrite of every state: %d states, %v; want %d", len(during), err, len(before))
	}
	for i := range during {
		if during[i].Text() != before[i].Text() || during[i].ETag != before[i].ETag {
			t.Fatalf("read across a rewrite: %s = %q, want %q", during[i].Target, during[i].Text(), before[i].Text())
		}
	}
	again, err := s.DesiredSince(ctx, rev5)
	if err != nil || len(again) != len(ids) || again[0].Text() != `{"target":"`+again[0].Target+`",`+restD {
		t.Fatalf("read again: %d states, %v", len(again), err)
	}

	// A whole body replaces a two-part one.
	if _, err := s.PutDesired(ctx, []store.Desired{{Target: "u1", ETag: "whole", Body: []byte(`{"whole":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Desired(ctx, "u1"); err != nil || string(d.Body) != `{"whole":1}` {
		t.Fatalf("desired u1 = %+v, %v", d, err)
	}
}

func testReleases(t *testing.T, s store.Store) {
	if _, err := s.Release(ctx, "r"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing release: %v", err)
	}
	for _, n := range []string{"b", "a"} {
		if err := s.PutRelease(ctx, store.Release{Name: n, Commit: "c1", Spec: []byte(`{}`), State: []byte(`{"phase":"Progressing"}`), Status: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	s.PutRelease(ctx, store.Release{Name: "a", Commit: "c2", Spec: []byte(`{}`), State: []byte(`{"phase":"Succeeded"}`), Status: []byte(`{}`)})
	r, err := s.Release(ctx, "a")
	if err != nil || r.Commit != "c2" || !strings.Contains(string(r.State), "Succeeded") || r.UpdatedAt.IsZero() {
		t.Fatalf("release a = %+v, %v", r, err)
	}
	rs, err := s.Releases(ctx)
	if err != nil || len(rs) != 2 || rs[0].Name != "a" {
		t.Fatalf("releases = %+v, %v", rs, err)
	}
	if err := s.DeleteRelease(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if rs, _ := s.Releases(ctx); len(rs) != 1 {
		t.Fatalf("after delete: %d releases", len(rs))
	}
}

// An event whose key is recorded is not recorded again (a replayed step)
// and gets the recorded one's ID; events without a key always are.
func testEventKeys(t *testing.T, s store.Store) {
	first := []fleet.Event{{Type: "WaveStarted", Key: "r-1|WaveStarted|wave 1"}, {Type: "RolloutCommand"}}
	if err := s.AddEvents(ctx, first); err != nil {
		t.Fatal(err)
	}
	again := []fleet.Event{{Type: "WaveStarted", Key: "r-1|WaveStarted|wave 1"}, {Type: "RolloutCommand"}, {Type: "WaveStarted", Key: "r-1|WaveStarted|wave 2"}}
	if err := s.AddEvents(ctx, again); err != nil {
		t.Fatal(err)
	}
	if again[0].ID != first[0].ID || again[1].ID == first[1].ID || again[2].ID == 0 {
		t.Fatalf("ids: first %d %d, again %d %d %d", first[0].ID, first[1].ID, again[0].ID, again[1].ID, again[2].ID)
	}
	evs, err := s.Events(ctx, fleet.EventFilter{Type: "WaveStarted"})
	if err != nil || len(evs) != 2 {
		t.Fatalf("WaveStarted recorded %d times: %v", len(evs), err)
	}
}

func testEvents(t *testing.T, s store.Store) {
	evs := []fleet.Event{
		{Type: "PolicyDenied", Release: "r1", Message: "denied"},
		{Type: "RolloutStarted", Release: "r2", Message: "go", Targets: []string{"a", "b"}},
		{Type: "TargetOffline", Target: "a", Message: "quiet"},
	}
	if err := s.AddEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if evs[0].ID == 0 || evs[2].ID <= evs[0].ID || evs[0].Time.IsZero() {
		t.Fatalf("ids/time not set: %+v", evs)
	}
	all, err := s.Events(ctx, fleet.EventFilter{})
	if err != nil || len(all) != 3 || all[0].Type != "PolicyDenied" || len(all[1].Targets) != 2 {
		t.Fatalf("events = %+v, %v", all, err)
	}
	one, _ := s.Events(ctx, fleet.EventFilter{Release: "r2"})
	if len(one) != 1 || one[0].Type != "RolloutStarted" {
		t.Fatalf("events of r2 = %+v", one)
	}
	last, _ := s.Events(ctx, fleet.EventFilter{Limit: 2})
	if len(last) != 2 || last[1].Type != "TargetOffline" {
		t.Fatalf("newest 2 = %+v", last)
	}
}

func testCommands(t *testing.T, s store.Store) {
	if cs, err := s.TakeCommands(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("no commands: %v %v", cs, err)
	}
	s.PushCommand(ctx, "r", "pause")
	s.PushCommand(ctx, "r", "resume")
	cs, err := s.TakeCommands(ctx)
	if err != nil || len(cs) != 2 || cs[0].Command != "pause" || cs[1].Command != "resume" {
		t.Fatalf("commands = %+v, %v", cs, err)
	}
	if cs, _ := s.TakeCommands(ctx); len(cs) != 0 {
		t.Fatalf("commands taken twice: %+v", cs)
	}
}

func testMeta(t *testing.T, s store.Store) {
	if _, err := s.Meta(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing meta: %v", err)
	}
	s.PutMeta(ctx, "k", []byte("v1"))
	s.PutMeta(ctx, "k", []byte("v2"))
	if v, err := s.Meta(ctx, "k"); err != nil || string(v) != "v2" {
		t.Fatalf("meta = %q, %v", v, err)
	}
}

func testLeader(t *testing.T, st store.Store) {
	sq := st.(*store.SQL)
	s, err := store.Open(ctx, sq.DB(), store.WithLeaseTTL(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Lead(ctx)
	if err != nil || !l.Held || l.Term != 1 || !l.Valid() {
		t.Fatalf("first replica leads: %+v %v", l, err)
	}
	if l2, _ := s.Lead(ctx); !l2.Held || l2.Term != 1 {
		t.Fatalf("renewal changed the lease: %+v", l2)
	}
	fenced := s.Fenced(ctx, l)
	if err := s.PutMeta(fenced, "k", []byte("leader")); err != nil {
		t.Fatalf("leader write: %v", err)
	}
	// A second replica on the same database.
	other, err := store.Open(ctx, sq.DB(), store.WithLeaseTTL(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if sq.DB().Dialect == sqldb.Postgres {
		if o, _ := other.Lead(ctx); o.Held {
			t.Fatal("two leaders")
		}
		// Nobody renews the first lease (a frozen leader): the second
		// replica takes over once it expires.
		deadline := time.Now().Add(5 * time.Second)
		for {
			o, err := other.Lead(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if o.Held {
				if o.Term != 2 {
					t.Fatalf("takeover term = %d", o.Term)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("expired lease never taken over")
			}
			time.Sleep(100 * time.Millisecond)
		}
	} else if o, _ := other.Lead(ctx); !o.Held || o.Term != 2 {
		t.Fatalf("SQLite: a new process takes the lease at once: %+v", o)
	}
	// The deposed leader's writes are refused, whichever kind.
	writes := map[string]func() error{
		"meta":    func() error { return s.PutMeta(fenced, "k", []byte("late")) },
		"release": func() error { return s.PutRelease(fenced, store.Release{Name: "late"}) },
		"events":  func() error { return s.AddEvents(fenced, []fleet.Event{{Type: "Late"}}) },
		"desired": func() error {
			_, err := s.PutDesired(fenced, []store.Desired{{Target: "t", ETag: "e", Body: []byte("{}")}})
			return err
		},
		"commands": func() error { s.PushCommand(ctx, "r", "pause"); _, err := s.TakeCommands(fenced); return err },
		"delete":   func() error { return s.DeleteRelease(fenced, "x") },
	}
	for name, w := range writes {
		if err := w(); !errors.Is(err, store.ErrFenced) {
			t.Errorf("%s write of the deposed leader: %v", name, err)
		}
	}
	if v, _ := s.Meta(ctx, "k"); string(v) != "leader" {
		t.Fatalf("late write stored: %q", v)
	}
	if cs, _ := other.TakeCommands(ctx); len(cs) != 1 {
		t.Fatalf("the refused take lost the command: %+v", cs)
	}
	// The old leader does not get the lease back while the new one renews.
	if sq.DB().Dialect == sqldb.Postgres {
		if l3, _ := s.Lead(ctx); l3.Held {
			t.Fatalf("deposed leader leads again: %+v", l3)
		}
		// Close gives the lease up: the first replica takes it at once.
		other.Close()
		if l4, _ := s.Lead(ctx); !l4.Held || l4.Term != 3 {
			t.Fatalf("after the holder closed: %+v", l4)
		}
	}
}
