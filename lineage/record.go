package lineage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/cairn-dev/cairn/lineage/openlineage"
)

// Step kinds, one per recorder.
const (
	StepPush       = "push"
	StepAdmission  = "admission"
	StepDeployment = "deployment"
	StepRollback   = "rollback"
)

// Recorder records the steps of cairn. *Graph records into the database,
// *Client posts to a server's /api/v1/lineage/record.
type Recorder interface {
	RecordPush(ctx context.Context, f PushFacts) error
	RecordAdmission(ctx context.Context, f AdmissionFacts) error
	RecordDeployment(ctx context.Context, f DeploymentFacts) error
	RecordRollback(ctx context.Context, f RollbackFacts) error
}

var (
	_ Recorder = (*Graph)(nil)
	_ Recorder = (*Client)(nil)
)

// PushFacts is what `cairn model push` knows: the model digest it pushed, the
// source commit and the datasets of its annotations.
type PushFacts struct {
	ModelDigest string            `json:"modelDigest"`         // sha256:…
	Ref         string            `json:"ref,omitempty"`       // registry/repo:tag as pushed
	Source      string            `json:"source,omitempty"`    // org.opencontainers.image.source
	Revision    string            `json:"revision,omitempty"`  // org.opencontainers.image.revision (commit)
	Name        string            `json:"name,omitempty"`      // model name
	Version     string            `json:"version,omitempty"`   // model version
	TrainedOn   map[string]string `json:"trainedOn,omitempty"` // dataset name → digest
	Time        time.Time         `json:"time"`
}

// Evaluation is a model's metrics on a dataset, as admitted.
type Evaluation = openlineage.Evaluation

// AdmissionFacts is what admission decided for a release at a commit.
type AdmissionFacts struct {
	Commit      string            `json:"commit"`
	Release     string            `json:"release"`
	Model       string            `json:"model,omitempty"` // model name
	ModelDigest string            `json:"modelDigest"`
	Datasets    map[string]string `json:"datasets,omitempty"` // trainedOn: name → digest
	Evaluations []Evaluation      `json:"evaluations,omitempty"`
	// Denied is true when a policy denied the release; no edges are recorded,
	// the step is kept (a FAIL event in OpenLineage).
	Denied  bool      `json:"denied,omitempty"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// DeploymentFacts is one model's deployment to one target for a release:
// recorded when it starts (Outcome Progressing) and/or when its outcome is
// known (Succeeded, Failed); End is set when the deployment ended (replaced,
// removed). A Failed deployment never became active.
type DeploymentFacts struct {
	Target      string    `json:"target"`
	Release     string    `json:"release"`
	Rollout     string    `json:"rollout,omitempty"`
	ModelDigest string    `json:"modelDigest"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end,omitzero"`
	Outcome     string    `json:"outcome,omitempty"` // Progressing, Succeeded (default), Failed, RolledBack
	// DeviceTime is the target's own clock for the deployment, kept apart
	// from Start (the server's receive time of the report).
	DeviceTime time.Time `json:"deviceTime,omitzero"`
}

// RollbackFacts is a rollback of a release from one model to another on
// some targets.
type RollbackFacts struct {
	Release string    `json:"release"`
	Rollout string    `json:"rollout,omitempty"`
	From    string    `json:"from"`         // model digest rolled back
	To      string    `json:"to,omitempty"` // model digest restored; empty when none
	Targets []string  `json:"targets,omitempty"`
	Time    time.Time `json:"time"`
	Reason  string    `json:"reason,omitempty"`
}

// stepNS is the UUID namespace of cairn's step and run identifiers.
var stepNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/cairn-dev/cairn/lineage"))

// newStep builds the step of facts: its id is a UUIDv5 of the kind and the
// canonical JSON of the facts (so a replay has the same id), runID one of
// the run identity (so START and COMPLETE of a run share it).
func newStep(kind string, t time.Time, facts any, run ...string) (*step, error) {
	b, err := json.Marshal(facts)
	if err != nil {
		return nil, fmt.Errorf("encode %s facts: %w", kind, err)
	}
	return &step{
		ID:    uuid.NewSHA1(stepNS, append([]byte(kind+"\x00"), b...)).String(),
		RunID: runID(kind, run...),
		Kind:  kind,
		Time:  t,
		Facts: b,
	}, nil
}

func runID(kind string, parts ...string) string {
	return uuid.NewSHA1(stepNS, []byte(kind+"\x00"+strings.Join(parts, "\x00"))).String()
}

