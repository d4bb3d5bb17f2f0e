package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// TestServeRefusesReadableCredentialsFile: --repo-credentials-file (and
// CAIRN_REPO_CREDENTIALS_FILE) reach serve, which refuses a file others
// can read before it opens anything.
func TestServeRefusesReadableCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	cred := dir + "/git-credentials"
	writeFile(t, cred, "deploy:secret\n")
	os.Chmod(cred, 0o640)
	_, err := runCairn(t, "serve", "--data", dir+"/data", "--listen", "127.0.0.1:0", "--repo", "http://127.0.0.1:1/repo.git", "--repo-credentials-file", cred)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+cred) {
		t.Fatalf("serve --repo-credentials-file with a 0640 file: %v", err)
	}
	t.Setenv("CAIRN_REPO_CREDENTIALS_FILE", cred)
	if _, err := runCairn(t, "serve", "--data", dir+"/data", "--listen", "127.0.0.1:0", "--repo", "http://127.0.0.1:1/repo.git"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("serve with CAIRN_REPO_CREDENTIALS_FILE of a 0640 file: %v", err)
	}
	if _, err := os.Stat(dir + "/data"); err == nil {
		t.Fatal("serve made its data folder before refusing")
	}
}

// TestServeMemoryLimitFlag: a --memory-limit that does not parse stops
// serve, unless GOMEMLIMIT is set: that wins, and the flag is warned about.
func TestServeMemoryLimitFlag(t *testing.T) {
	var out strings.Builder
	log := slog.New(slog.NewTextHandler(&out, nil))
	t.Setenv("GOMEMLIMIT", "")
	if err := setServeMemoryLimit("lots", log); err == nil {
		t.Error("--memory-limit lots without GOMEMLIMIT: no error")
	}
	before := debug.SetMemoryLimit(-1)
	t.Setenv("GOMEMLIMIT", "300MiB") // the runtime read it at start; Set leaves the limit alone
	if err := setServeMemoryLimit("lots", log); err != nil {
		t.Errorf("--memory-limit lots with GOMEMLIMIT set: %v", err)
	}
	if !strings.Contains(out.String(), "--memory-limit ignored: GOMEMLIMIT is set") {
		t.Errorf("log %q, want a warning about the flag", out.String())
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit changed to %d", got)
	}
}
