package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDataFormat: data push and pull take --format text|json; push's -o
// json keeps meaning the format, pull's -o stays the folder.
func TestDataFormat(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "train.csv"), []byte("a,b\n1,2\n"), 0o644)
	os.MkdirAll(filepath.Join(src, "more"), 0o755)
	os.WriteFile(filepath.Join(src, "more", "labels.txt"), []byte("x\ny\n"), 0o644)
	store := "file://" + t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		cmd := newRootCmd()
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	digest := regexp.MustCompile(`sha256:[0-9a-f]{64}`)

	var pushed struct {
		Digest string `json:"digest"`
		Files  int    `json:"files"`
		Bytes  int64  `json:"bytes"`
	}
	for _, args := range [][]string{
		{"data", "push", src, "--store", store, "--format", "json"},
		{"data", "push", src, "--store", store, "-o", "json"},
		{"data", "push", src, "--store", store, "--format", "json", "-o", "json"},
	} {
		out, err := run(args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if err := json.Unmarshal([]byte(out), &pushed); err != nil || !digest.MatchString(pushed.Digest) || pushed.Files != 2 || pushed.Bytes != 12 {
			t.Fatalf("%v: %q (%v)", args, out, err)
		}
	}
	out, err := run("data", "push", src, "--store", store, "--format", "text")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 2 || lines[1] != pushed.Digest || !strings.HasPrefix(lines[0], "2 files") {
		t.Fatalf("push --format text: %q %v", out, err)
	}
	if _, err := run("data", "push", src, "--store", store, "--format", "xml"); err == nil || !strings.Contains(err.Error(), "want text or json") {
		t.Errorf("push --format xml: %v", err)
	}
	if _, err := run("data", "push", src, "--store", store, "--format", "text", "-o", "json"); err == nil {
		t.Error("push --format text -o json: no error")
	}

	dir := filepath.Join(t.TempDir(), "restored")
	out, err = run("data", "pull", pushed.Digest, "--store", store, "-o", dir, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var pulled DataPullResult
	if err := json.Unmarshal([]byte(out), &pulled); err != nil || pulled != (DataPullResult{Digest: pushed.Digest, Dir: dir, Files: 2, Bytes: 12}) {
		t.Fatalf("pull --format json: %q (%v)", out, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "more", "labels.txt")); string(b) != "x\ny\n" {
		t.Errorf("restored labels.txt: %q", b)
	}
	out, err = run("data", "pull", pushed.Digest, "--store", store, "-o", t.TempDir())
	if err != nil || !strings.HasPrefix(out, "pulled "+pushed.Digest+": 2 files") {
		t.Errorf("pull (text): %q %v", out, err)
	}
	if _, err := run("data", "pull", pushed.Digest, "--store", store, "-o", t.TempDir(), "--format", "xml"); err == nil {
		t.Error("pull --format xml: no error")
	}
}
