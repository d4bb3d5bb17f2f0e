package depcheck

import (
	"fmt"
	"slices"
	"strings"
)

// Module is the import path of cairn's module.
const Module = "github.com/cairn-dev/cairn"

// Rule forbids packages matching From to depend, directly or not, on
// packages matching any of Deny; Allow, when set, lists the only cairn
// packages From may depend on. Deny patterns whose first element has a dot
// ("github.com/go-git/...") name packages outside the module; Allow never
// restricts those.
type Rule struct {
	From   string   // a module-relative package pattern: "fleet", "registry/..."
	Deny   []string // patterns From must not depend on
	Allow  []string // when non-nil, the only cairn patterns From may depend on
	Reason string
}

// Heavy outside modules the pure parts of the reconciler must not link.
var (
	opa   = "github.com/open-policy-agent/..."
	goGit = "github.com/go-git/..."
	prom  = "github.com/prometheus/..."
)

// Rules are the import rules of DESIGN.md's data flow.
var Rules = []Rule{
	{From: "digest", Allow: []string{}, Reason: "digest is a leaf: the standard library only"},
	{From: "errdef", Allow: []string{}, Reason: "errdef is a leaf: the standard library only"},
	{From: "lineage/openlineage", Allow: []string{}, Reason: "OpenLineage wire types import only the standard library"},
	{From: "manifests/...", Allow: []string{"digest", "errdef"}, Reason: "manifests is the dependency-free core"},
	{From: "fleet", Allow: []string{"manifests/...", "digest", "errdef"}, Reason: "fleet wire types are shared by server and agent"},
	{From: "registry/...", Deny: []string{"reconciler/...", "fleet/...", "lineage/...", "policies/..."}, Reason: "registry is an earlier stage"},
	{From: "policies/...", Deny: []string{"reconciler/..."}, Reason: "policies run before the reconciler"},
	{From: "lineage/...", Deny: []string{"reconciler/...", "fleet/agent/..."}, Reason: "lineage records; it never drives (it reads fleet wire types, the stage before it)"},
	{From: "fleet/agent/...", Deny: []string{"reconciler/...", "lineage/..."}, Reason: "agents reach the server only through the fleet API"},
	{From: "fleet/agent", Deny: []string{"fleet/agent/kube/..."}, Reason: "the kube driver links client-go: only cmd/cairn registers it"},
	{From: "cmd/cairn-agent/...", Deny: []string{"fleet/agent/kube/...", "internal/kubetest"}, Reason: "the device agent binary stays without client-go"},
	{From: "reconciler/rollout", Allow: []string{"manifests/...", "fleet", "digest", "errdef"}, Deny: []string{"reconciler/plan/...", opa, goGit, prom},
		Reason: "the rollout engine is pure: manifests and fleet wire types in, desired assignments out (plan imports rollout for waves and gates, never the reverse)"},
	{From: "reconciler/store", Deny: []string{"reconciler", "reconciler/plan", "reconciler/server", "reconciler/source", "policies/...", "lineage/...", opa, goGit},
		Reason: "the store persists records; it decides nothing"},
	{From: "reconciler/source", Deny: []string{"reconciler", "reconciler/plan", "reconciler/server", "reconciler/store", "reconciler/rollout", "policies/...", opa},
		Reason: "the source fetches commits; admission happens after it"},
	{From: "reconciler/plan/...", Deny: []string{"reconciler", "reconciler/server", "reconciler/store", "reconciler/source", "lineage/..."},
		Reason: "plan is a pure function of a commit and an inventory (cairn plan runs it without a server)"},
	{From: "reconciler/server", Deny: []string{"reconciler", "reconciler/plan", "reconciler/source", "policies/...", opa, goGit},
		Reason: "the HTTP APIs read the store; they never admit or fetch"},
	{From: "reconciler/record", Allow: []string{"manifests/...", "fleet", "digest", "errdef", "reconciler/rollout"},
		Reason: "a release's record holds manifests, the rollout state and wire status; its codec nothing else"},
	{From: "reconciler/fleetstate", Allow: []string{"manifests/...", "fleet", "digest", "errdef", "reconciler/store", "reconciler/record", "reconciler/rollout", "internal/sqldb"},
		Reason: "fleetstate is shared by the reconciler and the HTTP APIs; it reads stored targets only"},
	{From: "reconciler/notify", Allow: []string{"manifests/...", "fleet", "digest", "errdef", "internal/sqldb"}, Reason: "notify delivers events through its outbox; it reads nothing else"},
	{From: "reconciler/history", Allow: []string{"fleet", "digest", "errdef", "internal/sqldb"}, Deny: []string{opa, goGit},
		Reason: "history keeps the targets' metric series from their reports; it knows nothing of releases"},
	{From: "reconciler/dashboard", Deny: []string{"reconciler", "reconciler/plan/...", "reconciler/source", "reconciler/server", "policies/...", opa, goGit},
		Reason: "the dashboard reads the store, history and lineage, as the HTTP APIs do; it never admits or fetches"},
	{From: "reconciler/feedback", Deny: []string{"reconciler", "reconciler/plan/...", "reconciler/source", "reconciler/server", "reconciler/rollout", "policies/...", opa, goGit},
		Reason: "feedback stores uploaded batches as dataset versions; it decides nothing of rollouts"},
	{From: "...", Deny: []string{"cmd/..."}, Reason: "cmd/ holds no logic to import"},
	{From: "cmd/cairn", Deny: []string{"gorgonia.org/...", "gonum.org/..."},
		Reason: "the training library belongs to the examples; cairn's dataset statistics are plain loops"},
	{From: "cmd/cairn", Deny: []string{"google.golang.org/grpc/...", "go.opentelemetry.io/otel/sdk/...", "go.opentelemetry.io/otel/exporters/...", "go.opentelemetry.io/contrib/..."},
		Reason: "Distribution's storage drivers trace every call through the OpenTelemetry SDK and its exporters (gRPC included); cairn's drivers (registry/distdriver) do not"},
	{From: "...", Deny: []string{"github.com/aws/aws-sdk-go/..."},
		Reason: "aws-sdk-go v1 is out of support and its endpoint table costs every cairn command ~7 MB RSS at start; S3 goes through minio-go (registry/blobs, registry/s3driver)"},
	{From: "cmd/cairn-agent/...", Deny: agentDenied, Reason: "the device agent binary links the agent and the model puller only"},
	{From: "fleet/agent/agentcli", Deny: agentDenied, Reason: "the device agent binary links the agent and the model puller only"},
}

