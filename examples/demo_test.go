package examples

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs scripts/demo.sh against a freshly built bin/cairn: the whole
// demo (serve, pushes, 6 agents, waves, the rollback, lineage) must exit 0
// within 5 minutes and leave no process behind. Skipped with -short or
// CAIRN_SKIP_DEMO=1.
func TestDemo(t *testing.T) {
	if testing.Short() || os.Getenv("CAIRN_SKIP_DEMO") != "" {
		t.Skip("the demo takes about a minute: skipped with -short or CAIRN_SKIP_DEMO")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cairn := filepath.Join(tmp, "cairn")
	build := exec.Command("go", "build", "-o", cairn, "./cmd/cairn")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cairn: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	demoTmp := filepath.Join(tmp, "demo")
	cmd := exec.CommandContext(ctx, "bash", "scripts/demo.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CAIRN_BIN="+cairn, "CAIRN_TMP="+demoTmp,
		"CAIRN_DEMO_LOGS="+filepath.Join(tmp, "logs"), "CAIRN_KEEP_TMP=")
	// On timeout, TERM lets the script stop what it started; KILL 20s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("scripts/demo.sh ran %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("scripts/demo.sh: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"cairn serve: https://",          // over TLS, with the demo's CA
		"curl --cacert",                  // how to trust it
		"AUC 0.98",                       // v1 on the holdout split
		"wave 3 of 3 started",            // prod's waves
		"v1 is live on all 6 devices",    //
		"bearing-anomaly 1.0.0 answered", // the runtime's /predict
		"model self-test failed",         // v2's health check, in the deployment log
		"event RolledBack",               //
		"every device runs v1 again",     //
		"TRAINED ON",                     // the lineage answer
		"below the champion's 0.98",      // v2's evaluation verdict against v1
		"demo finished",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if left := processesUnder(demoTmp); len(left) > 0 {
		t.Errorf("processes left running after the demo: %v", left)
	}
	if t.Failed() {
		t.Log(out.String())
	}
}

// processesUnder lists processes whose command line mentions dir.
func processesUnder(dir string) []string {
	var left []string
	pids, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		left = append(left, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return left
}
