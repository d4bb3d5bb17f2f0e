package device

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstall runs install.sh into a scratch root (DESTDIR, NO_START=1):
// the binary, the unit and the env file land with their modes, the token
// only in the 0600 env file, and bad arguments are refused.
func TestInstall(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dest := t.TempDir()
	bin := filepath.Join(t.TempDir(), "cairn-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho agent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command("sh", append([]string{"install.sh"}, args...)...)
		cmd.Env = append(os.Environ(), "DESTDIR="+dest, "NO_START=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("--server", "https://cairn.example:7480", "--enroll-token", "s3cret", "--binary", bin,
		"--args", "--labels site=lab"); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{"usr/local/bin/cairn-agent", 0o755},
		{"etc/systemd/system/cairn-agent.service", 0o644},
		{"etc/cairn-agent/env", 0o600},
		{"etc/cairn-agent", 0o700 | os.ModeDir},
		{"var/lib/cairn-agent", 0o700 | os.ModeDir},
	} {
		fi, err := os.Stat(filepath.Join(dest, c.path))
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if fi.Mode()&(os.ModeDir|os.ModePerm) != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	env, _ := os.ReadFile(filepath.Join(dest, "etc/cairn-agent/env"))
	for _, want := range []string{"CAIRN_SERVER=https://cairn.example:7480\n", "CAIRN_ENROLL_TOKEN=s3cret\n", "CAIRN_AGENT_ARGS=--labels site=lab\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("env file lacks %q:\n%s", want, env)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/cairn-agent.service"))
	if strings.Contains(string(unit), "s3cret") || !strings.Contains(string(unit), "EnvironmentFile=/etc/cairn-agent/env") {
		t.Errorf("unit:\n%s", unit)
	}
	for _, bad := range [][]string{
		{"--enroll-token", "t", "--binary", bin},
		{"--server", "s", "--binary", bin},
		{"--server", "s", "--enroll-token", "t", "--binary", filepath.Join(dest, "missing")},
		{"--server", "s\nEVIL=1", "--enroll-token", "t", "--binary", bin},
	} {
		if out, err := run(bad...); err == nil {
			t.Errorf("install.sh %q succeeded:\n%s", bad, out)
		}
	}
}
