package notify

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/manifests"
)

// Outbox keeps alert deliveries in the state database until a webhook
// accepts them: each has a stable id (sent as X-Cairn-Delivery, so a
// receiver drops a repeat), is retried with exponential backoff and given
// up after MaxAge.
type Outbox struct {
	db *sqldb.DB
	// MinBackoff and MaxBackoff bound the wait between attempts (5s, 1h);
	// MaxAge is how long a delivery is retried (24h).
	MinBackoff, MaxBackoff, MaxAge time.Duration
	now                            func() time.Time
	// statuses are the commit status providers (set by New).
	statuses []StatusProvider
}

// Delivery states.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateFailed    = "failed"
	// StateSuperseded is a commit status replaced, before it was
	// delivered, by a later one of the same commit and context.
	StateSuperseded = "superseded"
)

// delivery is one stored alert delivery being attempted.
type Delivery struct {
	ID, Alert, URL string
	Attempts       int
	Events         int
	Created        time.Time

	msg message
}

// OpenOutbox migrates the outbox table into db.
func OpenOutbox(ctx context.Context, db *sqldb.DB) (*Outbox, error) {
	err := db.Migrate(ctx, "notify", []sqldb.Migration{
		{SQLite: `CREATE TABLE alert_outbox (id TEXT PRIMARY KEY, alert TEXT NOT NULL, url TEXT NOT NULL, secret_ref TEXT NOT NULL, body TEXT NOT NULL, events INTEGER NOT NULL,
			state TEXT NOT NULL, attempts INTEGER NOT NULL, created BIGINT NOT NULL, next_at BIGINT NOT NULL, last_error TEXT NOT NULL)`},
		{SQLite: `CREATE INDEX alert_outbox_due ON alert_outbox (state, next_at)`},
		{SQLite: `ALTER TABLE alert_outbox ADD COLUMN provider TEXT NOT NULL DEFAULT ''`},
		{SQLite: `ALTER TABLE alert_outbox ADD COLUMN status_key TEXT NOT NULL DEFAULT ''`},
		{SQLite: `CREATE INDEX alert_outbox_status ON alert_outbox (status_key, state)`},
	})
	if err != nil {
		return nil, fmt.Errorf("open alert outbox: %w", err)
	}
	return &Outbox{db: db, MinBackoff: 5 * time.Second, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour, now: time.Now}, nil
}