// sha normalises a digest: "sha256:…" stays, a bare hex string gains the prefix.
func sha(d string) string {
	if d == "" || strings.Contains(d, ":") {
		return d
	}
	return "sha256:" + d
}

func datasetNode(name, digest string) string {
	if digest != "" {
		return Node(NodeDataset, sha(digest))
	}
	return Node(NodeDataset, name)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (f *PushFacts) normalize(now time.Time) error {
	f.ModelDigest = sha(f.ModelDigest)
	if f.ModelDigest == "" {
		return fmt.Errorf("%w: push: no model digest", ErrInvalid)
	}
	if f.Time.IsZero() {
		f.Time = now
	}
	f.Time = micro(f.Time)
	for k, v := range f.TrainedOn {
		f.TrainedOn[k] = sha(v)
	}
	return nil
}

func (f PushFacts) edges() []Edge {
	model := Node(NodeModel, f.ModelDigest)
	var edges []Edge
	if f.Revision != "" {
		attrs := map[string]any{}
		if f.Source != "" {
			attrs["source"] = f.Source
		}
		if f.Ref != "" {
			attrs["ref"] = f.Ref
		}
		edges = append(edges, Edge{Type: EdgePackagedFrom, From: model, To: Node(NodeCommit, f.Revision), Time: f.Time, Attrs: attrs})
	}
	for _, name := range sortedKeys(f.TrainedOn) {
		edges = append(edges, Edge{Type: EdgeTrainedOn, From: model, To: datasetNode(name, f.TrainedOn[name]), Time: f.Time, Attrs: map[string]any{"name": name}})
	}
	return edges
}

// RecordPush records a model push: model packagedFrom commit, model
// trainedOn each dataset.
func (g *Graph) RecordPush(ctx context.Context, f PushFacts) error {
	if err := f.normalize(g.now()); err != nil {
		return err
	}
	st, err := newStep(StepPush, f.Time, f, f.ModelDigest, f.Time.Format(time.RFC3339Nano))
	if err != nil {
		return err
	}
	if err := g.record(ctx, st, f.edges()); err != nil {
		return fmt.Errorf("record push of %s: %w", f.ModelDigest, err)
	}
	return nil
}

func (f *AdmissionFacts) normalize(now time.Time) error {
	f.ModelDigest = sha(f.ModelDigest)
	if f.Release == "" || f.Commit == "" || f.ModelDigest == "" {
		return fmt.Errorf("%w: admission needs a commit, a release and a model digest", ErrInvalid)
	}
	if f.Time.IsZero() {
		f.Time = now
	}
	f.Time = micro(f.Time)
	for k, v := range f.Datasets {
		f.Datasets[k] = sha(v)
	}
	for i := range f.Evaluations {
		f.Evaluations[i].Digest = sha(f.Evaluations[i].Digest)
	}
	return nil
}

func (f AdmissionFacts) edges() []Edge {
	if f.Denied {
		return nil
	}
	model := Node(NodeModel, f.ModelDigest)
	release := Node(NodeRelease, f.Release)
	edges := []Edge{
		{Type: EdgeDeclaredIn, From: release, To: Node(NodeCommit, f.Commit), Time: f.Time, Attrs: map[string]any{"model": f.ModelDigest}},
		{Type: EdgeDeclaredIn, From: model, To: release, Time: f.Time, Attrs: map[string]any{"commit": f.Commit, "name": f.Model}},
	}
	for _, name := range sortedKeys(f.Datasets) {
		edges = append(edges, Edge{Type: EdgeTrainedOn, From: model, To: datasetNode(name, f.Datasets[name]), Time: f.Time, Attrs: map[string]any{"name": name}})
	}
	for _, ev := range f.Evaluations {
		attrs := map[string]any{"name": ev.Dataset}
		if len(ev.Metrics) > 0 {
			attrs["metrics"] = ev.Metrics
		}
		edges = append(edges, Edge{Type: EdgeEvaluatedOn, From: model, To: datasetNode(ev.Dataset, ev.Digest), Time: f.Time, Attrs: attrs})
	}
	return edges
}

// RecordAdmission records an admitted release: release declaredIn commit,
// model declaredIn release, model trainedOn and evaluatedOn datasets. A
// release, commit and model already recorded adds nothing, whatever the time.
func (g *Graph) RecordAdmission(ctx context.Context, f AdmissionFacts) error {
	if err := f.normalize(g.now()); err != nil {
		return err
	}
	verdict := "admitted"
	if f.Denied {
		verdict = "denied"
	}
	st, err := newStep(StepAdmission, f.Time, f, f.Release, f.Commit, f.ModelDigest, verdict)
	if err != nil {
		return err
	}
	// The reconciler admits a commit again after a restart or on another
	// replica: the release, commit, model and verdict make the run, recorded
	// once. A release first denied, then admitted when its promotion gate
	// lifts, records both.
	var seen int
	err = g.readStrict(ctx, func(r *reader) error {
		return r.queryRow(ctx, []any{&seen}, `SELECT COUNT(*) FROM lineage_steps WHERE run_id = ?`, st.RunID)
	})
	if err != nil {
		return fmt.Errorf("record admission of %s at %s: %w", f.Release, f.Commit, err)
	}
	if seen > 0 {
		return nil
	}
	if err := g.record(ctx, st, f.edges()); err != nil {
		return fmt.Errorf("record admission of %s at %s: %w", f.Release, f.Commit, err)
	}
	return nil
}

func (f *DeploymentFacts) normalize(now time.Time) error {
	f.ModelDigest = sha(f.ModelDigest)
	if f.Target == "" || f.ModelDigest == "" {
		return fmt.Errorf("%w: deployment needs a target and a model digest", ErrInvalid)
	}
	if f.Start.IsZero() {
		f.Start = now
	}
	f.Start = micro(f.Start)
	if !f.End.IsZero() {
		f.End = micro(f.End)
		if f.End.Before(f.Start) {
			return fmt.Errorf("%w: deployment of %s to %s ends before it starts", ErrInvalid, f.ModelDigest, f.Target)
		}
	}
	if f.Outcome == "" {
		f.Outcome = OutcomeSucceeded
	}
	return nil
}

func (f DeploymentFacts) edges() []Edge {
	model, target := Node(NodeModel, f.ModelDigest), Node(NodeTarget, f.Target)
	var attrs map[string]any
	if f.Rollout != "" {
		attrs = map[string]any{"rollout": f.Rollout}
	}
	edges := []Edge{{Type: EdgeDeployedTo, From: model, To: target, Time: f.Start, Phase: PhaseStart, Outcome: f.Outcome, Release: f.Release, Attrs: attrs}}
	if !f.End.IsZero() {
		edges = append(edges, Edge{Type: EdgeDeployedTo, From: model, To: target, Time: f.End, Phase: PhaseEnd, Outcome: f.Outcome, Release: f.Release, Attrs: attrs})
	}
	return edges
}

// RecordDeployment records a deployment: model deployedTo target, its start
// and, when End is set, its end, as two appended edges. Restating that the
// model already active on the target for the release runs (a heartbeat, a
// status report seen again) adds nothing, and neither does a failure or a
// removal the target reported before (the same DeviceTime: a report the
// server recorded but whose answer the agent never got, sent again).
func (g *Graph) RecordDeployment(ctx context.Context, f DeploymentFacts) error {
	if err := f.normalize(g.now()); err != nil {
		return err
	}
	if !f.DeviceTime.IsZero() && !running(f.Outcome) {
		var again bool
		err := g.readStrict(ctx, func(r *reader) error {
			var err error
			again, err = r.reportedBefore(ctx, f)
			return err
		})
		if err != nil {
			return fmt.Errorf("record deployment of %s to %s: %w", f.ModelDigest, f.Target, err)
		}
		if again {
			return nil
		}
	}
	if f.End.IsZero() && running(f.Outcome) {
		var already bool
		// Strict: a deployment another replica recorded a moment ago counts.
		err := g.readStrict(ctx, func(r *reader) error {
			tid, ok, err := r.lookup(ctx, Node(NodeTarget, f.Target))
			if err != nil || !ok {
				return err
			}
			d, err := r.activeOn(ctx, tid, f.Release, f.Start)
			if err != nil || d == nil || !running(d.outcome) || d.at >= f.Start.UnixMicro() {
				return err
			}
			names, err := r.namesOf(ctx, []int64{d.model})
			already = names[d.model] == Node(NodeModel, f.ModelDigest)
			return err
		})
		if err != nil {
			return fmt.Errorf("record deployment of %s to %s: %w", f.ModelDigest, f.Target, err)
		}
		if already {
			return nil
		}
	}
	st, err := newStep(StepDeployment, f.Start, f, f.Target, f.Release, f.ModelDigest, f.Start.Format(time.RFC3339Nano))
	if err != nil {
		return err
	}
	if !f.End.IsZero() {
		st.Time = f.End
	}
	if err := g.record(ctx, st, f.edges()); err != nil {
		return fmt.Errorf("record deployment of %s to %s: %w", f.ModelDigest, f.Target, err)
	}
	return nil
}

// reportedBefore reports whether the latest deployment of f's release
// recorded on f's target is f as the target reported it before: the same
// model, outcome and device time. Latest whatever f.Start says: that is the
// receiving server's clock, and a replica's may be behind the one that
// recorded the original.
func (r *reader) reportedBefore(ctx context.Context, f DeploymentFacts) (bool, error) {
	tid, ok, err := r.lookup(ctx, Node(NodeTarget, f.Target))
	if err != nil || !ok {
		return false, err
	}
	var outcome string
	var facts sql.NullString
	err = r.queryRow(ctx, []any{&outcome, &facts}, `SELECT e.outcome, s.facts FROM lineage_edges e LEFT JOIN lineage_steps s ON s.id = e.step
		WHERE e.kind = 'deployedTo' AND e.down = ? AND e.rel = ? AND e.phase = ? ORDER BY e.at DESC, e.id DESC LIMIT 1`,
		tid, f.Release, PhaseStart)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("deployments: %w", err)
	}
	var prev DeploymentFacts
	if outcome != f.Outcome || !facts.Valid || json.Unmarshal([]byte(facts.String), &prev) != nil {
		return false, nil
	}
	return prev.ModelDigest == f.ModelDigest && prev.DeviceTime.Equal(f.DeviceTime), nil
}

