package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Paths of the status API (admin or read-only token).
const (
	PathInventory = "/api/v1/inventory"
	PathTargets   = "/api/v1/targets"
	PathReleases  = "/api/v1/releases"
	PathEvents    = "/api/v1/events"
	// PathRollout takes {name} and {action}: pause, resume, abort, retry (admin token).
	PathRollout = "/api/v1/releases/{name}/rollout/{action}"
)

// Condition is a kstatus condition (Ready, Reconciling, Stalled) as the status
// API shows it.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"` // True, False, Unknown
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// TargetInfo is one target as `cairn get targets` and `cairn describe target` show it.
type TargetInfo struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Facts      Facts             `json:"facts"`
	EnrolledAt time.Time         `json:"enrolledAt"`
	// State is accepted, pending or rejected; PendingCredential says a
	// second enrollment under this name waits for `cairn target accept`.
	State             string     `json:"state,omitempty"`
	PendingCredential bool       `json:"pendingCredential,omitempty"`
	LastSeen          *time.Time `json:"lastSeen,omitempty"`
	Online            bool       `json:"online"`
	// Phase summarises the releases: Failed if any failed, else the least
	// advanced phase, Healthy when all are, "" with none.
	Phase    string             `json:"phase,omitempty"`
	Releases []ReleaseStatus    `json:"releases,omitempty"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	// Desired and ETag are what the target is told to run now.
	Desired []DesiredModel `json:"desired,omitempty"`
	ETag    string         `json:"etag,omitempty"`
	// Log is the deployment log, newest last (describe only).
	Log []LogEntry `json:"log,omitempty"`
}

// ReleaseInfo is one release as `cairn get releases|rollouts` and `cairn
// describe release` show it.
type ReleaseInfo struct {
	ReleaseState
	Model         string   `json:"model,omitempty"`
	Version       string   `json:"version,omitempty"`
	Artifact      string   `json:"artifact,omitempty"`
	Profiles      []string `json:"profiles,omitempty"`
	RolloutPolicy string   `json:"rolloutPolicy,omitempty"`
	Waves         int      `json:"waves,omitempty"`
	Suspended     bool     `json:"suspended,omitempty"`
	// Targets counts the selected targets; Updated those told to run Digest;
	// Healthy those reporting Healthy on it; Failed those reporting Failed.
	Targets    int         `json:"targets"`
	Updated    int         `json:"updated"`
	Healthy    int         `json:"healthy"`
	Failed     int         `json:"failed"`
	Conditions []Condition `json:"conditions,omitempty"`
	// Denied is the policy denial of the newest commit, when it was denied
	// and the release kept its previous admitted version.
	Denied    string    `json:"denied,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Drift is the live input drift of each target with input statistics.
	Drift []TargetDrift `json:"drift,omitempty"`
}

// TargetDrift is the drift of one target's live inputs against the
// training dataset's profile, over the release's sliding window: the
// maxima over features (drift_psi, drift_js, drift_ks) and each feature's.
type TargetDrift struct {
	Target  string `json:"target"`
	Model   string `json:"model"`   // model digest the inputs were served by
	Dataset string `json:"dataset"` // training dataset digest compared against
	// Window is the sliding window; Samples the fewest observations of a
	// compared feature in it.
	Window  time.Duration `json:"window"`
	Samples int64         `json:"samples"`
	PSI     float64       `json:"psi"`
	JS      float64       `json:"js"`
	KS      float64       `json:"ks"`
	// Conclusive is false while no feature has minSamples observations:
	// gates see no drift metric (no data).
	Conclusive bool           `json:"conclusive"`
	Features   []FeatureDrift `json:"features,omitempty"`
	// Alarm is since when the release's monitor has raised DriftDetected.
	Alarm *time.Time `json:"alarm,omitempty"`
}

// FeatureDrift is the drift of one input feature.
type FeatureDrift struct {
	Name    string  `json:"name"`
	PSI     float64 `json:"psi"`
	JS      float64 `json:"js"`
	KS      float64 `json:"ks"`
	Samples int64   `json:"samples"`
}

// Event is one entry of the event log.
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Reason  string    `json:"reason,omitempty"`
	Release string    `json:"release,omitempty"`
	Target  string    `json:"target,omitempty"`
	Commit  string    `json:"commit,omitempty"`
	Message string    `json:"message"`
	Targets []string  `json:"targets,omitempty"`
	// Key, when set, identifies the event for idempotence: an event whose
	// key is already recorded is not recorded again (a step retried after
	// a crash or by a new leader), and gets the recorded one's ID.
	Key string `json:"key,omitempty"`
}

// SourceInfo is the Git source as the server sees it.
type SourceInfo struct {
	URL        string      `json:"url,omitempty"`
	Branch     string      `json:"branch,omitempty"`
	Commit     string      `json:"commit,omitempty"` // last fetched
	Admitted   string      `json:"admitted,omitempty"`
	FetchedAt  *time.Time  `json:"fetchedAt,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
}

// EventFilter narrows GET /api/v1/events.
type EventFilter struct {
	Release string
	Target  string
	Type    string
	Limit   int // default 100
}

// AdminClient is the client of the status API behind `cairn get`, `cairn
// describe`, `cairn rollout` and `cairn plan --server`.
type AdminClient struct {
	b     base
	token string
}

// NewAdminClient returns a client of the status API at baseURL, using an
// admin or read-only token.
func NewAdminClient(baseURL, token string, opts ...Option) *AdminClient {
	return &AdminClient{b: newBase(baseURL, opts), token: token}
}

