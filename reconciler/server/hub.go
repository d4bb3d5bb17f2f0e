package server

import (
	"sync"

	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// hub caches every target's desired state and wakes its long-polls when it
// changes.
type hub struct {
	mu      sync.Mutex
	entries map[string]*entry
	rev     int64 // newest store revision seen
}

type entry struct {
	etag    string
	body    []byte
	prev    []byte        // the desired state before body, nil when none
	rev     int64         // store revision of the state, 0 before it was stored
	changed chan struct{} // closed when etag changes
	// keys and prevKeys are the (release, digest) pairs of body and prev,
	// parsed on the first status report that needs them.
	keys, prevKeys     []string
	keysOK, prevKeysOK bool
}

func newHub() *hub { return &hub{entries: map[string]*entry{}} }

// get returns the cached entry of id, nil when unknown.
func (h *hub) get(id string) (etag string, body []byte, changed <-chan struct{}, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[id]
	if e == nil {
		return "", nil, nil, false
	}
	return e.etag, e.body, e.changed, true
}

// bodies returns the cached desired state of id and the one before it.
func (h *hub) bodies(id string) (now, prev []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.entries[id]; e != nil {
		return e.body, e.prev
	}
	return nil, nil
}

// keysOf returns the (release, digest) pairs of id's cached desired state
// and of the one before it, parsing each body once; ok is false when id has
// none cached.
func (h *hub) keysOf(id string, parse func([]byte) []string) (now, prev []string, ok bool) {
	h.mu.Lock()
	e := h.entries[id]
	if e == nil {
		h.mu.Unlock()
		return nil, nil, false
	}
	body, prevBody, keysOK, prevOK := e.body, e.prev, e.keysOK, e.prevKeysOK
	now, prev = e.keys, e.prevKeys
	h.mu.Unlock()
	if !keysOK {
		now = parse(body)
	}
	if !prevOK {
		prev = parse(prevBody)
	}
	if !keysOK || !prevOK {
		h.mu.Lock()
		// Keep them unless a publish replaced the bodies meanwhile.
		if sameBytes(e.body, body) {
			e.keys, e.keysOK = now, true
		}
		if sameBytes(e.prev, prevBody) {
			e.prevKeys, e.prevKeysOK = prev, true
		}
		h.mu.Unlock()
	}
	return now, prev, true
}

// ensure caches the empty desired state of id unless it has one.
func (h *hub) ensure(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.entries[id] == nil {
		d := fleetstate.EncodeDesired(id, nil)
		h.entries[id] = &entry{etag: d.ETag, body: d.Body, changed: make(chan struct{})}
	}
}

// publish caches ds, waking the long-polls of targets whose tag changed.
func (h *hub) publish(ds []store.Desired) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range ds {
		if d.Rev > h.rev {
			h.rev = d.Rev
		}
		e := h.entries[d.Target]
		if e == nil {
			h.entries[d.Target] = &entry{etag: d.ETag, body: d.Body, rev: d.Rev, changed: make(chan struct{})}
			continue
		}
		if d.Rev != 0 && d.Rev < e.rev {
			continue // older than what is cached: a late or replayed publish
		}
		e.rev = max(e.rev, d.Rev)
		if e.etag == d.ETag {
			continue
		}
		old := e.changed
		e.prev, e.etag, e.body, e.changed = e.body, d.ETag, d.Body, make(chan struct{})
		e.prevKeys, e.prevKeysOK, e.keys, e.keysOK = e.keys, e.keysOK, nil, false
		close(old)
	}
}

func (h *hub) revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// sameBytes reports whether a and b are the same slice (both empty counts).
func sameBytes(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return len(a) == len(b) && &a[0] == &b[0]
}
