package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestModelPushPreset: --preset kitops is --layer-format kitops; a preset
// and another layer format, or an unknown preset, are refused before
// anything is pushed.
func TestModelPushPreset(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--preset", "kitops", "--layer-format", "tar"}, "give one"},
		{[]string{"--preset", "modctl"}, `--preset "modctl": want kitops`},
		{[]string{"--layer-format", "zip"}, `layer format "zip"`},
	} {
		cmd := newRootCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append([]string{"model", "push", "127.0.0.1:1/m:1", dir, "--plain-http"}, tc.args...))
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
