package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// runCairn runs the root command with args and returns stdout and the error.
func runCairn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// A release selecting a device too small for its model: fits-device denies,
// cairn plan prints the whole plan, names the device and the reason, and
// exits 2.
func TestPlanDeniesTooSmallDevice(t *testing.T) {
	repo := "../../reconciler/plan/testdata/repos/fleet"
	for _, format := range []string{"markdown", "json"} {
		out, err := runCairn(t, "plan", repo, "--no-base", "--no-registry", "--inventory", repo+"/inventory.yaml", "-o", format)
		if exitCode(err) != 2 {
			t.Fatalf("%s: exit %d (%v), want 2", format, exitCode(err), err)
		}
		if !strings.Contains(err.Error(), "pump-classifier-edge") {
			t.Errorf("error %q does not name the release", err)
		}
		if !strings.Contains(out, "target pi-04: memory 192Mi is below the model's requires.memory 256Mi") {
			t.Errorf("%s output lacks the device and reason:\n%s", format, out)
		}
		if format == "json" {
			var p struct {
				Denied   bool
				Releases []struct {
					Name  string
					Waves []struct {
						Percent int
						Targets []string
					}
					Unfit    []struct{ Target, Reason string }
					Verdicts []struct{ Policy, Result, Message string }
				}
			}
			if err := json.Unmarshal([]byte(out), &p); err != nil {
				t.Fatal(err)
			}
			if !p.Denied || len(p.Releases) != 2 {
				t.Fatalf("json plan: %+v", p)
			}
		}
	}
}

func TestPlanAllowedExitsZero(t *testing.T) {
	repo := "../../reconciler/plan/testdata/repos/fleet-base"
	out, err := runCairn(t, "plan", repo, "--no-base", "--no-registry")
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	if !strings.Contains(out, "✅ **allowed**") {
		t.Errorf("output:\n%s", out)
	}
}

func TestPlanFlagErrors(t *testing.T) {
	repo := "../../reconciler/plan/testdata/repos/fleet"
	for _, args := range [][]string{
		{"plan", repo, "--inventory", "x", "--server", "http://127.0.0.1:1"},
		{"plan", repo, "-o", "yaml"},
		{"plan", repo, "--inventory", "does-not-exist.yaml"},
	} {
		if _, err := runCairn(t, args...); exitCode(err) != 1 {
			t.Errorf("%v: exit %d (%v), want 1", args, exitCode(err), err)
		}
	}
}

func TestPolicyTest(t *testing.T) {
	out, err := runCairn(t, "policy", "test", "../../reconciler/plan/testdata/repos/fleet")
	if err != nil {
		t.Fatalf("policy test: %v\n%s", err, out)
	}
	if !strings.Contains(out, "PASS: 2/2") || !strings.Contains(out, "# built-in library") {
		t.Errorf("output:\n%s", out)
	}
	dir := t.TempDir()
	os.Mkdir(dir+"/policies", 0o755)
	writeFile(t, dir+"/policies/bad_test.rego", "package cairn.bad_test\ntest_fails if { 1 == 2 }\n")
	out, err = runCairn(t, "policy", "test", dir, "--no-builtins")
	if exitCode(err) != 1 || !strings.Contains(out, "FAIL: 1/1") {
		t.Errorf("failing test: exit %d, output:\n%s", exitCode(err), out)
	}
	// Rego files outside policies/ are neither tested nor, by plan and
	// serve, evaluated: one rule for where policies live.
	other := t.TempDir()
	writeFile(t, other+"/bad_test.rego", "package cairn.bad_test\ntest_fails if { 1 == 2 }\n")
	if _, err := runCairn(t, "policy", "test", other, "--no-builtins"); exitCode(err) == 1 {
		t.Errorf("policy test read %s/bad_test.rego outside policies/", other)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
