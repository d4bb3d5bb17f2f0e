package policies

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"sigs.k8s.io/yaml"

	"github.com/cairn-dev/cairn/errdef"
)

//go:embed builtin/*.rego
var builtinFS embed.FS

// Results of a policy for one Release.
const (
	Allow = "allow"
	Warn  = "warn"
	Deny  = "deny"
)

// ErrPolicyDenied is returned (wrapped) by callers that refuse a Release
// because a policy denied it.
var ErrPolicyDenied = errdef.ErrPolicyDenied

// Verdict is one policy's answer for one Release: allow (no message), or one
// verdict per warn or deny message.
type Verdict struct {
	Policy  string `json:"policy"`
	Result  string `json:"result"`
	Message string `json:"message"`
}

// Denied reports whether any verdict is a deny.
func Denied(vs []Verdict) bool {
	return slices.ContainsFunc(vs, func(v Verdict) bool { return v.Result == Deny })
}

// Engine holds the compiled policies of one commit: the built-in library and
// the repository's own, with one prepared query per policy. Build it once per
// commit and call Evaluate for every Release; it is safe for concurrent use.
type Engine struct {
	compiler *ast.Compiler
	store    storage.Store
	pkgs     map[string]string // policy name → package path
	builtin  []string          // built-in policy names, sorted
	repo     []string          // repository policy names, sorted
	timeout  time.Duration     // per Release (EvalTimeout)
	repoTime bool              // some repository module may read the time (readsTime)

	mu   sync.Mutex
	sets map[string]rego.PreparedEvalQuery // policy names joined by "\x00" → one query for all
}

// ReadsTime reports whether the verdicts of the named policy may change
// with input.now alone: a repository policy when any repository module
// reads the time (input.now, input.now_ns, input as a whole or by a computed
// key, or time.now_ns). Built-in policies that read the time are known to
// the caller: promotion lifts at a deadline it can compute, evaluation's
// maxAge only ever denies with time.
func (e *Engine) ReadsTime(policy string) bool {
	return e.repoTime && slices.Contains(e.repo, policy)
}

// readsTime reports whether m may read the evaluation time.
func readsTime(m *ast.Module) bool {
	found := false
	ast.WalkRefs(m, func(ref ast.Ref) bool {
		if ref.String() == "time.now_ns" {
			found = true
		}
		if !ref.HasPrefix(ast.InputRootRef) {
			return found
		}
		if len(ref) < 2 {
			found = true
			return true
		}
		k, ok := ref[1].Value.(ast.String)
		if !ok || k == "now" || k == "now_ns" {
			found = true
		}
		return found
	})
	return found
}

// PackagePrefix is the package every built-in policy lives under; a
// repository policy `package cairn.no_friday` is named no-friday.
const PackagePrefix = "cairn."

// PolicyName returns the name of the policy in package pkg (without "data."):
// cairn.fits_device → fits-device; other packages keep their path.
func PolicyName(pkg string) string {
	if rest, ok := strings.CutPrefix(pkg, PackagePrefix); ok && !strings.Contains(rest, ".") {
		return strings.ReplaceAll(rest, "_", "-")
	}
	return pkg
}

// Builtins returns the names of the built-in policies, sorted.
func Builtins() []string {
	mods, err := builtinModules(false)
	if err != nil {
		panic(err) // embedded files are checked by the tests
	}
	var names []string
	for _, m := range mods {
		names = append(names, PolicyName(packagePath(m)))
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// definesVerdicts reports whether m has a deny or warn rule.
func definesVerdicts(m *ast.Module) bool {
	for _, r := range m.Rules {
		if n := r.Head.Name.String(); n == "deny" || n == "warn" {
			return true
		}
		if ref := r.Head.Ref(); len(ref) > 0 {
			if n := ref[0].String(); n == "deny" || n == "warn" {
				return true
			}
		}
	}
	return false
}

func packagePath(m *ast.Module) string {
	return strings.TrimPrefix(m.Package.Path.String(), "data.")
}

func parseModule(name string, src []byte) (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	return m, nil
}

// builtinModules parses the embedded library, with or without its tests.
func builtinModules(tests bool) (map[string]*ast.Module, error) {
	return readModules(builtinFS, "builtin", "builtin/", tests)
}

// readModules parses the .rego files directly in dir of fsys; *_test.rego
// only when tests is true. Module names are prefix + file name.
func readModules(fsys fs.FS, dir, prefix string, tests bool) (map[string]*ast.Module, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read policies %s: %w", dir, err)
	}
	mods := map[string]*ast.Module{}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".rego") {
			continue
		}
		if strings.HasSuffix(n, "_test.rego") && !tests {
			continue
		}
		src, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("read policy %s: %w", n, err)
		}
		m, err := parseModule(prefix+n, src)
		if err != nil {
			return nil, err
		}
		mods[prefix+n] = m
	}
	return mods, nil
}

