package models

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath finds ../shared/testdata/modelpack/config-schema.json next to
// the repository root.
func schemaPath(t *testing.T) string {
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
			t.Skip("repository root not found")
		}
		dir = parent
	}
	p := filepath.Join(filepath.Dir(dir), "shared", "testdata", "modelpack", "config-schema.json")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("ModelPack config schema absent (%s): skipping schema validation", p)
	}
	return p
}

// TestConfigMatchesSchema validates every config cairn writes against the
// official ModelPack config schema.
func TestConfigMatchesSchema(t *testing.T) {
	raw, err := os.ReadFile(schemaPath(t))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("config-schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("config-schema.json")
	if err != nil {
		t.Fatal(err)
	}

	reg := newRegistry(t, nil)
	src := writeTree(t, sampleModel)
	for name, opts := range map[string]PushOptions{
		"bare": {},
		"full": {Name: "bearing-anomaly", Version: "1.4.0", Format: "onnx",
			TrainedOn: map[string]string{"bearing-vibration": "sha256:" + string(bytes.Repeat([]byte("b"), 64))},
			Source:    "https://git.example/ml/bearing", Revision: "0123abc", Annotations: map[string]string{"team": "ml"},
			Created: time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Push(bg, reg+"/schema/m:"+name, []string{src}, opts)
			if err != nil {
				t.Fatal(err)
			}
			a, err := Inspect(bg, res.Ref, Options{})
			if err != nil {
				t.Fatal(err)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(a.Config))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("config %s does not match the ModelPack schema: %v", a.Config, err)
			}
		})
	}
	// The schema is strict: an unknown field fails, so the test can fail.
	bad, _ := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(`{"descriptor":{"nope":1},"config":{},"modelfs":{"type":"layers","diffIds":["sha256:x"]}}`)))
	if sch.Validate(bad) == nil {
		t.Error("schema accepted an unknown field")
	}
}
