package server

import (
	"bytes"
	"io"
	"sync"

	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// hub caches every target's desired state and wakes its long-polls when it
// changes.
//
// A desired state's body is its head, {"target":…,"etag":"…", which
// differs per target, then the rest, the same for every target desired the
// same models (and no evaluation runs of its own). The hub keeps the rest
// once, with the tag and the (release, digest) pairs parsed from it, and
// per target only pointers to it: the body on the wire is the head, made
// again, then the rest, byte for byte what was published.
type hub struct {
	mu      sync.Mutex
	entries map[string]*entry
	shared  map[string]*shared // by etag NUL rest
	key     []byte             // scratch for shared lookups
	hd      []byte             // scratch for heads
	// last is the shared state interned last with its tag and rest: a
	// fleet's states published or read together are mostly the same one.
	last     *shared
	lastETag string
	lastRest string
	rev      int64 // newest store revision seen
}

type entry struct {
	cur     *shared
	prev    *shared       // the desired state before cur, nil when none
	rev     int64         // store revision of the state, 0 before it was stored
	changed chan struct{} // closed when the tag changes; nil until a long-poll waits
}

// shared is one desired state's tag and body after the head, kept once for
// every target it is desired of.
type shared struct {
	key  string // etag NUL rest, its key in hub.shared
	etag string
	rest string // after the head; the whole body when headless
	// headless: the body did not start with the head hub makes, so it is
	// kept whole and for its one target only (not in hub.shared).
	headless bool
	refs     int // entries' cur and prev pointing here
	// keys are the (release, digest) pairs of the state, parsed on the
	// first status report that needs them.
	keys   []string
	keysOK bool
}

// closed is a channel that is already closed.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newHub() *hub { return &hub{entries: map[string]*entry{}, shared: map[string]*shared{}} }

// desiredBody is a target's cached desired state as it goes on the wire.
type desiredBody struct {
	target string
	s      *shared
}

// ETag is the state's entity tag, "" for none.
func (b desiredBody) ETag() string {
	if b.s == nil {
		return ""
	}
	return b.s.etag
}

func (b desiredBody) head() string {
	if b.s.headless {
		return ""
	}
	return store.HeadOf(b.target, b.s.etag)
}

// Len is the body's length in bytes.
func (b desiredBody) Len() int { return len(b.head()) + len(b.s.rest) }

// WriteTo writes the body.
func (b desiredBody) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, b.head())
	if err != nil {
		return int64(n), err
	}
	m, err := io.WriteString(w, b.s.rest)
	return int64(n + m), err
}

// Bytes returns a copy of the body.
func (b desiredBody) Bytes() []byte {
	if b.s == nil {
		return nil
	}
	return []byte(b.head() + b.s.rest)
}

// intern returns the shared form of d, counting one more reference to it.
// Called with h.mu held.
func (h *hub) intern(d store.Desired) *shared {
	h.hd = store.AppendHead(h.hd[:0], d.Target, d.ETag)
	switch {
	case d.Body == nil && d.Head == string(h.hd):
		if s := h.last; s != nil && s.refs > 0 && d.ETag == h.lastETag && d.Rest == h.lastRest {
			s.refs++
			return s
		}
		h.key = append(append(append(h.key[:0], d.ETag...), 0), d.Rest...)
	case d.Body != nil && bytes.HasPrefix(d.Body, h.hd):
		h.key = append(append(append(h.key[:0], d.ETag...), 0), d.Body[len(h.hd):]...)
	default:
		return &shared{etag: d.ETag, rest: d.Text(), headless: true, refs: 1}
	}
	if s := h.shared[string(h.key)]; s != nil {
		s.refs++
		if d.Body == nil {
			h.last, h.lastETag, h.lastRest = s, d.ETag, d.Rest
		}
		return s
	}
	k := string(h.key)
	s := &shared{key: k, etag: k[:len(d.ETag)], rest: k[len(d.ETag)+1:], refs: 1}
	h.shared[k] = s
	if d.Body == nil {
		h.last, h.lastETag, h.lastRest = s, d.ETag, d.Rest
	}
	if cap(h.key) > 64<<10 {
		h.key = nil // do not keep one huge body's scratch
	}
	return s
}

// release drops one reference to s. Called with h.mu held.
func (h *hub) release(s *shared) {
	if s == nil {
		return
	}
	if s.refs--; s.refs == 0 && !s.headless {
		delete(h.shared, s.key)
	}
}

// get returns the cached desired state of id.
func (h *hub) get(id string) (body desiredBody, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[id]
	if e == nil {
		return desiredBody{}, false
	}
	return desiredBody{id, e.cur}, true
}

// watch returns a channel closed when id's desired state is no longer the
// one tagged etag: closed already when it is not, or id has none cached.
func (h *hub) watch(id, etag string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[id]
	if e == nil || e.cur.etag != etag {
		return closed
	}
	if e.changed == nil {
		e.changed = make(chan struct{})
	}
	return e.changed
}

// keysOf returns the (release, digest) pairs of id's cached desired state
// and of the one before it, parsing each state once; ok is false when id has
// none cached.
func (h *hub) keysOf(id string, parse func([]byte) []string) (now, prev []string, ok bool) {
	h.mu.Lock()
	e := h.entries[id]
	if e == nil {
		h.mu.Unlock()
		return nil, nil, false
	}
	cur, before := e.cur, e.prev
	var curOK, prevOK bool
	now, curOK = cur.keys, cur.keysOK
	prevOK = true
	if before != nil {
		prev, prevOK = before.keys, before.keysOK
	}
	h.mu.Unlock()
	if !curOK {
		now = parse(desiredBody{id, cur}.Bytes())
	}
	if !prevOK {
		prev = parse(desiredBody{id, before}.Bytes())
	}
	if !curOK || !prevOK {
		// Each state is parsed from its own bytes, the same for every
		// target it is shared by (its head names none of its pairs).
		h.mu.Lock()
		if !curOK {
			cur.keys, cur.keysOK = now, true
		}
		if !prevOK {
			before.keys, before.keysOK = prev, true
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
		h.entries[id] = &entry{cur: h.intern(fleetstate.EncodeDesired(id, nil))}
	}
}

// publish caches ds, waking the long-polls of targets whose tag changed,
// and counts their revisions seen.
func (h *hub) publish(ds []store.Desired) {
	h.cache(ds)
	var newest int64
	for _, d := range ds {
		newest = max(newest, d.Rev)
	}
	h.seen(newest)
}

// seen records that every state up to revision rev was cached.
func (h *hub) seen(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev = max(h.rev, rev)
}

// cache caches ds, waking the long-polls of targets whose tag changed.
func (h *hub) cache(ds []store.Desired) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range ds {
		e := h.entries[d.Target]
		if e == nil {
			h.entries[d.Target] = &entry{cur: h.intern(d), rev: d.Rev}
			continue
		}
		if d.Rev != 0 && d.Rev < e.rev {
			continue // older than what is cached: a late or replayed publish
		}
		e.rev = max(e.rev, d.Rev)
		if e.cur.etag == d.ETag {
			continue
		}
		h.release(e.prev)
		e.prev, e.cur = e.cur, h.intern(d)
		if e.changed != nil {
			close(e.changed)
			e.changed = nil
		}
	}
}

func (h *hub) revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}