// readData merges the .json, .yaml and .yml files directly in dir of fsys
// into one document; a top-level key defined by two files is an error.
func readData(fsys fs.FS, dir string) (map[string]any, error) {
	data := map[string]any{}
	if fsys == nil {
		return data, nil
	}
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read policy data %s: %w", dir, err)
	}
	from := map[string]string{}
	for _, e := range entries {
		n := e.Name()
		ext := path.Ext(n)
		if e.IsDir() || (ext != ".json" && ext != ".yaml" && ext != ".yml") {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("read policy data %s: %w", n, err)
		}
		if ext != ".json" {
			if b, err = yaml.YAMLToJSON(b); err != nil {
				return nil, fmt.Errorf("policy data %s: %w", n, err)
			}
		}
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("policy data %s: want an object at the top: %w", n, err)
		}
		for k, v := range doc {
			if f, dup := from[k]; dup {
				return nil, fmt.Errorf("policy data %s: key %q already defined in %s", n, k, f)
			}
			from[k], data[k] = n, v
		}
	}
	return data, nil
}

// Compile builds the Engine of one commit from the repository's policies
// folder (its *.rego modules, *_test.rego excluded, and its *.json/*.yaml data
// files, merged at the root of `data`) and the built-in library. repo may be
// nil: built-ins only.
func Compile(ctx context.Context, repo fs.FS, opts ...Option) (*Engine, error) {
	mods, err := builtinModules(false)
	if err != nil {
		return nil, err
	}
	builtinPkgs := map[string]bool{}
	for _, m := range mods {
		builtinPkgs[packagePath(m)] = true
	}
	repoPkgs := map[string]bool{}
	repoTime := false
	if repo != nil {
		rm, err := readModules(repo, ".", "policies/", false)
		if err != nil {
			return nil, err
		}
		for name, m := range rm {
			p := packagePath(m)
			if builtinPkgs[p] {
				return nil, fmt.Errorf("%s: package %s is a built-in policy: name yours differently", name, p)
			}
			mods[name] = m
			repoTime = repoTime || readsTime(m)
			if definesVerdicts(m) {
				repoPkgs[p] = true // a package of helpers only is no policy
			}
		}
	}
	data, err := readData(repo, ".")
	if err != nil {
		return nil, err
	}
	store := inmem.NewFromObject(data)
	c := ast.NewCompiler().WithCapabilities(sandbox())
	if c.Compile(mods); c.Failed() {
		return nil, fmt.Errorf("compile policies: %w", explainSandbox(c.Errors))
	}
	e := &Engine{compiler: c, store: store, pkgs: map[string]string{}, sets: map[string]rego.PreparedEvalQuery{}, timeout: EvalTimeout, repoTime: repoTime}
	for _, o := range opts {
		o(e)
	}
	for p := range builtinPkgs {
		e.pkgs[PolicyName(p)] = p
		e.builtin = append(e.builtin, PolicyName(p))
	}
	for p := range repoPkgs {
		e.pkgs[PolicyName(p)] = p
		e.repo = append(e.repo, PolicyName(p))
	}
	sort.Strings(e.builtin)
	sort.Strings(e.repo)
	// Prepare the query of every policy now, so errors surface at compile time.
	if _, err := e.prepare(ctx, append(slices.Clone(e.builtin), e.repo...)); err != nil {
		return nil, err
	}
	return e, nil
}

