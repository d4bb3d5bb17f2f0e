package fleet

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

	"github.com/cairn-dev/cairn/errdef"
)

// Sentinel errors of the fleet and status APIs; an *APIError matches the
// one of its HTTP status with errors.Is.
var (
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errdef.ErrNotFound
	ErrRateLimited  = errors.New("rate limited")
	ErrBadRequest   = errors.New("bad request")
	// ErrConflict: the request does not match the target's desired state
	// (a digest or evaluation run it was not asked for).
	ErrConflict = errors.New("conflict")
	// ErrPending: the target's credential waits for an admin's acceptance
	// (`cairn target accept`); the agent keeps polling.
	ErrPending = errors.New("pending acceptance")
)

// CodePending is the ErrorBody code of a credential waiting for acceptance.
const CodePending = "pending"

// APIError is a non-2xx answer of the server.
type APIError struct {
	Op      string // what the client was doing: "enroll", "desired", ...
	Status  int
	Message string
	Code    string // ErrorBody.Code
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s: server answered %d: %s", e.Op, e.Status, msg)
}

// Is matches the sentinel of the status code.
func (e *APIError) Is(target error) bool {
	if target == ErrPending {
		return e.Code == CodePending
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return target == ErrUnauthorized
	case http.StatusForbidden:
		return target == ErrForbidden
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusTooManyRequests:
		return target == ErrRateLimited
	case http.StatusConflict:
		return target == ErrConflict
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return target == ErrBadRequest
	}
	return false
}

// ErrorBody is the JSON body of every error answer of the server.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// Option configures a Client or an AdminClient.
type Option func(*base)

// WithHTTPClient sets the HTTP client (default: a client without timeout;
// requests are bounded by their context and the long-poll wait).
func WithHTTPClient(hc *http.Client) Option { return func(b *base) { b.hc = hc } }

// WithUserAgent sets the User-Agent header (default "cairn").
func WithUserAgent(ua string) Option { return func(b *base) { b.ua = ua } }

type base struct {
	url string
	hc  *http.Client
	ua  string
}

func newBase(baseURL string, opts []Option) base {
	b := base{url: strings.TrimRight(baseURL, "/"), hc: &http.Client{}, ua: "cairn"}
	for _, o := range opts {
		o(&b)
	}
	return b
}

