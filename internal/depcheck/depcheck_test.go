package depcheck_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/internal/depcheck"
)

// TestImports lists every package of the module with `go list` and fails
// on each dependency the data flow forbids (production code; tests may
// import more).
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	cmd := exec.Command(goTool, "list", "-e", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", depcheck.Module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkg, ok := rel(fields[0])
		if !ok {
			continue
		}
		var ds []string
		for _, d := range fields[1:] {
			if r, ok := rel(d); ok {
				ds = append(ds, r)
			} else if depcheck.External(d) {
				ds = append(ds, d)
			}
		}
		deps[pkg] = ds
	}
	if _, ok := deps["manifests"]; !ok {
		t.Fatalf("go list did not list manifests; got %d packages", len(deps))
	}
	for _, line := range depcheck.Check(depcheck.Rules, deps) {
		t.Error(line)
	}
}

func rel(importPath string) (string, bool) {
	if importPath == depcheck.Module {
		return ".", true
	}
	return strings.CutPrefix(importPath, depcheck.Module+"/")
}

func TestCheck(t *testing.T) {
	deps := map[string][]string{
		"manifests":          nil,
		"fleet":              {"manifests"},
		"fleet/agent":        {"fleet", "manifests", "registry/models"},
		"registry/models":    {"manifests", "reconciler/store"},
		"policies":           {"manifests"},
		"lineage":            {"fleet", "manifests", "reconciler/store"},
		"reconciler/plan":    {"manifests", "policies", "cmd/cairn"},
		"cmd/cairn":          {"manifests", "reconciler/plan"},
		"internal/testenv":   nil,
		"reconciler/rollout": {"manifests", "fleet", "github.com/robfig/cron/v3"},
		"reconciler/source":  {"github.com/go-git/go-git/v5"},
	}
	got := depcheck.Check(depcheck.Rules, deps)
	want := []string{
		"registry/models imports reconciler/store (registry is an earlier stage)",
		"lineage imports reconciler/store (lineage records; it never drives (it reads fleet wire types, the stage before it))",
		"reconciler/plan imports cmd/cairn (cmd/ holds no logic to import)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Check =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	deps["reconciler/rollout"] = []string{"manifests", "reconciler/plan", "policies", "github.com/open-policy-agent/opa/v1/rego", "github.com/go-git/go-git/v5"}
	got = depcheck.Check(depcheck.Rules, deps)
	for _, w := range []string{"reconciler/rollout imports reconciler/plan", "reconciler/rollout imports github.com/open-policy-agent/opa/v1/rego", "reconciler/rollout imports github.com/go-git/go-git/v5"} {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, w+" (") }) {
			t.Errorf("Check missed %q; got\n%s", w, strings.Join(got, "\n"))
		}
	}
	deps["reconciler/rollout"] = nil
	deps["manifests"] = []string{"internal/output"}
	deps["fleet"] = []string{"manifests", "internal/sqldb"}
	got = depcheck.Check(depcheck.Rules, deps)
	for _, w := range []string{"manifests imports internal/output (manifests is the dependency-free core)", "fleet imports internal/sqldb (fleet wire types are shared by server and agent)"} {
		if !slices.Contains(got, w) {
			t.Errorf("Check missed %q; got\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// TestReconcilerParts: the rules of the reconciler's read-side and leaf
// packages catch them reaching for admission, the source or OPA.
func TestReconcilerParts(t *testing.T) {
	deps := map[string][]string{
		"reconciler/history":   {"fleet", "internal/sqldb", "reconciler/store"},
		"reconciler/dashboard": {"reconciler/store", "reconciler/history", "reconciler/plan", "github.com/go-git/go-git/v5"},
		"reconciler/feedback":  {"lineage", "registry/datasets", "reconciler/rollout", "github.com/open-policy-agent/opa/v1/rego"},
	}
	got := depcheck.Check(depcheck.Rules, deps)
	for _, w := range []string{
		"reconciler/history imports reconciler/store", "reconciler/dashboard imports reconciler/plan",
		"reconciler/dashboard imports github.com/go-git/go-git/v5", "reconciler/feedback imports reconciler/rollout",
		"reconciler/feedback imports github.com/open-policy-agent/opa/v1/rego",
	} {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, w+" (") }) {
			t.Errorf("Check missed %q; got\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != 5 {
		t.Errorf("Check =\n%s\nwant 5 lines", strings.Join(got, "\n"))
	}
}

// TestAgentStaysLean: the rules catch the device agent binary linking the
// server's packages or heavy modules.
func TestAgentStaysLean(t *testing.T) {
	deps := map[string][]string{"cmd/cairn-agent": {"fleet/agent", "registry/models", "reconciler/store",
		"github.com/open-policy-agent/opa/v1/rego", "k8s.io/client-go/rest", "modernc.org/sqlite", "github.com/minio/minio-go/v7"}}
	got := depcheck.Check(depcheck.Rules, deps)
	if len(got) != 5 {
		t.Errorf("Check =\n%s\nwant the 5 denied packages", strings.Join(got, "\n"))
	}
}
