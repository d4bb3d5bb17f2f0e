package policies_test

import (
	"context"
	"fmt"
	"testing/fstest"

	"github.com/cairn-dev/cairn/policies"
)

func ExampleEngine_Evaluate() {
	repo := fstest.MapFS{
		"owner.rego": {Data: []byte(`package cairn.release_owner
deny contains sprintf("release %s has no owner label", [input.release.name]) if not input.release.labels.owner
`)},
	}
	eng, err := policies.Compile(context.Background(), repo)
	if err != nil {
		panic(err)
	}
	in := &policies.Input{
		Release: policies.ReleaseInput{Name: "bearing-prod"},
		Model:   policies.ModelInput{Name: "m", Artifact: "registry.example:5000/m:latest"},
	}
	verdicts, err := eng.Evaluate(context.Background(), []string{"digest-pinned"}, in)
	if err != nil {
		panic(err)
	}
	for _, v := range verdicts {
		fmt.Printf("%s %s: %s\n", v.Policy, v.Result, v.Message)
	}
	// Output:
	// digest-pinned deny: model m: artifact "registry.example:5000/m:latest" is not pinned by a sha256 digest (want host/repo@sha256:<64 hex>)
	// release-owner deny: release bearing-prod has no owner label
}
