package lineage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/lineage/openlineage"
)

// Querier answers lineage questions: *Graph from the database, *Client from
// a server.
type Querier interface {
	Upstream(ctx context.Context, node string, depth int) (*Subgraph, error)
	Downstream(ctx context.Context, node string, depth int) (*Subgraph, error)
	At(ctx context.Context, target string, t time.Time) ([]Active, error)
	Where(ctx context.Context, node string, t *time.Time) ([]Active, error)
	Steps(ctx context.Context, after int64, limit int) ([]Step, error)
}

var (
	_ Querier = (*Graph)(nil)
	_ Querier = (*Client)(nil)
)

// API paths, under the server's root.
const (
	PathPrefix = "/api/v1/lineage/"
	PathRecord = "/api/v1/lineage/record"
)

// RecordRequest is the body of POST /api/v1/lineage/record: one step's
// facts (exactly one of the fields), or raw edges.
type RecordRequest struct {
	Push       *PushFacts       `json:"push,omitempty"`
	Admission  *AdmissionFacts  `json:"admission,omitempty"`
	Deployment *DeploymentFacts `json:"deployment,omitempty"`
	Rollback   *RollbackFacts   `json:"rollback,omitempty"`
	Edges      []Edge           `json:"edges,omitempty"`
}

// Apply records the request into r.
func (req RecordRequest) Apply(ctx context.Context, g *Graph) error {
	n := 0
	for _, set := range []bool{req.Push != nil, req.Admission != nil, req.Deployment != nil, req.Rollback != nil, len(req.Edges) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: record request: want exactly one of push, admission, deployment, rollback or edges", ErrInvalid)
	}
	switch {
	case req.Push != nil:
		return g.RecordPush(ctx, *req.Push)
	case req.Admission != nil:
		return g.RecordAdmission(ctx, *req.Admission)
	case req.Deployment != nil:
		return g.RecordDeployment(ctx, *req.Deployment)
	case req.Rollback != nil:
		return g.RecordRollback(ctx, *req.Rollback)
	default:
		return g.Record(ctx, req.Edges...)
	}
}

// NewHandler serves the read-only lineage API under /api/v1/lineage/:
// GET upstream?node=N&depth=D, downstream?node=N&depth=D,
// at?target=T&time=RFC3339, where?node=N[&time=RFC3339],
// events?after=SEQ&limit=L (recorded steps, JSON) and export (every step as
// an OpenLineage RunEvent, JSON lines). Mount it behind read-only tokens.
func NewHandler(g *Graph) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathPrefix+"upstream", func(w http.ResponseWriter, r *http.Request) {
		depth, err := intParam(r, "depth")
		if err != nil {
			writeError(w, err)
			return
		}
		sg, err := g.Upstream(r.Context(), r.URL.Query().Get("node"), depth)
		reply(w, sg, err)
	})
	mux.HandleFunc("GET "+PathPrefix+"downstream", func(w http.ResponseWriter, r *http.Request) {
		depth, err := intParam(r, "depth")
		if err != nil {
			writeError(w, err)
			return
		}
		sg, err := g.Downstream(r.Context(), r.URL.Query().Get("node"), depth)
		reply(w, sg, err)
	})
	mux.HandleFunc("GET "+PathPrefix+"at", func(w http.ResponseWriter, r *http.Request) {
		t, err := timeParam(r, "time")
		if err != nil {
			writeError(w, err)
			return
		}
		target := r.URL.Query().Get("target")
		if target == "" {
			writeError(w, fmt.Errorf("%w: at: target is required", ErrInvalid))
			return
		}
		when := time.Now()
		if t != nil {
			when = *t
		}
		a, err := g.At(r.Context(), target, when)
		reply(w, nonNil(a), err)
	})
	mux.HandleFunc("GET "+PathPrefix+"where", func(w http.ResponseWriter, r *http.Request) {
		t, err := timeParam(r, "time")
		if err != nil {
			writeError(w, err)
			return
		}
		node := r.URL.Query().Get("node")
		if node == "" {
			writeError(w, fmt.Errorf("%w: where: node is required", ErrInvalid))
			return
		}
		a, err := g.Where(r.Context(), node, t)
		reply(w, nonNil(a), err)
	})
	mux.HandleFunc("GET "+PathPrefix+"events", func(w http.ResponseWriter, r *http.Request) {
		after, err := intParam(r, "after")
		if err != nil {
			writeError(w, err)
			return
		}
		limit, err := intParam(r, "limit")
		if err != nil {
			writeError(w, err)
			return
		}
		steps, err := g.Steps(r.Context(), int64(after), limit)
		reply(w, nonNil(steps), err)
	})
	mux.HandleFunc("GET "+PathPrefix+"export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		// Headers are sent with the first event; a later error ends the stream.
		_ = Export(r.Context(), g, func(ev openlineage.RunEvent) error { return enc.Encode(ev) })
	})
	return mux
}