// prepare returns the query evaluating the deny and warn sets of the named
// policies in one evaluation (bindings d<i> and w<i>), prepared once per set
// of names.
func (e *Engine) prepare(ctx context.Context, names []string) (rego.PreparedEvalQuery, error) {
	key := strings.Join(names, "\x00")
	e.mu.Lock()
	defer e.mu.Unlock()
	if pq, ok := e.sets[key]; ok {
		return pq, nil
	}
	var q []string
	for i, n := range names {
		pkg := e.pkgs[n]
		q = append(q, fmt.Sprintf("d%d := [m | some m in data.%s.deny]", i, pkg), fmt.Sprintf("w%d := [m | some m in data.%s.warn]", i, pkg))
	}
	pq, err := rego.New(rego.Query(strings.Join(q, "; ")), rego.Compiler(e.compiler), rego.Store(e.store)).PrepareForEval(ctx)
	if err != nil {
		return pq, fmt.Errorf("prepare policies %s: %w", strings.Join(names, ", "), err)
	}
	e.sets[key] = pq
	return pq, nil
}

// Timeout is the bound on evaluating one Release's policies.
func (e *Engine) Timeout() time.Duration { return e.timeout }

// RepoPolicies returns the names of the repository's policies, which apply to
// every Release.
func (e *Engine) RepoPolicies() []string { return slices.Clone(e.repo) }

// IsBuiltin reports whether name is a built-in policy.
func (e *Engine) IsBuiltin(name string) bool {
	_, ok := slices.BinarySearch(e.builtin, name)
	return ok
}

// Evaluate runs, for one Release, the built-in policies its RolloutPolicy
// names (builtins) and every repository policy. The verdicts come in that
// order: per policy, deny messages sorted, then warn messages sorted, or one
// allow. A name that is no built-in policy is a deny: a typo must not turn a
// check off.
func (e *Engine) Evaluate(ctx context.Context, builtins []string, in *Input) ([]Verdict, error) {
	// The policies to run, in order, and the unknown names.
	var names []string
	var out []Verdict
	unknown := map[string]bool{}
	seen := map[string]bool{}
	for _, n := range builtins {
		if seen[n] {
			continue
		}
		seen[n] = true
		if !e.IsBuiltin(n) {
			unknown[n] = true
			continue
		}
		names = append(names, n)
	}
	for _, n := range e.repo {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	var results map[string][2][]string // name → deny, warn
	if len(names) > 0 {
		pq, err := e.prepare(ctx, names)
		if err != nil {
			return nil, err
		}
		v, err := toValue(in)
		if err != nil {
			return nil, fmt.Errorf("policy input for release %s: %w", in.Release.Name, err)
		}
		ectx, cancel := context.WithTimeout(ctx, e.timeout)
		rs, err := pq.Eval(ectx, rego.EvalParsedInput(v))
		cancel()
		if err != nil && ectx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("evaluate policies for release %s: not done within %s: %w", in.Release.Name, e.timeout, ErrEvalTimeout)
		}
		if err != nil {
			return nil, fmt.Errorf("evaluate policies for release %s: %w", in.Release.Name, err)
		}
		results = make(map[string][2][]string, len(names))
		if len(rs) > 0 {
			for i, n := range names {
				results[n] = [2][]string{
					messages(rs[0].Bindings[fmt.Sprintf("d%d", i)]),
					messages(rs[0].Bindings[fmt.Sprintf("w%d", i)]),
				}
			}
		}
	}
	// Verdicts in the order of the RolloutPolicy, then the repository's.
	emitted := map[string]bool{}
	emit := func(name string) {
		if emitted[name] {
			return
		}
		emitted[name] = true
		if unknown[name] {
			out = append(out, Verdict{Policy: name, Result: Deny, Message: fmt.Sprintf("no built-in policy %q (have %s)", name, strings.Join(e.builtin, ", "))})
			return
		}
		res := results[name]
		for _, m := range res[0] {
			out = append(out, Verdict{Policy: name, Result: Deny, Message: m})
		}
		for _, m := range res[1] {
			out = append(out, Verdict{Policy: name, Result: Warn, Message: m})
		}
		if len(res[0])+len(res[1]) == 0 {
			out = append(out, Verdict{Policy: name, Result: Allow})
		}
	}
	for _, n := range builtins {
		emit(n)
	}
	for _, n := range e.repo {
		emit(n)
	}
	return out, nil
}

// messages turns deny/warn values into strings: a string as is, an object's
// "msg" field (Conftest's structured form), anything else as JSON.
func messages(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		switch m := x.(type) {
		case string:
			out = append(out, m)
		case map[string]any:
			if s, ok := m["msg"].(string); ok {
				out = append(out, s)
				continue
			}
			b, _ := json.Marshal(m)
			out = append(out, string(b))
		default:
			b, _ := json.Marshal(m)
			out = append(out, string(b))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
