package plan

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/errdef"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
)

// Layer is one layer of a model artifact, as a registry reports it.
type Layer struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	Path      string `json:"path,omitempty"`
}

// ArtifactInfo is what the registry says of a model artifact.
type ArtifactInfo struct {
	Digest string
	// MediaType is the manifest's, ArtifactType its artifactType.
	MediaType    string
	ArtifactType string
	// Platforms are the variants of an image index ("" entries dropped).
	Platforms   []string
	Layers      []Layer
	Annotations map[string]string
}

// DatasetInfo is what a dataset store says of a dataset version.
type DatasetInfo struct {
	// Profile is the stored profile's summary (per file, per column: count,
	// mean, variance, min, max), nil when none was stored.
	Profile map[string]any
}

// DatasetChecker finds a dataset version in the named store of the server
// config (DatasetSpec.Store, "" is "default"): an error wrapping
// errdef.ErrNotFound when the store does not hold it, any other error when
// the store could not be asked.
type DatasetChecker interface {
	Check(ctx context.Context, store, digest string) (*DatasetInfo, error)
}

// ArtifactInspector reads an artifact's layers from its registry. cairn plan
// wires registry/models.Inspect into it; without one, download sizes are
// unknown.
type ArtifactInspector interface {
	Inspect(ctx context.Context, artifact string) (*ArtifactInfo, error)
}

// InspectorFunc adapts a function to ArtifactInspector.
type InspectorFunc func(ctx context.Context, artifact string) (*ArtifactInfo, error)

// Inspect calls f.
func (f InspectorFunc) Inspect(ctx context.Context, artifact string) (*ArtifactInfo, error) {
	return f(ctx, artifact)
}

// Chunk is one content-defined chunk of a layer blob, as a chunk index
// lists it (registry/models' delta updates).
type Chunk struct {
	Digest string
	Size   int64
}

// ChunkIndexer reads the chunk index a model artifact carries for delta
// updates: per layer digest, that layer's chunks in order. A nil map and no
// error say the artifact has none. RegistryChunkIndexer wires
// registry/models.FetchChunkIndex into it.
type ChunkIndexer interface {
	ChunkIndex(ctx context.Context, artifact string) (map[string][]Chunk, error)
}

// ChunkIndexerFunc adapts a function to ChunkIndexer.
type ChunkIndexerFunc func(ctx context.Context, artifact string) (map[string][]Chunk, error)

// ChunkIndex calls f.
func (f ChunkIndexerFunc) ChunkIndex(ctx context.Context, artifact string) (map[string][]Chunk, error) {
	return f(ctx, artifact)
}

// Options are the inputs of Compute besides the snapshot and the inventory.
// The zero value works: no policies, unknown sizes, no base.
type Options struct {
	// Policies is the commit's compiled policy engine; nil skips policies.
	Policies *policies.Engine
	// Inspector reads layer sizes; nil leaves sizes unknown. An artifact it
	// reports missing (errdef.ErrNotFound) holds the release (Release.Held);
	// any other error leaves it Unavailable (a retry, not a verdict).
	Inspector ArtifactInspector
	// ChunkIndexes, with Inspector, makes download sizes those of delta
	// updates: a target running an earlier version of a release holds that
	// version's layers, and of a large layer it lacks fetches only the
	// chunks the earlier version's chunk index does not list. nil counts
	// whole layers (Bytes equals WholeBytes). An index that is missing or
	// cannot be read counts whole layers too, with a note.
	ChunkIndexes ChunkIndexer
	// Datasets finds the datasets a model names in their stores; nil skips
	// the check. Missing and unavailable as for Inspector.
	Datasets DatasetChecker
	// Base is the snapshot to diff against (the merge base); nil: none.
	Base *manifests.Snapshot
	// BaseRev names the base in the output (a commit id or revision).
	BaseRev string
	// Live says the inventory's release states come from a server: they are
	// the "from" side when there is no base and feed the lineage facts of the
	// policy input.
	Live bool
	// Now is the evaluation time given to policies (default time.Now()).
	Now time.Time
	// Evaluations finds the evaluation results of input.evaluation (with
	// Live); nil leaves them unavailable, which the evaluation policy
	// warns about instead of denying.
	Evaluations EvaluationResults
	// OnInput, when set, sees every policy input document before evaluation
	// (for debugging policies and documenting the input).
	OnInput func(*policies.Input)
}

// Change kinds of a release between the base (or live state) and the head.
const (
	Added     = "added"
	Changed   = "changed"
	Unchanged = "unchanged"
	Removed   = "removed"
)

// Plan is what merging a commit does: per release, which targets get which
// model digest, in which waves, how many bytes move, which targets cannot
// take it and the policy verdicts.
type Plan struct {
	Base    string `json:"base,omitempty"`
	Live    bool   `json:"live"`
	Targets int    `json:"targets"`
	// Summary counts releases by change kind.
	Summary  Summary   `json:"summary"`
	Releases []Release `json:"releases"`
	Denied   bool      `json:"denied"`
	// Notes are problems that did not stop the plan (no base).
	Notes []string `json:"notes,omitempty"`
}

