package server

import (
	"bytes"
	"slices"
	"strconv"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// The hub serves every body byte for byte as published, keeps one copy of
// the part after the head for targets desired the same state, and forgets
// it once no target's state or previous state is it.
func TestHubSharesBodies(t *testing.T) {
	h := newHub()
	models := []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:1", Artifact: "reg/m@sha256:1"}}
	var ds []store.Desired
	for _, id := range []string{"a", "b", "c"} {
		ds = append(ds, fleetstate.EncodeDesired(id, models))
	}
	// A body that does not begin as the hub would write its head is kept
	// whole; one with evaluation runs of its own shares nothing.
	odd := store.Desired{Target: "d", ETag: ds[0].ETag, Body: []byte(`{"etag":"` + ds[0].ETag + `","target":"d","models":[]}`)}
	evals := store.Desired{Target: "e", ETag: "e1", Body: []byte(`{"target":"e","etag":"e1","models":[],"evaluations":[{"id":"x"}]}`)}
	ds = append(ds, odd, evals)
	h.publish(ds)
	for _, d := range ds {
		b, ok := h.get(d.Target)
		var buf bytes.Buffer
		b.WriteTo(&buf)
		if !ok || b.ETag() != d.ETag || !bytes.Equal(buf.Bytes(), d.Body) || !bytes.Equal(b.Bytes(), d.Body) || b.Len() != len(d.Body) {
			t.Errorf("%s: got %v %q (%d bytes), want %q tagged %s", d.Target, ok, buf.Bytes(), b.Len(), d.Body, d.ETag)
		}
	}
	// A state in two parts, as compose makes them, is the same shared
	// state as its whole body.
	parts := store.Desired{Target: "f", ETag: ds[0].ETag, Head: store.HeadOf("f", ds[0].ETag), Rest: string(ds[0].Body[len(store.HeadOf("a", ds[0].ETag)):])}
	h.publish([]store.Desired{parts})
	if f, _ := h.get("f"); f.s != h.entries["a"].cur || string(f.Bytes()) != parts.Text() {
		t.Errorf("two-part state not shared or not served as is: %q", f.Bytes())
	}
	delete(h.entries, "f")
	h.release(h.entries["a"].cur)
	a, _ := h.get("a")
	c, _ := h.get("c")
	if a.s != c.s || len(h.shared) != 2 || a.s.refs != 3 {
		t.Fatalf("same state not shared: %p %p, %d shared, %d refs", a.s, c.s, len(h.shared), a.s.refs)
	}

	// Pairs are parsed once per shared state.
	parses := 0
	parse := func(b []byte) []string { parses++; return (&Server{}).desiredKeys(b) }
	for _, id := range []string{"a", "b", "c"} {
		now, prev, ok := h.keysOf(id, parse)
		if !ok || !slices.Equal(now, []string{digestKey("r", "sha256:1")}) || prev != nil {
			t.Fatalf("keysOf(%s) = %q %q %v", id, now, prev, ok)
		}
	}
	if parses != 1 {
		t.Errorf("parsed %d times, want 1", parses)
	}

	// Two new states: the first is everyone's previous one, then nobody's.
	watch := h.watch("a", a.ETag())
	next := []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:2", Artifact: "reg/m@sha256:2"}}
	last := []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:3", Artifact: "reg/m@sha256:3"}}
	for _, m := range [][]fleet.DesiredModel{next, last} {
		var up []store.Desired
		for _, id := range []string{"a", "b", "c"} {
			up = append(up, fleetstate.EncodeDesired(id, m))
		}
		h.publish(up)
	}
	select {
	case <-watch:
	default:
		t.Error("long-poll not woken")
	}
	if _, found := h.shared[a.s.key]; found || a.s.refs != 0 {
		t.Errorf("the first state is still kept: %d refs", a.s.refs)
	}
	now, prev, _ := h.keysOf("b", parse)
	if !slices.Equal(now, []string{digestKey("r", "sha256:3")}) || !slices.Equal(prev, []string{digestKey("r", "sha256:2")}) {
		t.Errorf("keysOf(b) = %q %q", now, prev)
	}
	if len(h.shared) != 3 { // next, last and e's own; d's headless body is not shared
		t.Errorf("%d shared states kept, want 3 (next, last, e's)", len(h.shared))
	}
	b, _ := h.get("b")
	if w := h.watch("b", "stale"); w != closed {
		t.Error("watch of a stale tag does not return at once")
	}
	if w := h.watch("b", b.ETag()); w == closed {
		t.Error("watch of the current tag returns at once")
	}
}

// sync caches a fleet's states read from the store a batch at a time, all
// of them, and moves the revision seen only past the last.
func TestSyncCachesInBatches(t *testing.T) {
	s, _ := newTestServer(t)
	ctx := t.Context()
	models := []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:1"}}
	var ds []store.Desired
	for i := range 1300 {
		ds = append(ds, fleetstate.EncodeDesired("t-"+strconv.Itoa(i), models))
	}
	rev, err := s.cfg.Store.PutDesired(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if b, ok := s.hub.get(d.Target); !ok || !bytes.Equal(b.Bytes(), d.Body) {
			t.Fatalf("%s: cached %v %q", d.Target, ok, b.Bytes())
		}
	}
	if got := s.hub.revision(); got != rev {
		t.Errorf("revision seen %d, want %d", got, rev)
	}
	if n := len(s.hub.shared); n != 1 {
		t.Errorf("%d shared states kept for one state desired of all, want 1", n)
	}
}
