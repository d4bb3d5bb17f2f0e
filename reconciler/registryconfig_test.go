package reconciler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRegistryConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       RegistryConfig
		err        string
	}{
		{"absent", "listen: 127.0.0.1:1\n", RegistryConfig{}, ""},
		{"external host", "registry: registry.example:5000\n", RegistryConfig{Host: "registry.example:5000"}, ""},
		{"section", "registry:\n  pull: token\n", RegistryConfig{Pull: "token"}, ""},
		{"anonymous", "registry:\n  pull: anonymous\n", RegistryConfig{Pull: "anonymous"}, ""},
		{"host in the section", "registry:\n  host: r.example\n", RegistryConfig{Host: "r.example"}, ""},
		{"bad pull", "registry:\n  pull: everyone\n", RegistryConfig{}, `registry.pull "everyone": want anonymous or token`},
		{"unknown field", "registry:\n  push: anonymous\n", RegistryConfig{}, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "serve.yaml")
			os.WriteFile(p, []byte(tc.yaml), 0o644)
			c, err := LoadConfig(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("LoadConfig: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || c.Registry != tc.want {
				t.Fatalf("LoadConfig: %+v, %v; want %+v", c.Registry, err, tc.want)
			}
		})
	}
}
