package openlineage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// JSONLines returns an emit function writing each event as one JSON line.
func JSONLines(w io.Writer) func(RunEvent) error {
	enc := json.NewEncoder(w)
	return func(ev RunEvent) error { return enc.Encode(ev) }
}

// Poster posts RunEvents to an OpenLineage HTTP endpoint (Marquez:
// POST {URL}/api/v1/lineage), retrying network errors, 429 and 5xx with
// exponential backoff.
type Poster struct {
	// URL is the endpoint's base, e.g. http://marquez:5000.
	URL string
	// Token, when set, is sent as a bearer token.
	Token string
	// Attempts per event; 5 when zero.
	Attempts int
	// Backoff before the first retry, doubled each time; 200ms when zero.
	Backoff time.Duration
	// Client is http.DefaultClient when nil.
	Client *http.Client
}

// Post sends one event.
func (p *Poster) Post(ctx context.Context, ev RunEvent) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode run event %s: %w", ev.Run.RunID, err)
	}
	attempts, backoff, client := p.Attempts, p.Backoff, p.Client
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	if client == nil {
		client = http.DefaultClient
	}
	u := strings.TrimRight(p.URL, "/") + "/api/v1/lineage"
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("post run event %s to %s: %w (last: %v)", ev.Run.RunID, u, ctx.Err(), last)
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("post run event to %s: %w", u, err)
		}
		req.Header.Set("Content-Type", "application/json")
		if p.Token != "" {
			req.Header.Set("Authorization", "Bearer "+p.Token)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			last = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
		default:
			return fmt.Errorf("post run event %s to %s: %s: %s", ev.Run.RunID, u, resp.Status, strings.TrimSpace(string(msg)))
		}
	}
	return fmt.Errorf("post run event %s to %s: gave up after %d attempts: %v", ev.Run.RunID, u, attempts, last)
}
