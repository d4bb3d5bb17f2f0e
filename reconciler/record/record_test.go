package record_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/reconciler/record"
)

// fixture reads a record written by the code before this package
// (testdata/v0, made by the reconciler of 2 December 2026).
func fixture(t *testing.T, name string) record.Columns {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "v0", name))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Name, Commit        string
		Spec, State, Status json.RawMessage
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return record.Columns{Name: f.Name, Commit: f.Commit, Spec: f.Spec, State: f.State, Status: f.Status}
}

func TestDecodePreviousRecords(t *testing.T) {
	at := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		file         string
		admitted     bool
		phase        string
		denied       string
		healthySince bool
	}{
		{"healthy.json", true, "Succeeded", "", true},
		{"denied-keeps-v1.json", true, "Succeeded", "version 1.0.9 is banned", true},
		{"never-admitted.json", false, "Denied", "version 1.0.9 is banned", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := fixture(t, tc.file)
			r := record.Decode(c, at)
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if (r.Admitted != nil) != tc.admitted || r.Status.Phase != tc.phase || !strings.Contains(r.Status.Denied, tc.denied) ||
				(r.Status.HealthySince != nil) != tc.healthySince || !r.UpdatedAt.Equal(at) || r.Status.Name != "r" {
				t.Fatalf("decoded %+v", r)
			}
			if tc.admitted && (r.Rollout.Target.Digest == "" || r.Admitted.Model.Spec.Artifact == "" || r.Commit() != c.Commit) {
				t.Fatalf("admitted snapshot lost: %+v", r)
			}
			// Encoding what was decoded and decoding again gives the same.
			again, err := record.Encode(r)
			if err != nil {
				t.Fatal(err)
			}
			r2 := record.Decode(again, at)
			if a, b := jsonOf(r), jsonOf(r2); r2.Err != nil || a != b {
				t.Fatalf("re-encoded record differs: %v\n%s\n%s", r2.Err, a, b)
			}
		})
	}
}

func TestUndecodableStalls(t *testing.T) {
	good := fixture(t, "healthy.json")
	for name, c := range map[string]record.Columns{
		"spec not JSON":      {Name: "r", Spec: []byte(`{"commit":`), State: good.State, Status: good.Status},
		"spec of another":    {Name: "other", Spec: good.Spec, State: good.State, Status: good.Status},
		"state wrong type":   {Name: "r", Spec: good.Spec, State: []byte(`{"wave":"two"}`), Status: good.Status},
		"status trailing":    {Name: "r", Spec: good.Spec, State: good.State, Status: append(append([]byte{}, good.Status...), []byte(` {}`)...)},
		"spec without model": {Name: "r", Spec: []byte(`{"commit":"c","release":{"metadata":{"name":"r"}}}`)},
	} {
		t.Run(name, func(t *testing.T) {
			r := record.Decode(c, time.Now())
			if r.Err == nil {
				t.Fatalf("decoded %+v", r)
			}
			var stalled bool
			for _, cond := range r.Status.Conditions {
				stalled = stalled || cond.Type == "Stalled" && cond.Status == "True" && cond.Reason == record.ReasonUndecodable && strings.Contains(cond.Message, "does not decode")
			}
			if !stalled || r.Status.Name != c.Name || r.Admitted != nil {
				t.Fatalf("status %+v: want a Stalled %s condition", r.Status, record.ReasonUndecodable)
			}
		})
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// FuzzDecode: any stored bytes decode to a record or to a stalled one, and a
// record that decodes encodes and decodes again to the same.
func FuzzDecode(f *testing.F) {
	for _, n := range []string{"healthy.json", "never-admitted.json"} {
		b, _ := os.ReadFile(filepath.Join("testdata", "v0", n))
		var c struct{ Spec, State, Status json.RawMessage }
		json.Unmarshal(b, &c)
		f.Add([]byte(c.Spec), []byte(c.State), []byte(c.Status))
	}
	f.Fuzz(func(t *testing.T, spec, state, status []byte) {
		r := record.Decode(record.Columns{Name: "r", Spec: spec, State: state, Status: status}, time.Unix(0, 0))
		if r.Err != nil {
			if len(r.Status.Conditions) == 0 {
				t.Fatal("undecodable record without a condition")
			}
			return
		}
		c, err := record.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		r2 := record.Decode(c, time.Unix(0, 0))
		if r2.Err != nil {
			t.Fatalf("re-encoded record does not decode: %v", r2.Err)
		}
		c2, _ := record.Encode(r2)
		if !bytes.Equal(c.Spec, c2.Spec) || !bytes.Equal(c.State, c2.State) || !bytes.Equal(c.Status, c2.Status) {
			t.Fatal("encode is not stable over a round trip")
		}
	})
}
