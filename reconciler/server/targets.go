package server

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// fleetTarget is what the server keeps in memory of one target, in one
// map entry: at 100,000 targets, the two maps of credentials, two of
// limiters and one of reported pairs it replaces cost about 300 bytes a
// target, and each kept its own copy of the target's name.
type fleetTarget struct {
	// id is the key of Server.known. Handlers pass this copy on to what
	// keeps a target's name (the reconciler's inbox, the metric history):
	// a request's id is a substring of its request line, which it would
	// keep alive.
	id string
	// hash is the SHA-256 of the target's credential when cred: accepted
	// with a credential, checked without reading the store.
	hash [sha256.Size]byte
	cred bool
	// reported are the (release, digest) pairs of the last report this
	// server stored for the target.
	reported []string
	// status and poll limit the target's status reports and desired-state
	// polls.
	status, poll bucket
}

// bucket is a token bucket, as rate.Limiter's Allow, in 16 bytes instead of
// a limiter's 80 and a pointer: tokens held and when they were last
// counted (nanoseconds on the server's clock; 0 before the first take,
// when the bucket is full).
type bucket struct {
	tokens float64
	at     int64
}

// take takes a token when one is left at now, refilling at r a second up
// to burst.
func (b *bucket) take(now int64, r rate.Limit, burst int) bool {
	if r == rate.Inf {
		return true
	}
	switch {
	case b.at == 0:
		b.tokens = float64(burst)
	case now > b.at:
		b.tokens = min(float64(burst), b.tokens+float64(r)*float64(now-b.at)/float64(time.Second))
	}
	b.at = max(b.at, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clock is nanoseconds since the server was made, never 0 (bucket.at).
func (s *Server) clock() int64 { return max(1, int64(time.Since(s.epoch))) }

// targetOf returns id's entry, made when there is none; s.mu is held.
func (s *Server) targetOf(id string) *fleetTarget {
	t := s.known[id]
	if t == nil {
		t = &fleetTarget{id: strings.Clone(id)}
		s.known[t.id] = t
	}
	return t
}

// parseHash reads a credential hash as the store keeps it (HashCredential).
func parseHash(h string) ([sha256.Size]byte, bool) {
	var out [sha256.Size]byte
	if len(h) != hex.EncodedLen(sha256.Size) {
		return out, false
	}
	_, err := hex.Decode(out[:], []byte(h))
	return out, err == nil
}

// remember caches that target id is accepted with the credential whose
// hash (HashCredential) is hash.
func (s *Server) remember(id, hash string) {
	h, ok := parseHash(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targetOf(id)
	if t.cred {
		delete(s.byHash, t.hash)
	}
	t.hash, t.cred = h, ok
	if ok {
		s.byHash[h] = t
	}
}

// forget drops the credential and the last report the server keeps of
// target id (rejected, deleted, or no longer accepted with the credential
// cached). The token buckets stay: forgetting must not refill them.
func (s *Server) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.known[id]; t != nil {
		if t.cred {
			delete(s.byHash, t.hash)
		}
		t.hash, t.cred, t.reported = [sha256.Size]byte{}, false, nil
	}
}

// allowStatus takes one of target id's status report tokens; it returns
// the server's copy of id to pass on (fleetTarget.id).
func (s *Server) allowStatus(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targetOf(id)
	return t.id, t.status.take(s.clock(), s.cfg.StatusRate, s.cfg.StatusBurst)
}

// allowPoll takes one of target id's desired-state poll tokens.
func (s *Server) allowPoll(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targetOf(id).poll.take(s.clock(), s.cfg.PollRate, s.cfg.PollBurst)
}

// lastReported remembers the pairs of the last report this server stored
// for id; a report stored by another replica is read from the store.
func (s *Server) lastReported(id string, keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if keys == nil {
		keys = []string{}
	}
	s.targetOf(id).reported = keys
}

func (s *Server) reportedOf(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.known[id]; t != nil {
		return t.reported
	}
	return nil
}