// do sends a request with an optional body and bearer token and returns
// the response; the caller closes its body. A body that is an io.Reader is
// sent as it is (hdr names its Content-Type), any other is sent as JSON.
// Non-2xx answers other than those listed in pass become *APIError.
func (b *base) do(ctx context.Context, op, method, path, token string, in any, hdr http.Header, pass ...int) (*http.Response, error) {
	var body io.Reader
	raw, isReader := in.(io.Reader)
	switch {
	case isReader:
		body = raw
	case in != nil:
		buf, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if in != nil && !isReader {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", b.ua)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	for _, p := range pass {
		if resp.StatusCode == p {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, readAPIError(op, resp)
}

func readAPIError(op string, resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var eb ErrorBody
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	}
	return &APIError{Op: op, Status: resp.StatusCode, Message: msg, Code: eb.Code}
}

func decode(op string, resp *http.Response, out any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}

// Client is the agent side of the fleet API: enrollment, the desired-state
// long-poll and status reports.
type Client struct{ b base }

// NewClient returns a client of the fleet API at baseURL (http://host:port).
func NewClient(baseURL string, opts ...Option) *Client {
	return &Client{b: newBase(baseURL, opts)}
}

// Enroll registers the target with the fleet's enrollment token (or a
// pre-authorised one) and returns its identity and credential, which may be
// pending an admin's acceptance. A name that already has a credential is
// re-bound only when the request proves it (Credential) or an admin accepts.
func (c *Client) Enroll(ctx context.Context, req EnrollRequest) (*EnrollResponse, error) {
	resp, err := c.b.do(ctx, "enroll", http.MethodPost, PathEnroll, "", req, nil)
	if err != nil {
		return nil, err
	}
	var out EnrollResponse
	if err := decode("enroll", resp, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func targetPath(p, id string) string {
	return strings.Replace(p, "{id}", url.PathEscape(id), 1)
}

// Desired long-polls the desired state of target id. With etag set, the
// server holds the request while the state still has that tag, up to wait
// (0: the server's default, 30s; at most 60s; negative: answer at once), and
// answers 304 when nothing changed: Desired then returns (nil, false, nil).
// Otherwise it returns the new state and true.
func (c *Client) Desired(ctx context.Context, id, cred, etag string, wait time.Duration) (*DesiredState, bool, error) {
	path := targetPath(PathDesired, id)
	switch {
	case wait > 0:
		path += "?wait=" + strconv.FormatInt(wait.Milliseconds(), 10) + "ms"
	case wait < 0:
		path += "?wait=0s"
	}
	hdr := http.Header{}
	if etag != "" {
		hdr.Set("If-None-Match", strconv.Quote(etag))
	}
	resp, err := c.b.do(ctx, "desired state of "+id, http.MethodGet, path, cred, nil, hdr, http.StatusNotModified)
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode == http.StatusNotModified {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, false, nil
	}
	var ds DesiredState
	if err := decode("desired state of "+id, resp, &ds); err != nil {
		return nil, false, err
	}
	return &ds, true, nil
}

// ReportStatus posts a status report of target id.
func (c *Client) ReportStatus(ctx context.Context, id, cred string, r StatusReport) error {
	resp, err := c.b.do(ctx, "report status of "+id, http.MethodPost, targetPath(PathStatus, id), cred, r, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// UploadFeedback sends a batch of sampled live inputs (JSON lines) that the
// runtime serving digest of release saw; the server stores it as a dataset
// version and answers what it recorded. A batch already stored (the same
// bytes, after a lost answer) is recorded once.
func (c *Client) UploadFeedback(ctx context.Context, id, cred, release, digest string, jsonl io.Reader) (*FeedbackBatch, error) {
	op := "upload feedback of " + id + "/" + release
	q := url.Values{"release": {release}, "digest": {digest}}
	resp, err := c.b.do(ctx, op, http.MethodPost, targetPath(PathFeedback, id)+"?"+q.Encode(), cred, jsonl,
		http.Header{"Content-Type": {"application/x-ndjson"}})
	if err != nil {
		return nil, err
	}
	var b FeedbackBatch
	if err := decode(op, resp, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// evaluationPath is PathEvaluation (or PathEvaluationBlob with key) of
// target id and run.
func evaluationPath(id, run, key string) string {
	p := strings.Replace(targetPath(PathEvaluation, id), "{run}", url.PathEscape(run), 1)
	if key != "" {
		p += "/blobs/" + key
	}
	return p
}

// ReportEvaluation sends an evaluator's results of run; the server
// records them and answers the run with its verdict. A run already
// reported answers as first recorded.
func (c *Client) ReportEvaluation(ctx context.Context, id, cred, run string, rep EvaluationReport) (*EvaluationRecord, error) {
	op := "report evaluation " + run + " of " + id
	resp, err := c.b.do(ctx, op, http.MethodPost, evaluationPath(id, run, ""), cred, rep, nil)
	if err != nil {
		return nil, err
	}
	var rec EvaluationRecord
	if err := decode(op, resp, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// EvaluationObject reads length bytes (to the end when negative) from off
// of an object of run's holdout dataset through the server (HEAD when
// head: no body), and returns its whole size. A missing object is an
// error wrapping ErrNotFound.
func (c *Client) EvaluationObject(ctx context.Context, id, cred, run, key string, off, length int64, head bool) (io.ReadCloser, int64, error) {
	op := "read " + key + " of evaluation " + run
	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	u := c.b.url + evaluationPath(id, run, key) + "?" + url.Values{"offset": {strconv.FormatInt(off, 10)}, "length": {strconv.FormatInt(length, 10)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("User-Agent", c.b.ua)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := c.b.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, 0, readAPIError(op, resp)
	}
	size, err := strconv.ParseInt(resp.Header.Get("X-Object-Size"), 10, 64)
	if err != nil {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: no object size in the answer", op)
	}
	if head {
		resp.Body.Close()
		return nil, size, nil
	}
	return resp.Body, size, nil
}
