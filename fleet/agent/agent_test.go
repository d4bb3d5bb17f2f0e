package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

func TestInstallActivateAndServerRollback(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": "", "shared.bin": strings.Repeat("s", 1<<16)})
	v2 := pushModel(t, reg, "2", map[string]string{"model.onnx": "weights v2", "ok": "", "shared.bin": strings.Repeat("s", 1<<16)})
	root := t.TempDir()
	runtimePath := filepath.Join(t.TempDir(), "serving")
	for _, m := range []*fleet.DesiredModel{&v1, &v2} {
		m.Runtime = fleet.Runtime{Path: runtimePath, HealthCheck: healthExec("ok")}
	}
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)

	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	wantActive(t, root, v1.Digest)
	if b, err := os.ReadFile(filepath.Join(runtimePath, "model.onnx")); err != nil || string(b) != "weights v1" {
		t.Fatalf("runtime path serves %q, %v", b, err)
	}
	if got := api.phases("demo"); !slices.Equal(got, []string{"Downloading", "Installing", "Verifying", "Healthy"}) {
		t.Fatalf("phases %v", got)
	}

	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}}); err != nil {
		t.Fatal(err)
	}
	wantActive(t, root, v2.Digest)
	if got := readLink(t, filepath.Join(root, "models/demo/previous")); got != "slots/"+slotName(v1.Digest) {
		t.Fatalf("previous -> %s", got)
	}
	if s := api.last("demo"); s.Phase != fleet.PhaseHealthy || s.Digest != v2.Digest || s.Previous != v1.Digest {
		t.Fatalf("status %+v", s)
	}
	// The shared layer came from the cache: one blob for it.
	// The server rolls back: the previous slot is switched back without a download.
	n := len(api.reports)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	wantActive(t, root, v1.Digest)
	if s := api.last("demo"); s.Phase != fleet.PhaseRolledBack || s.Digest != v1.Digest {
		t.Fatalf("status %+v", s)
	}
	for _, r := range api.reports[n:] {
		for _, s := range r.Releases {
			if s.Phase == fleet.PhaseDownloading {
				t.Fatal("rollback downloaded again")
			}
		}
	}
}

func TestHealthFailureSwitchesBack(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": ""})
	v2 := pushModel(t, reg, "2", map[string]string{"model.onnx": "weights v2 (broken)"})
	v1.Runtime.HealthCheck, v2.Runtime.HealthCheck = healthExec("ok"), healthExec("ok")
	v2.Rollout = "r-1"
	root := t.TempDir()
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}}); err != nil {
		t.Fatal(err)
	}
	wantActive(t, root, v1.Digest)
	s := api.last("demo")
	if s.Phase != fleet.PhaseFailed || s.Digest != v1.Digest || s.Desired != v2.Digest || !strings.Contains(s.Message, "switched back") {
		t.Fatalf("status %+v", s)
	}
	// Same rollout: not retried.
	n := len(api.reports)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}}); err != nil {
		t.Fatal(err)
	}
	if len(api.reports) != n {
		t.Fatalf("failed digest retried in the same rollout: %v", api.phases("demo"))
	}
	// The server rolls the release back: RolledBack on v1.
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	if s := api.last("demo"); s.Phase != fleet.PhaseRolledBack || s.Digest != v1.Digest {
		t.Fatalf("status %+v", s)
	}
	// A retried rollout tries again.
	v2.Rollout = "r-2"
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}}); err != nil {
		t.Fatal(err)
	}
	if s := api.last("demo"); s.Phase != fleet.PhaseFailed || s.Desired != v2.Digest {
		t.Fatalf("status %+v", s)
	}
}

func TestFirstInstallFailingHealthLeavesNoModel(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights"})
	v1.Runtime.HealthCheck = healthExec("missing")
	root := t.TempDir()
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	wantActive(t, root, "")
	if s := api.last("demo"); s.Phase != fleet.PhaseFailed {
		t.Fatalf("status %+v", s)
	}
}

