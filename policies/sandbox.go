package policies

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// EvalTimeout bounds the evaluation of one Release's policies unless
// WithEvalTimeout says otherwise.
const EvalTimeout = 5 * time.Second

// ErrEvalTimeout is returned (wrapped) by Evaluate when a Release's
// policies were not evaluated within the timeout.
var ErrEvalTimeout = errors.New("policy evaluation timed out")

// Option configures Compile.
type Option func(*Engine)

// WithEvalTimeout bounds the evaluation of one Release's policies (default
// EvalTimeout); zero or less keeps the default.
func WithEvalTimeout(d time.Duration) Option {
	return func(e *Engine) {
		if d > 0 {
			e.timeout = d
		}
	}
}

// Policies run sandboxed: they are compiled with OPA's capabilities minus
// every built-in that reaches outside the evaluation or whose answer is
// not a function of its input (http.send, net.*, opa.runtime, time.now_ns,
// rand.intn, uuid.rfc4122, ...), so a repository's policy (run by cairn
// serve and by `cairn plan` in CI) can neither call a server nor vary from
// one evaluation to the next. The clock is the input's `now`.

// forbiddenBuiltin reports whether policies may not call b.
func forbiddenBuiltin(b *ast.Builtin) bool {
	return b.Nondeterministic || strings.HasPrefix(b.Name, "net.") || b.Name == "opa.runtime" ||
		b.Name == "http.send"
}

// sandbox returns the capabilities policies compile with.
func sandbox() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := make([]*ast.Builtin, 0, len(caps.Builtins))
	for _, b := range caps.Builtins {
		if !forbiddenBuiltin(b) {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	caps.AllowNet = []string{} // no host at all
	return caps
}

// forbiddenNames are the built-ins sandbox leaves out, for error messages.
var forbiddenNames = func() map[string]bool {
	m := map[string]bool{}
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		if forbiddenBuiltin(b) {
			m[b.Name] = true
		}
	}
	return m
}()

// explainSandbox rewrites "undefined function http.send" compile errors to
// say the built-in is not allowed, naming it.
func explainSandbox(errs ast.Errors) error {
	for _, e := range errs {
		if name, ok := strings.CutPrefix(e.Message, "undefined function "); ok && forbiddenNames[name] {
			e.Message = fmt.Sprintf("built-in %s is not allowed in cairn policies (sandboxed: no network, clock, randomness or runtime; use input.now for the time)", name)
		}
	}
	return errs
}
