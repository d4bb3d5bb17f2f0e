// Package schematest finds and compiles the official JSON schemas kept in
// ../shared/testdata next to the repository, skipping a test when they are
// absent.
package schematest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Path returns the path of rel (e.g. "openlineage/OpenLineage.json") in
// ../shared/testdata relative to the repository root (the folder holding
// go.mod), or skips the test when the file is absent.
func Path(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
	p := filepath.Join(filepath.Dir(dir), "shared", "testdata", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("schema %s not found (it ships with the shared test data): %v", rel, err)
	}
	return p
}

// Compile compiles the self-contained schema rel from the shared test data,
// asserting formats, or skips the test when the file is absent.
func Compile(t testing.TB, rel string) *jsonschema.Schema {
	t.Helper()
	raw, err := os.ReadFile(Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	name := filepath.Base(rel)
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(name)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}