func TestRegistryDownAndBadDigest(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights", "ok": ""})
	root := t.TempDir()
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}

	down := v1
	down.Digest = "sha256:" + strings.Repeat("0", 64)
	down.Artifact = "127.0.0.1:1/models/demo@" + down.Digest
	err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{down}})
	if err == nil {
		t.Fatal("registry down: no error to retry")
	}
	// Retried until the downloadTimeout: the target is Downloading with
	// the last error, not failed.
	s := api.last("demo")
	if s.Phase != fleet.PhaseDownloading || !strings.Contains(s.Message, "retrying: download 127.0.0.1:1/models/demo") || !strings.Contains(s.Message, "connection refused") {
		t.Fatalf("status %+v", s)
	}
	wantActive(t, root, v1.Digest)
	// Past the timeout the install fails, saying why, and is not retried
	// in this rollout.
	down.DownloadTimeout = time.Millisecond
	time.Sleep(2 * time.Millisecond)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{down}}); err != nil {
		t.Fatalf("timed out: %v", err)
	}
	if s := api.last("demo"); s.Phase != fleet.PhaseFailed || !strings.Contains(s.Message, "download timed out") || !strings.Contains(s.Message, "connection refused") {
		t.Fatalf("status %+v", s)
	}
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{down}}); err != nil {
		t.Fatalf("retried after the timeout: %v", err)
	}
	wantActive(t, root, v1.Digest)

	// A manifest the registry does not have (yet: pushed late, or a
	// replica behind) is retried like an outage.
	bad := v1
	bad.Digest = "sha256:" + strings.Repeat("e", 64)
	bad.Artifact = strings.Replace(v1.Artifact, v1.Digest, bad.Digest, 1)
	_ = a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{bad}})
	if s := api.last("demo"); s.Phase != fleet.PhaseDownloading || s.Digest != v1.Digest || !strings.Contains(s.Message, "MANIFEST_UNKNOWN") {
		t.Fatalf("status %+v", s)
	}
	wantActive(t, root, v1.Digest)
	ents, _ := os.ReadDir(filepath.Join(root, "models/demo/slots"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), strings.Repeat("e", 12)) && !strings.HasSuffix(e.Name(), ".partial") {
			t.Fatalf("slot of a bad digest installed: %s", e.Name())
		}
	}
}

func TestCrashAtEveryStepRecovers(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": ""})
	v2 := pushModel(t, reg, "2", map[string]string{"model.onnx": "weights v2", "ok": ""})
	v1.Runtime.HealthCheck, v2.Runtime.HealthCheck = healthExec("ok"), healthExec("ok")
	for _, step := range []string{stepDownloading, stepActivating, stepVerifying} {
		t.Run(step, func(t *testing.T) {
			root := t.TempDir()
			api := newMemAPI()
			a := newTestAgent(t, root, api, nil)
			if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
				t.Fatal(err)
			}
			crash := errors.New("crash")
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			// Crash right after the step has done its work: before the
			// next step starts (verifying: while the new slot is active).
			next := map[string]string{stepDownloading: stepActivating, stepActivating: stepVerifying, stepVerifying: ""}[step]
			b := newTestAgent(t, root, api, func(c *Config) {
				c.Hooks.Step = func(_, s string) error {
					if s == next {
						return crash
					}
					return nil
				}
				if next == "" {
					// Killed while the health check runs, the new slot active.
					c.Hooks.Health = func(context.Context, string, string, string, func() error) error {
						if ActiveDigest(root, "demo") != v2.Digest {
							t.Error("health check runs before the new slot is active")
						}
						cancel()
						return ctx.Err()
					}
				}
			})
			_ = b.Apply(ctx, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}})
			c := newTestAgent(t, root, api, nil)
			if err := c.Recover(bg); err != nil {
				t.Fatal(err)
			}
			wantActive(t, root, v1.Digest)
			if err := c.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}}); err != nil {
				t.Fatal(err)
			}
			wantActive(t, root, v2.Digest)
		})
	}
}

