package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// maxStatusBatch bounds the reports written in one transaction.
const maxStatusBatch = 512

// statusBatcher writes status reports in group commits: a report waits for
// the transaction that writes it, and while one transaction commits, the
// reports that arrive meanwhile gather into the next. A lone report is
// written at once (no linger); under load one commit serves hundreds. A
// caller returns only once its report is committed, so a report the server
// acknowledged survives a crash.
type statusBatcher struct {
	s       *SQL
	mu      sync.Mutex
	queue   []*statusWrite
	running bool
}

type statusWrite struct {
	ctx    context.Context
	id     string
	report fleet.StatusReport
	at     time.Time
	done   chan error
}

func (b *statusBatcher) init(s *SQL) { b.s = s }

// PutStatus records a status report received at: last seen, the report,
// the facts it carries and its deploy log entries. Concurrent calls share
// transactions (see statusBatcher).
func (s *SQL) PutStatus(ctx context.Context, id string, r fleet.StatusReport, at time.Time) error {
	w := &statusWrite{ctx: ctx, id: id, report: r, at: at, done: make(chan error, 1)}
	s.statuses.mu.Lock()
	s.statuses.queue = append(s.statuses.queue, w)
	if !s.statuses.running {
		s.statuses.running = true
		go s.statuses.run()
	}
	s.statuses.mu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// The report may still be written; the agent reports again anyway.
		return fmt.Errorf("record status of %s: %w", id, ctx.Err())
	}
}

// run writes batches until the queue is empty.
func (b *statusBatcher) run() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxStatusBatch)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = append([]*statusWrite(nil), b.queue[n:]...)
		b.mu.Unlock()
		b.write(batch)
	}
}

// write commits batch in one transaction. A report of a target that is not
// enrolled fails alone; any other error fails the batch, and then each
// report is retried in a transaction of its own so that one bad report does
// not fail the others.
func (b *statusBatcher) write(batch []*statusWrite) {
	live := batch[:0:0]
	for _, w := range batch {
		if w.ctx.Err() != nil {
			w.done <- fmt.Errorf("record status of %s: %w", w.id, w.ctx.Err())
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	errs, err := b.commit(live)
	if err != nil && len(live) > 1 {
		for _, w := range live {
			one, err := b.commit([]*statusWrite{w})
			if err != nil {
				w.done <- err
			} else {
				w.done <- one[0]
			}
		}
		return
	}
	for i, w := range live {
		if err != nil {
			w.done <- err
		} else {
			w.done <- errs[i]
		}
	}
}

// commit writes batch in one transaction and returns each report's own
// outcome (nil, or ErrNotFound for a target that is not enrolled), or the
// error that failed the transaction.
func (b *statusBatcher) commit(batch []*statusWrite) ([]error, error) {
	ctx := context.WithoutCancel(batch[0].ctx)
	tx, err := b.s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("record status of %d targets: %w", len(batch), err)
	}
	defer tx.Rollback()
	errs := make([]error, len(batch))
	for i, w := range batch {
		err := b.s.putStatus(ctx, tx, w.id, w.report, w.at)
		switch {
		case errors.Is(err, ErrNotFound):
			errs[i] = err
		case err != nil:
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("record status of %d targets: %w", len(batch), err)
	}
	return errs, nil
}
