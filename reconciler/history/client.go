package history

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client reads the history through a cairn server's API.
type Client struct {
	base, token string
	http        *http.Client
}

// NewClient returns a client of the server at baseURL sending token (admin or
// read-only) as a bearer token.
func NewClient(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Timeout: time.Minute}}
}

// Uptime asks for GET /api/v1/uptime over window ("30d", "24h"), of one
// target or (target "") of every target and the fleet.
func (c *Client) Uptime(ctx context.Context, window, target string) (*UptimeReport, error) {
	q := url.Values{"window": {window}}
	if target != "" {
		q.Set("target", target)
	}
	var out UptimeReport
	return &out, c.get(ctx, PathUptime, q, &out)
}

// Metrics asks for a target's series; from, to and step as the API takes them.
func (c *Client) Metrics(ctx context.Context, target, from, to, step string) (*Metrics, error) {
	q := url.Values{}
	for k, v := range map[string]string{"from": from, "to": to, "step": step} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out Metrics
	return &out, c.get(ctx, strings.Replace(PathMetrics, "{id}", url.PathEscape(target), 1), q, &out)
}

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("history request %s: %w", path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb struct{ Error string }
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		return fmt.Errorf("get %s: %s: %s", path, resp.Status, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s reply: %w", path, err)
	}
	return nil
}
