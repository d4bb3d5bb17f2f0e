package policies_test

import (
	"testing"
	"testing/fstest"

	"github.com/cairn-dev/cairn/policies"
)

func TestRepoFS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		repo  fstest.MapFS
		files int // -1: no policies
		err   bool
	}{
		{"folder", fstest.MapFS{"policies/a.rego": {}, "policies/a_test.rego": {}, "b.rego": {}}, 2, false},
		{"none", fstest.MapFS{"b.rego": {}}, -1, false},
		{"a file named policies", fstest.MapFS{"policies": {Data: []byte("x")}}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := policies.RepoFS(tc.repo)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if tc.err {
				return
			}
			if tc.files < 0 {
				if sub != nil {
					t.Fatal("policies found where there are none")
				}
				return
			}
			es, _ := fstest.MapFS(tc.repo).ReadDir("policies")
			if sub == nil || len(es) != tc.files {
				t.Fatalf("sub %v, %d files", sub, len(es))
			}
		})
	}
}
