package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// Columns is a record's stored form: three JSON documents (spec: the
// admitted snapshot or null; state: the rollout state; status: the status
// API's fleet.ReleaseInfo), as cairn has written them since it began.
type Columns struct {
	Name   string
	Commit string
	Spec   []byte
	State  []byte
	Status []byte
}

// Encode returns the stored form of r.
func Encode(r Release) (Columns, error) {
	c := Columns{Name: r.Name, Commit: r.Commit()}
	var err error
	if c.Spec, err = json.Marshal(r.Admitted); err != nil {
		return c, fmt.Errorf("encode release %s: admitted: %w", r.Name, err)
	}
	if c.State, err = json.Marshal(r.Rollout); err != nil {
		return c, fmt.Errorf("encode release %s: rollout state: %w", r.Name, err)
	}
	st := r.Status
	st.Name = r.Name
	st.UpdatedAt = time.Time{}
	if c.Status, err = json.Marshal(st); err != nil {
		return c, fmt.Errorf("encode release %s: status: %w", r.Name, err)
	}
	return c, nil
}

// Decode reads a stored record. A record that does not decode comes back
// with Err set and a Status holding a Stalled condition that says why
// (never an error: the release is shown, not lost).
func Decode(c Columns, updated time.Time) Release {
	r, err := decode(c)
	r.Name, r.UpdatedAt = c.Name, updated
	if err != nil {
		msg := fmt.Sprintf("the stored record does not decode (%v): left as it is; fix or delete it, or remove the release from Git", err)
		r = Release{Name: c.Name, UpdatedAt: updated, Err: fmt.Errorf("decode release %s: %w", c.Name, err)}
		at := updated.UTC().Truncate(time.Second)
		r.Status = fleet.ReleaseInfo{ReleaseState: fleet.ReleaseState{Name: c.Name, Phase: "Stalled", Commit: c.Commit}, UpdatedAt: updated,
			Conditions: []fleet.Condition{
				{Type: "Stalled", Status: "True", Reason: ReasonUndecodable, Message: msg, LastTransitionTime: at},
				{Type: "Ready", Status: "False", Reason: ReasonUndecodable, Message: msg, LastTransitionTime: at},
			}}
		return r
	}
	r.Status.Name, r.Status.UpdatedAt = c.Name, updated
	if r.Status.Commit == "" {
		r.Status.Commit = c.Commit
	}
	return r
}

func decode(c Columns) (Release, error) {
	var r Release
	if spec := bytes.TrimSpace(c.Spec); len(spec) > 0 && !bytes.Equal(spec, []byte("null")) {
		var a Admitted
		if err := strict(spec, &a); err != nil {
			return r, fmt.Errorf("admitted snapshot: %w", err)
		}
		if n := a.Release.Metadata.Name; n != c.Name {
			return r, fmt.Errorf("admitted snapshot names release %q", n)
		}
		if a.Model.Metadata.Name == "" || a.Model.Spec.Artifact == "" {
			return r, fmt.Errorf("admitted snapshot has no model artifact")
		}
		r.Admitted = &a
	}
	if len(bytes.TrimSpace(c.State)) > 0 {
		if err := strict(c.State, &r.Rollout); err != nil {
			return r, fmt.Errorf("rollout state: %w", err)
		}
	}
	if len(bytes.TrimSpace(c.Status)) > 0 {
		if err := strict(c.Status, &r.Status); err != nil {
			return r, fmt.Errorf("status: %w", err)
		}
	}
	return r, nil
}

// strict decodes one JSON document and refuses trailing data.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the document")
	}
	return nil
}
