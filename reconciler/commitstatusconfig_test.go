package reconciler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommitStatusConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // provider name, address, repository per entry
		err        string
	}{
		{"github and self-hosted gitlab", `commitStatuses:
- {provider: github, repository: acme/models, tokenFile: /run/secrets/github}
- {provider: gitlab, address: "https://gitlab.acme/api/v4", repository: ml/edge, tokenFile: /run/secrets/gitlab}
`, []string{"github https://api.github.com acme/models", "gitlab https://gitlab.acme/api/v4 ml/edge"}, ""},
		{"two of one provider, named", `commitStatuses:
- {name: public, provider: github, repository: acme/models, tokenFile: t}
- {name: ghe, provider: github, address: "https://ghe.acme/api/v3", repository: ml/models, tokenFile: t}
`, []string{"public https://api.github.com acme/models", "ghe https://ghe.acme/api/v3 ml/models"}, ""},
		{"two unnamed", `commitStatuses:
- {provider: github, repository: acme/a, tokenFile: t}
- {provider: github, repository: acme/b, tokenFile: t}
`, nil, "the name is taken"},
		{"unknown provider", "commitStatuses: [{provider: gitea, repository: a/b, tokenFile: t}]\n", nil, "want github or gitlab"},
		{"no token", "commitStatuses: [{provider: github, repository: a/b}]\n", nil, "tokenFile is required"},
		{"unknown field", "commitStatuses: [{provider: github, repository: a/b, token: x}]\n", nil, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "serve.yaml")
			os.WriteFile(p, []byte(tc.yaml), 0o644)
			c, err := LoadConfig(p)
			if err == nil {
				err = c.Check()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("config: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range c.CommitStatuses {
				got = append(got, s.Name+" "+s.Address+" "+s.Repository)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("providers %q, want %q", got, tc.want)
			}
		})
	}
}
