package agent_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeviceAgentLinksNoClientGo: the kube driver (fleet/agent/kube) is
// registered by cmd/cairn only, so neither fleet/agent nor the device agent
// binary cmd/cairn-agent (once it exists) links k8s.io/client-go.
func TestDeviceAgentLinksNoClientGo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	pkgs := []string{"./fleet/agent"}
	if _, err := os.Stat(filepath.Join("..", "..", "cmd", "cairn-agent")); err == nil {
		pkgs = append(pkgs, "./cmd/cairn-agent")
	} else {
		t.Log("no cmd/cairn-agent in this tree: checking fleet/agent only")
	}
	for _, p := range pkgs {
		cmd := exec.Command("go", "list", "-deps", p)
		cmd.Dir = filepath.Join("..", "..")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", p, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "k8s.io/client-go") || strings.HasSuffix(dep, "/fleet/agent/kube") {
				t.Errorf("%s links %s: the kube driver must stay out of the device agent", p, dep)
			}
		}
	}
}