// Summary totals a plan.
type Summary struct {
	Releases  int `json:"releases"`
	Added     int `json:"added"`
	Changed   int `json:"changed"`
	Removed   int `json:"removed"`
	Unchanged int `json:"unchanged"`
	// Assignments counts (release, target) pairs that will run a model.
	Assignments int `json:"assignments"`
	Unfit       int `json:"unfit"`
	// Bytes is the total to download over the fleet, WholeBytes the same
	// counting whole layers (no delta updates); nil when unknown.
	Bytes      *int64 `json:"bytes"`
	WholeBytes *int64 `json:"wholeBytes"`
	Denied     int    `json:"deniedReleases"`
	Warned     int    `json:"warnedReleases"`
	Held       int    `json:"heldReleases,omitempty"`
}

// Release is the plan of one release.
type Release struct {
	Name     string `json:"name"`
	Change   string `json:"change"`
	Model    string `json:"model"`
	Version  string `json:"version,omitempty"`
	Artifact string `json:"artifact,omitempty"`
	// From is the model digest of the base (or the live state), To the head's.
	From          string `json:"from"`
	To            string `json:"to"`
	RolloutPolicy string `json:"rolloutPolicy,omitempty"`
	Suspended     bool   `json:"suspended,omitempty"`
	// Kept is set on a removed release whose base said prune: false: its
	// targets keep it installed, unmanaged.
	Kept     bool     `json:"kept,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
	// Selected counts the targets the profiles select, UpToDate those that
	// already run To.
	Selected int `json:"selected"`
	UpToDate int `json:"upToDate"`
	// ModelBytes is the artifact's size, Bytes the total every fit target must
	// download (layers a target already has count zero; of a large layer, a
	// target running an earlier version fetches only the chunks it lacks,
	// see Options.ChunkIndexes); WholeBytes is that total counting whole
	// layers. nil when unknown.
	ModelBytes *int64 `json:"modelBytes"`
	Bytes      *int64 `json:"bytes"`
	WholeBytes *int64 `json:"wholeBytes"`
	// Downloads lists the targets whose download differs from ModelBytes
	// (they hold some layers or chunks, or run To already). Others download
	// ModelBytes.
	Downloads []Download         `json:"downloads,omitempty"`
	Waves     []Wave             `json:"waves"`
	Unfit     []Unfit            `json:"unfit"`
	Verdicts  []policies.Verdict `json:"verdicts"`
	Denied    bool               `json:"denied"`
	// Held says why admission holds the release: its model artifact or a
	// dataset is not in its registry or store. Unavailable says a registry
	// or store could not be asked (down, timed out): admission retries.
	Held        string `json:"held,omitempty"`
	Unavailable string `json:"unavailable,omitempty"`
	// Rollout is the release's live rollout when the plan reads a server
	// (--server): a rolled-back release shows its pinned last good digest.
	Rollout *LiveRollout `json:"rollout,omitempty"`
	// Notes are problems that did not stop the plan (registry unreachable).
	Notes []string `json:"notes,omitempty"`
}

// Err is nil unless a policy denied a release or admission would hold one:
// then an error wrapping errdef.ErrPolicyDenied that names the denied
// releases (cairn plan exits 2), else one wrapping errdef.ErrNotFound that
// names the held releases and why (exit 1).
func (p *Plan) Err() error {
	var denied, held []string
	for _, r := range p.Releases {
		if r.Denied {
			denied = append(denied, r.Name)
		}
		if r.Held != "" {
			held = append(held, r.Name+" ("+r.Held+")")
		}
	}
	switch {
	case len(denied) > 0:
		return fmt.Errorf("%w: %s", errdef.ErrPolicyDenied, strings.Join(denied, ", "))
	case len(held) > 0:
		return fmt.Errorf("held: %s: %w", strings.Join(held, "; "), errdef.ErrNotFound)
	}
	return nil
}

// LiveRollout is where a release's rollout stands on the server.
type LiveRollout struct {
	Phase    string `json:"phase,omitempty"`
	Digest   string `json:"digest,omitempty"`
	LastGood string `json:"lastGood,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
}

// Download is what one target must fetch for a release: Bytes with delta
// updates, WholeBytes counting whole layers, From the digest it runs now.
type Download struct {
	Target     string `json:"target"`
	From       string `json:"from,omitempty"`
	Bytes      int64  `json:"bytes"`
	WholeBytes int64  `json:"wholeBytes"`
}

// Wave is one wave of a release's rollout, the targets it reaches and the
// gates that hold it: each aggregates a metric over the wave's bake and
// must stay within its max and min, with minSamples reports, or do what
// onNoData says (defaults filled in: mean, 1, fail).
type Wave struct {
	Percent int              `json:"percent"`
	Bake    string           `json:"bake,omitempty"`
	Targets []string         `json:"targets"`
	Gates   []manifests.Gate `json:"gates,omitempty"`
	// Bytes is what the wave's targets download (as Release.Bytes),
	// WholeBytes the same counting whole layers; nil when unknown.
	Bytes      *int64 `json:"bytes"`
	WholeBytes *int64 `json:"wholeBytes"`
}

// Unfit is a selected target that cannot take the release's model.
type Unfit struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}
