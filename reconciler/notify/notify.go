package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
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
}

// Notifier delivers events to webhooks, in the background, dropping them
// when the queue is full rather than slowing the reconciler.
type Notifier struct {
	opts  Options
	queue chan delivery
}

type delivery struct {
	alert manifests.Alert
	evs   []fleet.Event
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
	n := &Notifier{opts: opts, queue: make(chan delivery, 256)}
	if opts.Outbox == nil {
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
	for _, a := range alerts {
		mine := subscribed(a, evs)
		if len(mine) == 0 {
			continue
		}
		select {
		case n.queue <- delivery{a, mine}:
		default:
			n.opts.Logger.Warn("alert queue full, dropping events", "alert", a.Metadata.Name, "events", len(mine))
		}
	}
}

func (n *Notifier) work() {
	for d := range n.queue {
		if err := n.deliver(context.Background(), d); err != nil {
			n.opts.Logger.Warn("deliver alert", "alert", d.alert.Metadata.Name, "err", err)
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

func (n *Notifier) deliver(ctx context.Context, d delivery) error {
	body, err := Payload(d.alert, d.evs)
	if err != nil {
		return err
	}
	return n.post(ctx, d.alert.Spec.Webhook.URL, d.alert.Spec.Webhook.SecretRef, deliveryID(d.alert.Metadata.Name, d.evs), body)
}

// post sends one delivery: signed when secretRef names a secret, with its
// stable id in X-Cairn-Delivery.
func (n *Notifier) post(ctx context.Context, url, secretRef, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Cairn-Delivery", id)
	if ref := secretRef; ref != "" {
		secret, ok := n.opts.Secrets[ref]
		if !ok {
			return fmt.Errorf("secret %q is not in the server configuration", ref)
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		req.Header.Set("X-Cairn-Signature", "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}