// NewRecordHandler serves POST /api/v1/lineage/record with a RecordRequest
// body (204 on success). Mount it behind admin tokens.
func NewRecordHandler(g *Graph) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var req RecordRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, fmt.Errorf("%w: decode record request: %v", ErrInvalid, err))
			return
		}
		if err := req.Apply(r.Context(), g); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func intParam(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s=%q: want a non-negative integer", ErrInvalid, name, v)
	}
	return n, nil
}

func timeParam(r *http.Request, name string) (*time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s=%q: want RFC 3339", ErrInvalid, name, v)
	}
	return &t, nil
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrInvalid) {
		code = http.StatusBadRequest
	} else if errors.Is(err, ErrNotFound) {
		code = http.StatusNotFound
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(errorBody{Error: err.Error()})
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Client queries and records lineage through a cairn server's API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the server at baseURL (e.g.
// http://127.0.0.1:7480) sending token as a bearer token when not empty.
func NewClient(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Timeout: 60 * time.Second}}
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request to %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("lineage request %s: %w", u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("lineage %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb errorBody
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		err := fmt.Errorf("lineage %s %s: %s: %s", method, path, resp.Status, msg)
		switch resp.StatusCode {
		case http.StatusBadRequest:
			err = fmt.Errorf("%w: %v", ErrInvalid, err)
		case http.StatusNotFound:
			if eb.Error != "" { // the API's answer, not a missing route
				err = fmt.Errorf("%w: %v", ErrNotFound, err)
			}
		}
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode lineage %s reply: %w", path, err)
	}
	return nil
}

// Upstream asks the server for Graph.Upstream.
func (c *Client) Upstream(ctx context.Context, node string, depth int) (*Subgraph, error) {
	var sg Subgraph
	err := c.do(ctx, http.MethodGet, PathPrefix+"upstream", url.Values{"node": {node}, "depth": {strconv.Itoa(depth)}}, nil, &sg)
	return &sg, err
}

// Downstream asks the server for Graph.Downstream.
func (c *Client) Downstream(ctx context.Context, node string, depth int) (*Subgraph, error) {
	var sg Subgraph
	err := c.do(ctx, http.MethodGet, PathPrefix+"downstream", url.Values{"node": {node}, "depth": {strconv.Itoa(depth)}}, nil, &sg)
	return &sg, err
}

// At asks the server for Graph.At.
func (c *Client) At(ctx context.Context, target string, t time.Time) ([]Active, error) {
	var a []Active
	err := c.do(ctx, http.MethodGet, PathPrefix+"at", url.Values{"target": {target}, "time": {t.Format(time.RFC3339Nano)}}, nil, &a)
	return a, err
}

// Where asks the server for Graph.Where.
func (c *Client) Where(ctx context.Context, node string, t *time.Time) ([]Active, error) {
	q := url.Values{"node": {node}}
	if t != nil {
		q.Set("time", t.Format(time.RFC3339Nano))
	}
	var a []Active
	err := c.do(ctx, http.MethodGet, PathPrefix+"where", q, nil, &a)
	return a, err
}

// Steps asks the server for Graph.Steps.
func (c *Client) Steps(ctx context.Context, after int64, limit int) ([]Step, error) {
	var s []Step
	err := c.do(ctx, http.MethodGet, PathPrefix+"events", url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}, nil, &s)
	return s, err
}

// Record posts a record request (admin token).
func (c *Client) Record(ctx context.Context, req RecordRequest) error {
	return c.do(ctx, http.MethodPost, PathRecord, nil, req, nil)
}

// RecordPush posts push facts to the server.
func (c *Client) RecordPush(ctx context.Context, f PushFacts) error {
	return c.Record(ctx, RecordRequest{Push: &f})
}

// RecordAdmission posts admission facts to the server.
func (c *Client) RecordAdmission(ctx context.Context, f AdmissionFacts) error {
	return c.Record(ctx, RecordRequest{Admission: &f})
}

// RecordDeployment posts deployment facts to the server.
func (c *Client) RecordDeployment(ctx context.Context, f DeploymentFacts) error {
	return c.Record(ctx, RecordRequest{Deployment: &f})
}

// RecordRollback posts rollback facts to the server.
func (c *Client) RecordRollback(ctx context.Context, f RollbackFacts) error {
	return c.Record(ctx, RecordRequest{Rollback: &f})
}