func (c *AdminClient) get(ctx context.Context, op, path string, out any) error {
	resp, err := c.b.do(ctx, op, http.MethodGet, path, c.token, nil, nil)
	if err != nil {
		return err
	}
	return decode(op, resp, out)
}

// Inventory returns the live fleet: every target and release state.
func (c *AdminClient) Inventory(ctx context.Context) (*Inventory, error) {
	var inv Inventory
	if err := c.get(ctx, "get inventory", PathInventory, &inv); err != nil {
		return nil, err
	}
	return &inv, nil
}

// Targets lists every enrolled target.
func (c *AdminClient) Targets(ctx context.Context) ([]TargetInfo, error) {
	var out []TargetInfo
	return out, c.get(ctx, "list targets", PathTargets, &out)
}

// Target returns one target with its deployment log.
func (c *AdminClient) Target(ctx context.Context, id string) (*TargetInfo, error) {
	var out TargetInfo
	if err := c.get(ctx, "get target "+id, PathTargets+"/"+url.PathEscape(id), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Releases lists every admitted release with its rollout.
func (c *AdminClient) Releases(ctx context.Context) ([]ReleaseInfo, error) {
	var out []ReleaseInfo
	return out, c.get(ctx, "list releases", PathReleases, &out)
}

// Release returns one release.
func (c *AdminClient) Release(ctx context.Context, name string) (*ReleaseInfo, error) {
	var out ReleaseInfo
	if err := c.get(ctx, "get release "+name, PathReleases+"/"+url.PathEscape(name), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Events returns the newest events, oldest first.
func (c *AdminClient) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	q := url.Values{}
	if f.Release != "" {
		q.Set("release", f.Release)
	}
	if f.Target != "" {
		q.Set("target", f.Target)
	}
	if f.Type != "" {
		q.Set("type", f.Type)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := PathEvents
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []Event
	return out, c.get(ctx, "list events", path, &out)
}

// Source returns the state of the Git source.
func (c *AdminClient) Source(ctx context.Context) (*SourceInfo, error) {
	var out SourceInfo
	if err := c.get(ctx, "get source", "/api/v1/source", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AlertDelivery is one alert's delivery to its webhook, as `cairn get
// alerts` shows it: pending (with its next attempt), delivered or failed.
type AlertDelivery struct {
	ID        string    `json:"id"`
	Alert     string    `json:"alert"`
	URL       string    `json:"url"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	Events    int       `json:"events"`
	Created   time.Time `json:"created"`
	NextAt    time.Time `json:"nextAt,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// Alerts lists the server's alert deliveries in the given states (all when
// none), newest first.
func (c *AdminClient) Alerts(ctx context.Context, states ...string) ([]AlertDelivery, error) {
	path := "/api/v1/alerts"
	if len(states) > 0 {
		path += "?state=" + url.QueryEscape(strings.Join(states, ","))
	}
	var out []AlertDelivery
	if err := c.get(ctx, "get alerts", path, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Feedback lists the feedback batches uploaded, newest first, of target
// and release (each optional).
func (c *AdminClient) Feedback(ctx context.Context, target, release string) ([]FeedbackBatch, error) {
	q := url.Values{}
	if target != "" {
		q.Set("target", target)
	}
	if release != "" {
		q.Set("release", release)
	}
	path := "/api/v1/feedback"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []FeedbackBatch
	if err := c.get(ctx, "get feedback", path, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Evaluations lists the evaluation runs of release ("" for all), newest
// first, with their results and verdicts.
func (c *AdminClient) Evaluations(ctx context.Context, release string) ([]EvaluationRecord, error) {
	path := "/api/v1/evaluations"
	if release != "" {
		path += "?" + url.Values{"release": {release}}.Encode()
	}
	var out []EvaluationRecord
	if err := c.get(ctx, "get evaluations", path, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RolloutAction asks the server to pause, resume, abort or retry the rollout
// of release (admin token). The reconciler applies it on its next step.
func (c *AdminClient) RolloutAction(ctx context.Context, release, action string) error {
	switch action {
	case "pause", "resume", "abort", "retry":
	default:
		return fmt.Errorf("rollout %s %s: unknown action: want pause, resume, abort or retry", action, release)
	}
	path := PathReleases + "/" + url.PathEscape(release) + "/rollout/" + action
	resp, err := c.b.do(ctx, "rollout "+action+" "+release, http.MethodPost, path, c.token, struct{}{}, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// TargetAction accepts, rejects or deletes a target (admin token): accept
// binds its pending credential, reject refuses it, delete forgets the target.
func (c *AdminClient) TargetAction(ctx context.Context, id, action string) error {
	method, path := http.MethodPost, PathTargets+"/"+url.PathEscape(id)+"/"+action
	switch action {
	case "accept", "reject":
	case "delete":
		method, path = http.MethodDelete, PathTargets+"/"+url.PathEscape(id)
	default:
		return fmt.Errorf("target %s %s: unknown action: want accept, reject or delete", action, id)
	}
	resp, err := c.b.do(ctx, "target "+action+" "+id, method, path, c.token, nil, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// Preauth returns a one-time enrollment token for the target name (admin
// token): an agent enrolling with it is accepted at once, even under a name
// that already has a credential.
func (c *AdminClient) Preauth(ctx context.Context, name string) (string, error) {
	op := "pre-authorise " + name
	resp, err := c.b.do(ctx, op, http.MethodPost, PathTargets+"/"+url.PathEscape(name)+"/preauth", c.token, nil, nil)
	if err != nil {
		return "", err
	}
	var out PreauthResponse
	if err := decode(op, resp, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// PreauthResponse carries a one-time enrollment token.
type PreauthResponse struct {
	Token string `json:"token"`
}