// deliveryID is stable for one alert and one batch of recorded events, so
// enqueueing the same batch again (a retried step) adds nothing.
func deliveryID(alert string, evs []fleet.Event) string {
	h := sha256.New()
	h.Write([]byte(alert))
	for _, e := range evs {
		if e.ID != 0 {
			h.Write([]byte("\x00" + strconv.FormatInt(e.ID, 10)))
		} else {
			h.Write([]byte("\x00" + e.Type + "\x00" + e.Release + "\x00" + e.Commit + "\x00" + e.Message + "\x00" + e.Time.UTC().Format(time.RFC3339Nano)))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Enqueue stores one delivery per alert subscribed to some of evs and one
// per commit status provider and event with a commit state. A commit status
// supersedes the pending ones of the same commit and context.
func (o *Outbox) Enqueue(ctx context.Context, alerts []manifests.Alert, evs []fleet.Event) error {
	ms, err := messages(alerts, o.statuses, evs)
	if err != nil {
		return fmt.Errorf("queue alerts: %w", err)
	}
	now := o.now().UnixNano()
	for _, m := range ms {
		res, err := o.db.ExecContext(ctx, o.db.Rebind(`INSERT INTO alert_outbox (id, alert, url, secret_ref, provider, status_key, body, events, state, attempts, created, next_at, last_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, '') ON CONFLICT (id) DO NOTHING`),
			m.id, m.alert, m.url, m.secretRef, m.provider, m.statusKey, string(m.body), m.events, StatePending, now, now)
		if err != nil {
			return fmt.Errorf("queue alert %s: %w", m.alert, err)
		}
		if n, _ := res.RowsAffected(); n == 0 || m.statusKey == "" {
			continue // already queued (a retried step), or no status to supersede
		}
		if _, err := o.db.ExecContext(ctx, o.db.Rebind(`UPDATE alert_outbox SET state = ?, last_error = ? WHERE status_key = ? AND state = ? AND id <> ?`),
			StateSuperseded, "superseded by delivery "+m.id, m.statusKey, StatePending, m.id); err != nil {
			return fmt.Errorf("queue alert %s: %w", m.alert, err)
		}
	}
	return nil
}

// claim takes a due delivery for lease: its next attempt moves past the
// lease, so another deliverer does not take it meanwhile.
func (o *Outbox) claim(ctx context.Context, lease time.Duration) (*Delivery, error) {
	now := o.now().UnixNano()
	var d Delivery
	var created, next int64
	var body string
	err := o.db.QueryRowContext(ctx, o.db.Rebind(`SELECT id, alert, url, secret_ref, provider, body, events, attempts, created, next_at FROM alert_outbox WHERE state = ? AND next_at <= ? ORDER BY next_at LIMIT 1`),
		StatePending, now).Scan(&d.ID, &d.Alert, &d.URL, &d.msg.secretRef, &d.msg.provider, &body, &d.Events, &d.Attempts, &created, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read alert outbox: %w", err)
	}
	res, err := o.db.ExecContext(ctx, o.db.Rebind(`UPDATE alert_outbox SET next_at = ? WHERE id = ? AND state = ? AND next_at = ?`), now+lease.Nanoseconds(), d.ID, StatePending, next)
	if err != nil {
		return nil, fmt.Errorf("claim alert delivery: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, nil // taken by another deliverer
	}
	d.msg.id, d.msg.alert, d.msg.url, d.msg.body, d.msg.events = d.ID, d.Alert, d.URL, []byte(body), d.Events
	d.Created = time.Unix(0, created).UTC()
	return &d, nil
}

// done records the outcome of an attempt.
func (o *Outbox) done(ctx context.Context, d *Delivery, cause error) error {
	now := o.now()
	attempts := d.Attempts + 1
	if cause == nil {
		_, err := o.db.ExecContext(ctx, o.db.Rebind(`UPDATE alert_outbox SET state = ?, attempts = ?, last_error = '' WHERE id = ?`), StateDelivered, attempts, d.ID)
		return err
	}
	msg := cause.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	if now.Sub(d.Created) >= o.MaxAge {
		_, err := o.db.ExecContext(ctx, o.db.Rebind(`UPDATE alert_outbox SET state = ?, attempts = ?, last_error = ? WHERE id = ? AND state = ?`), StateFailed, attempts, msg, d.ID, StatePending)
		return err
	}
	wait := o.MinBackoff << min(attempts-1, 30)
	if wait > o.MaxBackoff || wait <= 0 {
		wait = o.MaxBackoff
	}
	wait = wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
	_, err := o.db.ExecContext(ctx, o.db.Rebind(`UPDATE alert_outbox SET attempts = ?, last_error = ?, next_at = ? WHERE id = ?`), attempts, msg, now.Add(wait).UnixNano(), d.ID)
	return err
}

// List returns the deliveries in the given states (all when none), newest first.
func (o *Outbox) List(ctx context.Context, states ...string) ([]fleet.AlertDelivery, error) {
	q := `SELECT id, alert, url, state, attempts, created, next_at, last_error, events FROM alert_outbox`
	var args []any
	if len(states) > 0 {
		q += ` WHERE state IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(states)), ", ") + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	rows, err := o.db.QueryContext(ctx, o.db.Rebind(q+` ORDER BY created DESC LIMIT 500`), args...)
	if err != nil {
		return nil, fmt.Errorf("list alert deliveries: %w", err)
	}
	defer rows.Close()
	var out []fleet.AlertDelivery
	for rows.Next() {
		var d fleet.AlertDelivery
		var created, next int64
		if err := rows.Scan(&d.ID, &d.Alert, &d.URL, &d.State, &d.Attempts, &created, &next, &d.LastError, &d.Events); err != nil {
			return nil, fmt.Errorf("list alert deliveries: %w", err)
		}
		d.Created = time.Unix(0, created).UTC()
		if d.State == StatePending {
			d.NextAt = time.Unix(0, next).UTC()
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Run delivers due deliveries every tick while lead reports this replica
// leads, until ctx ends.
func (n *Notifier) Run(ctx context.Context, lead func() bool) {
	o := n.opts.Outbox
	if o == nil {
		return
	}
	t := time.NewTicker(n.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for lead == nil || lead() {
			d, err := o.claim(ctx, 2*n.opts.Client.Timeout)
			if err != nil {
				n.opts.Logger.Warn("alert outbox", "err", err)
				break
			}
			if d == nil {
				break
			}
			derr := n.post(ctx, d.msg)
			if ctx.Err() != nil {
				return
			}
			if derr != nil {
				n.opts.Logger.Warn("deliver alert", "alert", d.Alert, "delivery", d.ID, "attempt", d.Attempts+1, "err", derr)
			}
			if err := o.done(ctx, d, derr); err != nil {
				n.opts.Logger.Warn("alert outbox", "err", err)
				break
			}
		}
	}
}
