package reconciler

import (
	"context"
	"log/slog"
	"time"

	"github.com/cairn-dev/cairn/reconciler/notify"
)

// notifier sends events to the Alerts of the admitted commit through the
// outbox in the state database (delivered by the leader, see Serve).
func notifier(cfg Config, log *slog.Logger, outbox *notify.Outbox) *notify.Notifier {
	if cfg.AlertBackoff > 0 {
		outbox.MinBackoff = time.Duration(cfg.AlertBackoff)
		outbox.MaxBackoff = max(outbox.MaxBackoff, outbox.MinBackoff)
	}
	if cfg.AlertMaxAge > 0 {
		outbox.MaxAge = time.Duration(cfg.AlertMaxAge)
	}
	return notify.New(notify.Options{Secrets: cfg.Secrets, Logger: log, Outbox: outbox, Statuses: cfg.CommitStatuses})
}

// Leading reports whether this replica leads the reconcile loop now.
func (r *Reconciler) Leading() bool {
	_, ok := r.leadCtx(context.Background())
	return ok
}