// agentDenied is what cmd/cairn-agent must not link (a device on a cellular
// link downloads it): the server's packages and the heavy modules of the
// server, the CLI and the kube driver.
var agentDenied = []string{
	"reconciler/...", "policies/...", "lineage/...", "internal/sqldb/...", "fleet/agent/kube/...", "internal/kubetest/...",
	opa, goGit, // policies, sources
	"modernc.org/sqlite/...", "github.com/mattn/go-sqlite3/...", "github.com/jackc/...", // stores
	"github.com/minio/...", "github.com/aws/...", // S3
	"registry/datasets", "registry/blobs/...", "fleet/agent/holdout", "gorgonia.org/...", "gonum.org/...", // datasets (the evaluator's holdout: cairn agent only)
	"k8s.io/...", "sigs.k8s.io/controller-runtime/...", // the kube driver belongs in cairn only
}

// External reports whether a dependency lies outside the module: its first
// path element has a dot (github.com/…), where cairn's relative paths never do.
func External(pkg string) bool {
	first, _, _ := strings.Cut(pkg, "/")
	return strings.Contains(first, ".")
}

// Match reports whether a module-relative package path matches pattern:
// "x" is x alone, "x/..." is x and everything under it, "..." is everything.
func Match(pattern, pkg string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pkg == pattern
}

// Check returns a line per forbidden dependency in deps, which maps each
// cairn package (module-relative) to the packages it depends on, directly or
// not: cairn's module-relative, others by import path (standard library
// packages may be left out).
func Check(rules []Rule, deps map[string][]string) []string {
	var bad []string
	pkgs := make([]string, 0, len(deps))
	for p := range deps {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, r := range rules {
		for _, p := range pkgs {
			if !Match(r.From, p) {
				continue
			}
			for _, d := range deps[p] {
				if d == p || (r.From == "..." && Match("cmd/...", p)) {
					continue
				}
				denied := slices.ContainsFunc(r.Deny, func(pat string) bool { return Match(pat, d) })
				notAllowed := r.Allow != nil && !External(d) && !slices.ContainsFunc(r.Allow, func(pat string) bool { return Match(pat, d) })
				if denied || notAllowed {
					bad = append(bad, fmt.Sprintf("%s imports %s (%s)", p, d, r.Reason))
				}
			}
		}
	}
	return bad
}