// running is true for the outcomes of a model that is active.
func running(outcome string) bool {
	return outcome == OutcomeSucceeded || outcome == OutcomeRolledBack
}

func (f *RollbackFacts) normalize(now time.Time) error {
	f.From, f.To = sha(f.From), sha(f.To)
	if f.Release == "" || f.From == "" {
		return fmt.Errorf("%w: rollback needs a release and the model rolled back", ErrInvalid)
	}
	if f.Time.IsZero() {
		f.Time = now
	}
	f.Time = micro(f.Time)
	f.Targets = append([]string(nil), f.Targets...)
	sort.Strings(f.Targets)
	return nil
}

func (f RollbackFacts) edges() []Edge {
	from := Node(NodeRelease, f.Release)
	if f.Rollout != "" {
		from = Node(NodeRollout, f.Rollout)
	}
	attrs := map[string]any{"release": f.Release, "targets": len(f.Targets)}
	if f.To != "" {
		attrs["to"] = f.To
	}
	if f.Reason != "" {
		attrs["reason"] = f.Reason
	}
	edges := []Edge{{Type: EdgeRolledBack, From: from, To: Node(NodeModel, f.From), Time: f.Time, Attrs: attrs}}
	var dattrs map[string]any
	if f.Rollout != "" {
		dattrs = map[string]any{"rollout": f.Rollout}
	}
	for _, t := range f.Targets {
		target := Node(NodeTarget, t)
		edges = append(edges, Edge{Type: EdgeDeployedTo, From: Node(NodeModel, f.From), To: target, Time: f.Time, Phase: PhaseEnd, Outcome: OutcomeRolledBack, Release: f.Release, Attrs: dattrs})
		if f.To != "" {
			edges = append(edges, Edge{Type: EdgeDeployedTo, From: Node(NodeModel, f.To), To: target, Time: f.Time, Phase: PhaseStart, Outcome: OutcomeRolledBack, Release: f.Release, Attrs: dattrs})
		}
	}
	return edges
}

// RecordRollback records a rollback: rollout (or release) rolledBack model,
// and on every target the end of From and the start of To.
func (g *Graph) RecordRollback(ctx context.Context, f RollbackFacts) error {
	if err := f.normalize(g.now()); err != nil {
		return err
	}
	st, err := newStep(StepRollback, f.Time, f, f.Release, f.Rollout, f.From, f.Time.Format(time.RFC3339Nano))
	if err != nil {
		return err
	}
	if err := g.record(ctx, st, f.edges()); err != nil {
		return fmt.Errorf("record rollback of %s in %s: %w", f.From, f.Release, err)
	}
	return nil
}
