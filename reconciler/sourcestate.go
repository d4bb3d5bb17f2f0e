package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/cairn-dev/cairn/fleet"
)

// sourceState is the followed source as the status API shows it: the last
// fetched and admitted commits and the source's conditions. It has its own
// lock, held for no I/O, so GET /api/v1/source never waits for a fetch, an
// admission or a reconcile pass.
type sourceState struct {
	mu       sync.Mutex
	status   *Status
	fetched  string
	admitted string
}

func newSourceState() *sourceState { return &sourceState{status: &Status{}} }

// mark applies a condition change and returns the conditions to persist.
func (s *sourceState) mark(f func(st *Status, admitted string)) []fleet.Condition {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.status, s.admitted)
	return s.status.Wire()
}

func (s *sourceState) setFetched(commit string) {
	s.mu.Lock()
	s.fetched = commit
	s.mu.Unlock()
}

func (s *sourceState) setAdmitted(commit string) {
	s.mu.Lock()
	s.admitted = commit
	if s.fetched == "" {
		s.fetched = commit
	}
	s.mu.Unlock()
}

// restore sets what Load read from the store.
func (s *sourceState) restore(admitted string, cs []fleet.Condition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.admitted = admitted
	if cs != nil {
		s.status = FromWire(cs)
	}
}

func (s *sourceState) info() fleet.SourceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fleet.SourceInfo{Commit: s.fetched, Admitted: s.admitted, Conditions: s.status.Wire()}
}

// markSource changes the source's conditions and stores them (outside any
// lock the API needs).
func (r *Reconciler) markSource(ctx context.Context, f func(st *Status, admitted string)) {
	cs := r.src.mark(f)
	if r.staged != nil {
		b, _ := json.Marshal(cs)
		r.staged.meta = append(r.staged.meta, metaWrite{"source-conditions", b})
		return
	}
	if err := r.putSourceConditions(ctx, cs); err != nil {
		r.log.Warn("save source conditions", "err", err)
	}
}

// putSourceConditions stores the source's conditions.
func (r *Reconciler) putSourceConditions(ctx context.Context, cs []fleet.Condition) error {
	b, err := json.Marshal(cs)
	if err != nil {
		return fmt.Errorf("save source conditions: %w", err)
	}
	if err := r.opts.Store.PutMeta(ctx, "source-conditions", b); err != nil {
		return fmt.Errorf("save source conditions: %w", err)
	}
	return nil
}
