package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/lineage"
)

// lineageCLI runs `cairn lineage …` against the e2e server with the admin
// token and decodes its JSON answers.
type lineageCLI struct {
	s *fleetServer
	// label names digests (v1, D_base, …) and target ids (dev-3) in logs.
	label map[string]string
}

func (l lineageCLI) run(t *testing.T, args ...string) string {
	t.Helper()
	return l.s.api(append([]string{"lineage"}, args...)...)
}

func (l lineageCLI) deployments(t *testing.T, args ...string) []lineage.Active {
	t.Helper()
	out := l.run(t, append(args, "-o", "json")...)
	var a []lineage.Active
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("cairn lineage %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return a
}

// at is `cairn lineage at TARGET --time T -o json`.
func (l lineageCLI) at(t *testing.T, target string, when time.Time) []lineage.Active {
	t.Helper()
	return l.deployments(t, "at", target, "--time", when.UTC().Format(time.RFC3339Nano))
}

// where is `cairn lineage where DIGEST [--time T] -o json`; a zero when is now.
func (l lineageCLI) where(t *testing.T, digest string, when time.Time) []lineage.Active {
	t.Helper()
	args := []string{"where", digest}
	if !when.IsZero() {
		args = append(args, "--time", when.UTC().Format(time.RFC3339Nano))
	}
	return l.deployments(t, args...)
}

// downstream is `cairn lineage downstream NODE -o json`.
func (l lineageCLI) downstream(t *testing.T, node string) lineage.Subgraph {
	t.Helper()
	out := l.run(t, "downstream", node, "-o", "json")
	var sg lineage.Subgraph
	if err := json.Unmarshal([]byte(out), &sg); err != nil {
		t.Fatalf("cairn lineage downstream %s -o json: %v\n%s", node, err, out)
	}
	return sg
}

func (l lineageCLI) name(s string) string {
	if n, ok := l.label[s]; ok {
		return n
	}
	if typ, id, err := lineage.SplitNode(s); err == nil && typ != lineage.NodeModel {
		if n, ok := l.label[id]; ok {
			return n
		}
	}
	return short(s)
}

func (l lineageCLI) names(ss []string) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, l.name(s))
	}
	return out
}

// atWant is what `lineage at` must answer for one target: a model digest with
// its training datasets and admitting commit, or nothing (model "").
type atWant struct {
	model, commit string
	datasets      []string // dataset digests, sorted
}

// checkAt asks `lineage at` about every target at when and compares with
// want (by target id); it logs one line per time.
func (l lineageCLI) checkAt(t *testing.T, label string, when time.Time, ids []string, want map[string]atWant) {
	t.Helper()
	var got []string
	for _, id := range ids {
		as := l.at(t, id, when)
		w := want[id]
		if w.model == "" {
			if len(as) != 0 {
				t.Errorf("lineage at %s --time %s (%s): %d answers, want none: %+v", l.name(id), when.Format(time.RFC3339Nano), label, len(as), as)
			}
			got = append(got, l.name(id)+"=-")
			continue
		}
		if len(as) != 1 {
			t.Errorf("lineage at %s --time %s (%s): %d answers, want one on %s: %+v", l.name(id), when.Format(time.RFC3339Nano), label, len(as), l.name(w.model), as)
			got = append(got, fmt.Sprintf("%s=?(%d)", l.name(id), len(as)))
			continue
		}
		a := as[0]
		got = append(got, fmt.Sprintf("%s=%s", l.name(id), l.name(a.Model)))
		var ds []string
		for _, d := range a.Datasets {
			ds = append(ds, strings.TrimPrefix(d, lineage.NodeDataset+":"))
		}
		switch {
		case a.Model != w.model:
			t.Errorf("lineage at %s --time %s (%s): model %s, want %s", l.name(id), when.Format(time.RFC3339Nano), label, l.name(a.Model), l.name(w.model))
		case a.Target != id || a.Release != "demo":
			t.Errorf("lineage at %s --time %s (%s): target %q release %q, want %q and demo", l.name(id), when.Format(time.RFC3339Nano), label, a.Target, a.Release, id)
		case !slices.Equal(ds, w.datasets):
			t.Errorf("lineage at %s --time %s (%s): %s trained on %v, want %v", l.name(id), when.Format(time.RFC3339Nano), label, l.name(a.Model), l.names(ds), l.names(w.datasets))
		case a.Commit != w.commit:
			t.Errorf("lineage at %s --time %s (%s): %s admitted at commit %q, want %q", l.name(id), when.Format(time.RFC3339Nano), label, l.name(a.Model), a.Commit, w.commit)
		case a.Since.After(when):
			t.Errorf("lineage at %s --time %s (%s): active since %s, after the time asked", l.name(id), when.Format(time.RFC3339Nano), label, a.Since.Format(time.RFC3339Nano))
		}
	}
	t.Logf("  lineage at TARGET --time %s (%s): %s", when.Format(time.RFC3339Nano), label, strings.Join(got, " "))
}

// checkWhere asks `lineage where digest` (at when; zero: now) and compares
// the targets listed, and the models they run, with want (target id → model).
func (l lineageCLI) checkWhere(t *testing.T, label, digest string, when time.Time, want map[string]string) {
	t.Helper()
	as := l.where(t, digest, when)
	got := map[string]string{}
	var desc []string
	for _, a := range as {
		if _, dup := got[a.Target]; dup {
			t.Errorf("lineage where %s (%s): %s listed twice", l.name(digest), label, l.name(a.Target))
		}
		got[a.Target] = a.Model
		desc = append(desc, fmt.Sprintf("%s=%s", l.name(a.Target), l.name(a.Model)))
		if a.Release != "demo" {
			t.Errorf("lineage where %s (%s): %s release %q, want demo", l.name(digest), label, l.name(a.Target), a.Release)
		}
	}
	for id, m := range want {
		if got[id] != m {
			t.Errorf("lineage where %s (%s): %s runs %q, want %s", l.name(digest), label, l.name(id), l.name(got[id]), l.name(m))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("lineage where %s (%s): lists %s (on %s), which it must not", l.name(digest), label, l.name(id), l.name(got[id]))
		}
	}
	ts := "now"
	if !when.IsZero() {
		ts = when.Format(time.RFC3339Nano)
	}
	if len(desc) == 0 {
		desc = []string{"(none)"}
	}
	t.Logf("  lineage where %s --time %s (%s): %s", l.name(digest), ts, label, strings.Join(desc, " "))
}
