package models

import (
	"bytes"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cairn-dev/cairn/internal/schematest"
)

// TestConfigMatchesSchema validates every config cairn writes against the
// official ModelPack config schema.
func TestConfigMatchesSchema(t *testing.T) {
	sch := schematest.Compile(t, "modelpack/config-schema.json")

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
