package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
)

// input builds the policy input document of one release.
func (c *computer) input(rel manifests.Release, model manifests.Model, haveModel bool, repo, digest string,
	policy manifests.RolloutPolicy, havePolicy bool, art *ArtifactInfo, r Release, touched []int32) *policies.Input {
	in := &policies.Input{
		Release: policies.ReleaseInput{
			Name: rel.Metadata.Name, Labels: rel.Metadata.Labels, Annotations: rel.Metadata.Annotations,
			Spec: rel.Spec,
		},
		Now:   c.opts.Now.UTC().Format(time.RFC3339),
		NowNs: c.opts.Now.UnixNano(),
	}
	if rel.Source.File != "" {
		in.Release.Source = fmt.Sprintf("%s:%d", rel.Source.File, rel.Source.Line)
	}
	registry, repository, _ := strings.Cut(repo, "/")
	in.Model = policies.ModelInput{
		Name: rel.Spec.Model, Spec: model.Spec, Artifact: model.Spec.Artifact,
		Registry: registry, Repository: repository, Digest: digest, Format: model.Spec.Format,
		Requires: policies.Requirements{
			Arch: model.Spec.Requires.Arch, Accelerators: model.Spec.Requires.Accelerators,
			MemoryBytes: model.Spec.Requires.Memory.Bytes,
		},
		Evaluations: model.Spec.EvaluatedOn,
		Size:        r.ModelBytes,
		Missing:     !haveModel,
	}
	if !model.Spec.Requires.Memory.IsZero() {
		in.Model.Requires.Memory = model.Spec.Requires.Memory.String()
	}
	if art != nil {
		in.Model.Annotations = art.Annotations
		in.Model.MediaType, in.Model.ArtifactType, in.Model.Platforms = art.MediaType, art.ArtifactType, art.Platforms
		for _, l := range art.Layers {
			in.Model.Layers = append(in.Model.Layers, policies.LayerInput(l))
		}
	}
	in.Datasets = c.datasetInputs(model)
	if havePolicy {
		in.RolloutPolicy = &policies.RolloutPolicyInput{Name: policy.Metadata.Name, Spec: policy.Spec}
	}
	in.Targets = policies.TargetsInput{Count: r.Selected, Profiles: r.Profiles, Classes: make([]policies.TargetClass, 0, len(touched))}
	for _, cl := range touched {
		in.Targets.Classes = append(in.Targets.Classes, policies.TargetClass{
			Facts: c.ix.classes[cl], Count: c.classCount[cl], Names: slices.Clone(c.classNames[cl]),
		})
	}
	if c.opts.Live {
		in.Lineage = c.lineageInput(rel, digest)
	}
	in.Evaluation = c.evaluationInput(c.ctx, rel, model, digest)
	return in
}

// datasetInputs are the datasets of the policy input: trainedOn then
// evaluatedOn, each once with its roles.
func (c *computer) datasetInputs(model manifests.Model) []policies.DatasetInput {
	out := []policies.DatasetInput{}
	pos := map[string]int{}
	addDS := func(name, role string) {
		if i, ok := pos[name]; ok {
			if !slices.Contains(out[i].Roles, role) {
				out[i].Roles = append(out[i].Roles, role)
			}
			return
		}
		pos[name] = len(out)
		d, ok := c.snap.Dataset(name)
		out = append(out, policies.DatasetInput{
			Name: name, Digest: d.Spec.Digest, License: d.Spec.License, Format: d.Spec.Format,
			Store: d.Spec.Store, Roles: []string{role}, Missing: !ok,
		})
	}
	for _, d := range model.Spec.TrainedOn {
		addDS(d, "trainedOn")
	}
	for _, e := range model.Spec.EvaluatedOn {
		addDS(e.Dataset, "evaluatedOn")
	}
	return out
}

// lineageInput is the live state of the policy input: the release, the one
// it comes after, and those that ran its digest.
func (c *computer) lineageInput(rel manifests.Release, digest string) policies.LineageInput {
	out := policies.LineageInput{Available: true, Releases: map[string]policies.ReleaseState{}}
	add := func(n string) {
		s, ok := c.live[n]
		if !ok {
			return
		}
		st := policies.ReleaseState{Digest: s.Digest, LastGood: s.LastGood, Phase: s.Phase}
		if s.HealthySince != nil {
			st.HealthySince = s.HealthySince.UTC().Format(time.RFC3339)
			st.HealthySinceNs = s.HealthySince.UnixNano()
		}
		out.Releases[n] = st
	}
	add(rel.Metadata.Name)
	if rel.Spec.After != nil {
		add(rel.Spec.After.Release)
	}
	if digest != "" {
		out.RanDigest = c.ranDigest[digest]
		for _, n := range out.RanDigest {
			add(n)
		}
	}
	return out
}
