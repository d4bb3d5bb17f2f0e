package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// Options configure a Notifier.
type Options struct {
	// Secrets are the server's named secrets that Alerts' secretRef name.
	Secrets map[string]string
	Logger  *slog.Logger
	Client  *http.Client
	// Outbox, when set, makes deliveries durable: Send stores them and Run
	// delivers them (the leader only), every Tick (1s).
	Outbox *Outbox
	Tick   time.Duration
	// Statuses post each rollout's outcome as a commit status (GitHub,
	// GitLab), through the outbox like the Alerts' webhooks.
	Statuses []StatusProvider
}

// Notifier delivers events to webhooks, in the background, dropping them
// when the queue is full rather than slowing the reconciler.
type Notifier struct {
	opts  Options
	queue chan message
}

// message is one delivery: an Alert's batch of events to its webhook, or
// one event as a commit status to a provider.
type message struct {
	id, alert, url string
	secretRef      string // signs the body (webhooks)
	provider       string // authorizes the request (commit statuses)
	body           []byte
	events         int
	statusKey      string // commit statuses: provider, commit and context
}

// messages are the deliveries of evs: one per alert subscribed to some of
// them, one per commit status provider and event with a commit state.
func messages(alerts []manifests.Alert, statuses []StatusProvider, evs []fleet.Event) ([]message, error) {
	var out []message
	for _, a := range alerts {
		mine := subscribed(a, evs)
		if len(mine) == 0 {
			continue
		}
		body, err := Payload(a, mine)
		if err != nil {
			return nil, fmt.Errorf("alert %s: %w", a.Metadata.Name, err)
		}
		out = append(out, message{id: deliveryID(a.Metadata.Name, mine), alert: a.Metadata.Name, url: a.Spec.Webhook.URL,
			secretRef: a.Spec.Webhook.SecretRef, body: body, events: len(mine)})
	}
	for _, p := range statuses {
		for _, e := range evs {
			if m, ok := statusMessage(p, e); ok {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// New starts a notifier with one delivery worker.
func New(opts Options) *Notifier {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	n := &Notifier{opts: opts, queue: make(chan message, 256)}
	if opts.Outbox != nil {
		opts.Outbox.statuses = opts.Statuses
	} else {
		go n.work()
	}
	return n
}

// subscribed returns the events of evs alert a subscribes to.
func subscribed(a manifests.Alert, evs []fleet.Event) []fleet.Event {
	var mine []fleet.Event
	for _, e := range evs {
		if slices.Contains(a.Spec.Events, e.Type) {
			mine = append(mine, e)
		}
	}
	return mine
}

// Send queues the events each alert subscribes to: in the outbox when
// there is one, else in memory (dropped when the queue is full).
func (n *Notifier) Send(alerts []manifests.Alert, evs []fleet.Event) {
	if o := n.opts.Outbox; o != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := o.Enqueue(ctx, alerts, evs); err != nil {
			n.opts.Logger.Warn("queue alerts", "err", err)
		}
		return
	}
	ms, err := messages(alerts, n.opts.Statuses, evs)
	if err != nil {
		n.opts.Logger.Warn("queue alerts", "err", err)
		return
	}
	for _, m := range ms {
		select {
		case n.queue <- m:
		default:
			n.opts.Logger.Warn("alert queue full, dropping events", "alert", m.alert, "events", m.events)
		}
	}
}

func (n *Notifier) work() {
	for m := range n.queue {
		if err := n.post(context.Background(), m); err != nil {
			n.opts.Logger.Warn("deliver alert", "alert", m.alert, "err", err)
		}
	}
}

// Body is the generic JSON payload of an alert.
type Body struct {
	Alert  string        `json:"alert"`
	Events []fleet.Event `json:"events"`
}

// Payload encodes events for an alert's webhook format.
func Payload(a manifests.Alert, evs []fleet.Event) ([]byte, error) {
	if a.Spec.Webhook.Format == "slack" {
		var text bytes.Buffer
		for _, e := range evs {
			fmt.Fprintf(&text, "*%s* %s %s: %s\n", e.Type, e.Release, e.Target, e.Message)
		}
		return json.Marshal(map[string]string{"text": text.String()})
	}
	return json.Marshal(Body{Alert: a.Metadata.Name, Events: evs})
}

// post sends one delivery with its stable id in X-Cairn-Delivery: signed
// when its secretRef names a secret, authorized with the provider's token
// when it is a commit status.
func (n *Notifier) post(ctx context.Context, m message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url, bytes.NewReader(m.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Cairn-Delivery", m.id)
	if ref := m.secretRef; ref != "" {
		secret, ok := n.opts.Secrets[ref]
		if !ok {
			return fmt.Errorf("secret %q is not in the server configuration", ref)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(m.body)
		req.Header.Set("X-Cairn-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	var provider *StatusProvider
	if m.provider != "" {
		for i := range n.opts.Statuses {
			if n.opts.Statuses[i].Name == m.provider {
				provider = &n.opts.Statuses[i]
			}
		}
		if provider == nil {
			return fmt.Errorf("commit status provider %q is not in the server configuration", m.provider)
		}
		if err := provider.authorize(req); err != nil {
			return err
		}
	}
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 || (provider != nil && provider.alreadySet(resp.StatusCode, string(answer))) {
		return nil
	}
	if provider != nil {
		msg := strings.TrimSpace(string(answer))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return fmt.Errorf("%s answered %d: %s", provider.Provider, resp.StatusCode, msg)
	}
	return fmt.Errorf("webhook answered %d", resp.StatusCode)
}