func TestRunOfflineThenCatchUp(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1"})
	v2 := pushModel(t, reg, "2", map[string]string{"model.onnx": "weights v2"})
	root := t.TempDir()
	api := newMemAPI()
	api.set(v1)
	a := newTestAgent(t, root, api, nil)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, func() bool { return ActiveDigest(root, "demo") == v1.Digest })
	api.setOffline(true)
	api.set(v2)
	time.Sleep(300 * time.Millisecond)
	wantActive(t, root, v1.Digest)
	api.setOffline(false)
	waitFor(t, func() bool {
		return api.last("demo").Digest == v2.Digest && api.last("demo").Phase == fleet.PhaseHealthy
	})
	wantActive(t, root, v2.Digest)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The identity is kept, 0600, and reused.
	fi, err := os.Stat(filepath.Join(root, "identity.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", fi, err)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParseRuntimeMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       map[string]float64
	}{
		{"json", `{"error_rate":0.02,"latency_p95_ms":12.5,"requests":10,"model":"x","features":{"rms":{"count":3,"mean":1}}}`,
			map[string]float64{"error_rate": 0.02, "latency_p95_ms": 12.5, "requests": 10}},
		{"prometheus", "# HELP x\nbearing_error_rate 0.5\nbearing_latency_p95_ms 40\nbearing_model_info{model=\"m\"} 1\n",
			map[string]float64{"bearing_error_rate": 0.5, "error_rate": 0.5, "bearing_latency_p95_ms": 40, "latency_p95_ms": 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, err := ParseRuntimeMetrics([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if m[k] != v {
					t.Errorf("%s = %v, want %v (all %v)", k, m[k], v, m)
				}
			}
		})
	}
}

func FuzzParseRuntimeMetrics(f *testing.F) {
	f.Add([]byte(`{"error_rate":1}`))
	f.Add([]byte("a 1\nb{x=\"y\"} 2\n"))
	f.Fuzz(func(t *testing.T, b []byte) { ParseRuntimeMetrics(b) })
}

func TestRestartCommandAndOneAgentPerRoot(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1"})
	marker := filepath.Join(t.TempDir(), "restarted")
	v1.Runtime.Restart = []string{"sh", "-c", `echo "$CAIRN_MODEL_DIR" >> ` + marker}
	root := t.TempDir()
	api := newMemAPI()
	api.set(v1)
	a := newTestAgent(t, root, api, nil)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, func() bool { return api.last("demo").Phase == fleet.PhaseHealthy })
	b, _ := os.ReadFile(marker)
	if want := a.SlotDir("demo", v1.Digest) + "\n"; string(b) != want {
		t.Fatalf("restart ran with %q, want %q", b, want)
	}
	second := newTestAgent(t, root, api, nil)
	if err := second.Run(bg); err == nil || !strings.Contains(err.Error(), "another agent runs") {
		t.Fatalf("second agent on one root: %v", err)
	}
	cancel()
	<-done
}

func TestLoadFactsFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "facts.json")
	os.WriteFile(p, []byte(`{"arch":"arm64","osVersion":"5.1","accelerators":["jetson-orin"],"timeZone":"Europe/Paris"}`), 0o644)
	f := fleet.Facts{Arch: "amd64", OS: "linux", CPUs: 8}
	if err := LoadFactsFile(p, &f); err != nil {
		t.Fatal(err)
	}
	if f.Arch != "arm64" || f.OS != "linux" || f.CPUs != 8 || f.OSVersion != "5.1" || f.Accelerators[0] != "jetson-orin" || f.TimeZone != "Europe/Paris" {
		t.Fatalf("facts %+v", f)
	}
	os.WriteFile(p, []byte(`{"archh":"arm64"}`), 0o644)
	if err := LoadFactsFile(p, &f); err == nil {
		t.Fatal("unknown field accepted")
	}
}

func FuzzLoadFactsFile(f *testing.F) {
	f.Add([]byte(`{"arch":"arm64","memory":1024}`))
	f.Add([]byte(`{`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "facts.json")
		os.WriteFile(p, b, 0o644)
		var facts fleet.Facts
		_ = LoadFactsFile(p, &facts)
	})
}

func TestRuntimePathResolution(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		runtimeRoot, path, want string
	}{
		{"", "", ""},
		{"", "/var/lib/cairn/models/x", "/var/lib/cairn/models/x"},
		{"/sim/dev1", "/var/lib/cairn/models/x", "/sim/dev1/var/lib/cairn/models/x"},
		{"", "serving/x", filepath.Join(root, "serving/x")},
	} {
		a := newTestAgent(t, root, newMemAPI(), func(c *Config) { c.RuntimeRoot = tc.runtimeRoot })
		if got := a.runtimePath(fleet.DesiredModel{Runtime: fleet.Runtime{Path: tc.path}}); got != tc.want {
			t.Errorf("runtimeRoot %q path %q: %q, want %q", tc.runtimeRoot, tc.path, got, tc.want)
		}
	}
}
