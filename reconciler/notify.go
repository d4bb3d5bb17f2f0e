package reconciler

import (
	"log/slog"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/notify"
)

// notifier sends events to the Alerts of the admitted commit.
func notifier(cfg Config, log *slog.Logger) func([]manifests.Alert, []fleet.Event) {
	n := notify.New(notify.Options{Secrets: cfg.Secrets, Logger: log})
	return n.Send
}
