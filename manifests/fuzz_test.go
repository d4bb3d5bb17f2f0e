package manifests_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cairn-dev/cairn/manifests"
)

// FuzzLoad feeds arbitrary bytes to the decoder as one manifest file. It must
// never panic, must fail only with an ErrorList whose lines are in the file,
// and what it accepts must validate again unchanged.
func FuzzLoad(f *testing.F) {
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(p) != ".yaml" && filepath.Ext(p) != ".yml") {
			return err
		}
		data, err := os.ReadFile(p)
		// Large seeds (the alias fan-out) make every mutation slow; a small
		// fan-out below stands in for them.
		if err == nil && len(data) <= 4<<10 {
			f.Add(data)
		}
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("apiVersion: cairn.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec:\n  evaluatedOn:\n    - &e {dataset: d, metrics: {a: 1, b: 2}}\n    - *e\n    - *e\n  trainedOn: &t [*t]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := manifests.Load(fstest.MapFS{"a.yaml": {Data: data}})
		if err != nil {
			var list manifests.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load returned %T %v, want an ErrorList", err, err)
			}
			lines := yamlLines(data)
			for _, e := range list {
				if e.File != "a.yaml" || e.Line < 1 || e.Line > lines || e.Message == "" {
					t.Fatalf("error out of place (file has %d lines): %q", lines, e.Error())
				}
			}
			return
		}
		again, err := manifests.Validate(snap.Objects())
		if err != nil {
			t.Fatalf("accepted snapshot does not validate again: %v", err)
		}
		if again.Len() != snap.Len() {
			t.Fatalf("Validate kept %d of %d objects", again.Len(), snap.Len())
		}
	})
}

// yamlLines counts lines the way YAML does: \r\n, \r, \n, NEL, LS and PS
// each end one.
func yamlLines(data []byte) int {
	s := string(data)
	s = strings.ReplaceAll(s, "\r\n", "\n")
	n := 1
	for _, sep := range []string{"\r", "\n", "\u0085", "\u2028", "\u2029"} {
		n += strings.Count(s, sep)
	}
	return n
}
