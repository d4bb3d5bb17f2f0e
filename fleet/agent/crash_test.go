package agent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// fileAPI is a fleet API read from a file, for the helper process of the
// SIGKILL test.
type fileAPI struct{ path string }

func (f fileAPI) Enroll(context.Context, fleet.EnrollRequest) (*fleet.EnrollResponse, error) {
	return &fleet.EnrollResponse{ID: "crash", Credential: "c"}, nil
}

func (f fileAPI) Desired(context.Context, string, string, string, time.Duration) (*fleet.DesiredState, bool, error) {
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, false, err
	}
	var ds fleet.DesiredState
	return &ds, true, json.Unmarshal(b, &ds)
}

func (f fileAPI) ReportStatus(context.Context, string, string, fleet.StatusReport) error { return nil }

const helperEnv = "CAIRN_AGENT_CRASH_HELPER"

// TestMain runs the install helper when re-executed by TestSIGKILLDuringInstall.
func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(runHelper(spec))
	}
	os.Exit(m.Run())
}

// runHelper installs the desired state of spec ("ROOT|DESIRED.json") once.
func runHelper(spec string) int {
	root, desired, _ := cutLast(spec, "|")
	api := fileAPI{desired}
	a, err := New(Config{Root: root, Name: "crash", EnrollToken: "t", API: api, Logf: func(string, ...any) {}})
	if err == nil {
		err = a.Recover(bg)
	}
	if err == nil {
		err = a.enroll(bg)
	}
	var ds *fleet.DesiredState
	if err == nil {
		ds, _, err = api.Desired(bg, "", "", "", 0)
	}
	if err == nil {
		fmt.Println("installing") // the parent's clock starts here
		err = a.Apply(bg, ds)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// TestSIGKILLDuringInstall kills an agent process at 20 random points of an
// install of v2 over v1 and checks that, recovered, v1 is active and intact
// each time, and that the next run completes the install.
func TestSIGKILLDuringInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary 20 times")
	}
	reg := newRegistry(t, 4*time.Millisecond)
	big := make([]byte, 1<<20)
	rand.Read(big)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": ""})
	v2 := pushModel(t, reg, "2", map[string]string{"model.onnx": "weights v2", "ok": "", "a.bin": string(big), "b.bin": string(big[:512<<10]) + "x"})
	v1.Runtime.HealthCheck, v2.Runtime.HealthCheck = healthExec("ok"), healthExec("ok")
	v1.Runtime.Path = "" // the links are enough here

	template := t.TempDir()
	a := newTestAgent(t, template, newMemAPI(), nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	desired := filepath.Join(t.TempDir(), "desired.json")
	b, _ := json.Marshal(fleet.DesiredState{Models: []fleet.DesiredModel{v2}})
	if err := os.WriteFile(desired, b, 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(root string, killAfter time.Duration) (completed bool, took time.Duration) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+root+"|"+desired)
		out := &prefixWriter{}
		cmd.Stderr = out
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the helper starts installing.
		line := make([]byte, 11)
		if _, err := io.ReadFull(stdout, line); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper did not start: %v: %s", err, out.b)
		}
		start := time.Now()
		go io.Copy(io.Discard, stdout)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if killAfter < 0 {
			err := <-exited
			if err != nil {
				t.Fatalf("helper: %v: %s", err, out.b)
			}
			return true, time.Since(start)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("helper: %v: %s", err, out.b)
			}
			return true, time.Since(start)
		case <-time.After(killAfter):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			err := <-exited
			var ee *exec.ExitError
			if err == nil {
				return true, time.Since(start)
			}
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			return false, time.Since(start)
		}
	}

	// Calibrate: how long a whole install takes.
	calib := copyRoot(t, template)
	_, full := run(calib, -1)
	wantActive(t, calib, v2.Digest)
	t.Logf("an uninterrupted install of v2 takes %s", full.Round(time.Millisecond))

	// Until 20 runs were killed mid-install (an install that finishes
	// before its kill point shortens the window for the next ones).
	killed := 0
	for i := 0; killed < 20 && i < 40; i++ {
		root := copyRoot(t, template)
		at := time.Duration(mrand.Int64N(int64(full)))
		completed, took := run(root, at)
		if completed {
			full = min(full, took)
		}
		// Even before recovery, current never points at a partial slot.
		if l := readLink(t, filepath.Join(root, "models/demo/current")); filepath.Ext(l) == ".partial" || l == "" {
			t.Fatalf("kill %d: current -> %q", i+1, l)
		}
		// Recover as the next start does, then check what serves.
		r, err := New(Config{Root: root, API: fileAPI{desired}, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Recover(bg); err != nil {
			t.Fatal(err)
		}
		var j journal
		jb, _ := os.ReadFile(filepath.Join(root, "journal.json"))
		_ = json.Unmarshal(jb, &j)
		// A kill that lands after the journal committed v2 (healthy) but
		// before the process exited finds the install complete: v2 is the
		// consistent state then, not v1.
		committed := j.Releases["demo"] != nil && j.Releases["demo"].Current == v2.Digest
		switch {
		case completed || committed:
			wantActive(t, root, v2.Digest)
			t.Logf("kill %2d at %s: install had completed (process exited: %v)", i+1, at.Round(time.Millisecond), completed)
		default:
			killed++
			wantActive(t, root, v1.Digest)
			if b, err := os.ReadFile(filepath.Join(root, "models/demo/current/model.onnx")); err != nil || string(b) != "weights v1" {
				t.Fatalf("kill %d: v1 slot damaged: %q %v", i+1, b, err)
			}
			t.Logf("kill %2d at %s: v1 active after recovery (journal step %q)", i+1, at.Round(time.Millisecond), j.Releases["demo"].Step)
		}
		// The next run completes the install.
		run(root, -1)
		wantActive(t, root, v2.Digest)
		if b, err := os.ReadFile(filepath.Join(root, "models/demo/current/a.bin")); err != nil || len(b) != len(big) {
			t.Fatalf("kill %d: v2 incomplete after the next run: %d bytes, %v", i+1, len(b), err)
		}
	}
	if killed < 20 {
		t.Fatalf("only %d runs were killed mid-install", killed)
	}
}

type prefixWriter struct{ b []byte }

func (p *prefixWriter) Write(b []byte) (int, error) { p.b = append(p.b, b...); return len(b), nil }

// copyRoot copies an agent root, keeping symlinks as links.
func copyRoot(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, _ := d.Info()
			return os.WriteFile(to, b, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
