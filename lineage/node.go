package lineage

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Node types: a node is identified as "type:id", e.g. "model:sha256:…",
// "dataset:sha256:…", "target:dev-3", "commit:<sha>", "release:bearing-anomaly",
// "rollout:bearing-anomaly/2026-11-25T10:00:00Z".
const (
	NodeCommit  = "commit"
	NodeRelease = "release"
	NodeModel   = "model"
	NodeDataset = "dataset"
	NodeTarget  = "target"
	NodeRollout = "rollout"
)

// Edge types. From and To read as a sentence: "model trainedOn dataset",
// "model packagedFrom commit", "release declaredIn commit", "model declaredIn
// release", "model evaluatedOn dataset", "model deployedTo target", "rollout
// rolledBack model", "model driftedFrom dataset" (see EdgeDriftedFrom). Every edge but deployedTo points from the derived node to
// what it derives from; deployedTo points from the model to where it runs.
const (
	EdgeDeclaredIn   = "declaredIn"
	EdgeTrainedOn    = "trainedOn"
	EdgeEvaluatedOn  = "evaluatedOn"
	EdgePackagedFrom = "packagedFrom"
	EdgeDeployedTo   = "deployedTo"
	EdgeRolledBack   = "rolledBack"
)

// Phases of a deployedTo edge: a deployment is two appended events, its start
// and (when another model replaces it explicitly, it is rolled back or the
// target leaves the release) its end. A later start for the same target and
// release ends the previous deployment implicitly.
const (
	PhaseStart = "start"
	PhaseEnd   = "end"
)

// Deployment outcomes.
const (
	OutcomeProgressing = "Progressing"
	OutcomeSucceeded   = "Succeeded"
	OutcomeFailed      = "Failed"
	OutcomeRolledBack  = "RolledBack"
	// OutcomeRemoved ends whatever ran of the release on the target: the
	// agent uninstalled it (pruned).
	OutcomeRemoved = "Removed"
)

// ErrInvalid is returned for a malformed node or edge.
var ErrInvalid = errors.New("invalid lineage")

var nodeTypes = map[string]bool{NodeCommit: true, NodeRelease: true, NodeModel: true, NodeDataset: true, NodeTarget: true, NodeRollout: true}

var edgeTypes = map[string]bool{EdgeDeclaredIn: true, EdgeTrainedOn: true, EdgeEvaluatedOn: true, EdgePackagedFrom: true, EdgeDeployedTo: true, EdgeRolledBack: true, EdgeDriftedFrom: true, EdgeObservedBy: true, EdgeServedBy: true}

// Node builds the identifier "typ:id".
func Node(typ, id string) string { return typ + ":" + id }

// SplitNode returns the type and id of a node identifier.
func SplitNode(node string) (typ, id string, err error) {
	typ, id, ok := strings.Cut(node, ":")
	if !ok || id == "" || !nodeTypes[typ] {
		return "", "", fmt.Errorf("%w: node %q: want type:id with type commit, release, model, dataset, target or rollout", ErrInvalid, node)
	}
	return typ, id, nil
}

// NodeType returns the type of a node identifier, or "" when it has none.
func NodeType(node string) string {
	typ, id, ok := strings.Cut(node, ":")
	if !ok || id == "" {
		return ""
	}
	switch typ {
	case NodeCommit, NodeRelease, NodeModel, NodeDataset, NodeTarget, NodeRollout:
		return typ
	}
	return ""
}

// Edge is one appended fact of the graph.
type Edge struct {
	Type string    `json:"type"`
	From string    `json:"from"`
	To   string    `json:"to"`
	Time time.Time `json:"time"`
	// Phase, Outcome and Release are set on deployedTo edges only: the
	// deployment's start or end, its outcome, and the release it belongs to
	// (a target runs one model per release).
	Phase   string `json:"phase,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Release string `json:"release,omitempty"`
	// Attrs are free attributes (metrics, reason, ref, …).
	Attrs map[string]any `json:"attrs,omitempty"`
}

// Validate checks the edge's type, nodes and time.
func (e Edge) Validate() error {
	if !edgeTypes[e.Type] {
		return fmt.Errorf("%w: edge type %q", ErrInvalid, e.Type)
	}
	if _, _, err := SplitNode(e.From); err != nil {
		return fmt.Errorf("%s edge from: %w", e.Type, err)
	}
	if _, _, err := SplitNode(e.To); err != nil {
		return fmt.Errorf("%s edge to: %w", e.Type, err)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: %s edge %s → %s has no time", ErrInvalid, e.Type, e.From, e.To)
	}
	if e.Type == EdgeDeployedTo {
		if e.Phase != "" && e.Phase != PhaseStart && e.Phase != PhaseEnd {
			return fmt.Errorf("%w: deployedTo phase %q: want start or end", ErrInvalid, e.Phase)
		}
	} else if e.Phase != "" || e.Outcome != "" || e.Release != "" {
		return fmt.Errorf("%w: %s edge: phase, outcome and release belong to deployedTo edges", ErrInvalid, e.Type)
	}
	return nil
}

// updown returns the upstream and downstream node of the edge: the node the
// other derives from, and the derived one.
func (e Edge) updown() (up, down string) {
	if e.Type == EdgeDeployedTo {
		return e.From, e.To
	}
	return e.To, e.From
}

// fromUpDown is the inverse of updown.
func fromUpDown(typ, up, down string) (from, to string) {
	if typ == EdgeDeployedTo {
		return up, down
	}
	return down, up
}

// micro is the stored time resolution (both SQLite and PostgreSQL keep
// microseconds).
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
