package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// planRepo copies the fleet-base repository to a temporary folder and adds
// policies/NAME.rego, a deny rule with body, as a pull request would.
func planRepo(t *testing.T, name, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../reconciler/plan/testdata/repos/fleet-base")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir+"/policies", 0o755)
	writeFile(t, dir+"/policies/"+name+".rego", "package "+name+"\n\ndeny contains msg if {\n\t"+body+"\n\tmsg := sprintf(\"%v\", [x])\n}\n")
	return dir
}

// TestPlanSandboxRefusesNetwork is the policy probe of issue 14 through
// cairn plan, as CI runs it on a pull request: a policy calling http.send
// to a listener, net.lookup_ip_addr or opa.runtime fails to compile with an
// error naming the built-in, and the listener hears nothing.
func TestPlanSandboxRefusesNetwork(t *testing.T) {
	var hits atomic.Int32
	lis := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer lis.Close()
	for _, call := range []string{
		`http.send({"method": "DELETE", "url": "` + lis.URL + `/v2/models/m/manifests/latest"})`,
		`net.lookup_ip_addr("` + strings.TrimPrefix(lis.URL, "http://") + `")`,
		`opa.runtime()`,
	} {
		name := call[:strings.IndexByte(call, '(')]
		out, err := runCairn(t, "plan", planRepo(t, "evil", "x := "+call), "--no-base", "--no-registry")
		if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "built-in "+name+" is not allowed") || !strings.Contains(err.Error(), "evil.rego:4") {
			t.Errorf("%s: plan exit %d, error %v, want a compile error naming it\n%s", name, exitCode(err), err, out)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("a policy under cairn plan reached the listener %d times", n)
	}
}

// TestPlanSlowPolicyDenied: a policy iterating 25 million times is stopped
// at --policy-timeout and denies every release (exit 2), naming the
// timeout, instead of running on.
func TestPlanSlowPolicyDenied(t *testing.T) {
	dir := planRepo(t, "slow", "x := count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000); i == j + 100000])\n\tx >= 0")
	out, err := runCairn(t, "plan", dir, "--no-base", "--no-registry", "--policy-timeout", "1s")
	if exitCode(err) != 2 || !strings.Contains(out, "policy-timeout") || !strings.Contains(out, "not evaluated within 1s") {
		t.Fatalf("plan exit %d (%v), output:\n%s", exitCode(err), err, out)
	}
}
