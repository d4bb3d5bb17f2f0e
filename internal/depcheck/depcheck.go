package depcheck

import (
	"fmt"
	"slices"
	"strings"
)

// Module is the import path of cairn's module.
const Module = "github.com/cairn-dev/cairn"

// Rule forbids packages matching From to depend, directly or not, on
// packages matching any of To; Allow, when set, lists the only cairn
// packages From may depend on.
type Rule struct {
	From   string   // a module-relative package pattern: "fleet", "registry/..."
	Deny   []string // patterns From must not depend on
	Allow  []string // when non-nil, the only cairn patterns From may depend on
	Reason string
}

// Rules are the import rules of DESIGN.md's data flow.
var Rules = []Rule{
	{From: "manifests/...", Allow: []string{}, Reason: "manifests is the dependency-free core"},
	{From: "fleet", Allow: []string{"manifests/..."}, Reason: "fleet wire types are shared by server and agent"},
	{From: "registry/...", Deny: []string{"reconciler/...", "fleet/...", "lineage/...", "policies/..."}, Reason: "registry is an earlier stage"},
	{From: "policies/...", Deny: []string{"reconciler/..."}, Reason: "policies run before the reconciler"},
	{From: "lineage/...", Deny: []string{"reconciler/...", "fleet/agent/..."}, Reason: "lineage records; it never drives (it reads fleet wire types, the stage before it)"},
	{From: "fleet/agent/...", Deny: []string{"reconciler/...", "lineage/..."}, Reason: "agents reach the server only through the fleet API"},
	{From: "...", Deny: []string{"cmd/..."}, Reason: "cmd/ holds no logic to import"},
	{From: "cmd/cairn-agent/...", Allow: agentPackages, Reason: "the device agent binary links the agent and the model puller only"},
	{From: "fleet/agent/agentcli", Allow: agentPackages, Reason: "the device agent binary links the agent and the model puller only"},
}

// agentPackages are the cairn packages cmd/cairn-agent may link.
var agentPackages = []string{"fleet", "fleet/agent", "fleet/agent/agentcli", "manifests/...", "registry/models", "registry/datasets/drift"}

// Lean lists binaries that must stay small (a device on a cellular link
// downloads them): none of the packages they link may come from the modules
// denied.
var Lean = []LeanRule{{
	Binary: "cmd/cairn-agent",
	DenyModules: []string{
		"github.com/open-policy-agent/",                                          // policies: OPA
		"modernc.org/sqlite", "github.com/mattn/go-sqlite3", "github.com/jackc/", // the server's stores
		"github.com/go-git/",                   // sources
		"github.com/minio/", "github.com/aws/", // S3
		"k8s.io/", "sigs.k8s.io/controller-runtime", // the kube driver belongs in cairn only
	},
	Reason: "the device agent binary links the agent and the model puller only",
}}

// LeanRule forbids the packages of Binary (a module-relative main package)
// to come from modules under any of DenyModules (import path prefixes).
type LeanRule struct {
	Binary      string
	DenyModules []string
	Reason      string
}

// CheckLean returns a line per package of deps (the full import paths a
// binary links) that a rule denies.
func CheckLean(r LeanRule, deps []string) []string {
	var bad []string
	for _, d := range deps {
		for _, m := range r.DenyModules {
			if strings.HasPrefix(d, m) {
				bad = append(bad, fmt.Sprintf("%s links %s (%s)", r.Binary, d, r.Reason))
				break
			}
		}
	}
	return bad
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
// cairn package (module-relative) to the module-relative cairn packages it
// depends on, directly or not.
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
				notAllowed := r.Allow != nil && !slices.ContainsFunc(r.Allow, func(pat string) bool { return Match(pat, d) })
				if denied || notAllowed {
					bad = append(bad, fmt.Sprintf("%s imports %s (%s)", p, d, r.Reason))
				}
			}
		}
	}
	return bad
}
