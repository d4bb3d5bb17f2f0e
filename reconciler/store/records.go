package store

import (
	"context"
	"fmt"

	"github.com/cairn-dev/cairn/reconciler/record"
)

// PutRecord stores a release's typed record in its one stored form
// (record.Encode). A record that did not decode (Err set) is refused: it
// stays as it is in the store.
func (s *SQL) PutRecord(ctx context.Context, r record.Release) error {
	if r.Err != nil {
		return fmt.Errorf("write release %s: refusing to overwrite a record that does not decode: %w", r.Name, r.Err)
	}
	c, err := record.Encode(r)
	if err != nil {
		return err
	}
	return s.PutRelease(ctx, Release{Name: c.Name, Commit: c.Commit, Spec: c.Spec, State: c.State, Status: c.Status})
}

// Record reads one release's typed record; one that does not decode comes
// back with Err set and a Stalled status, not as an error.
func (s *SQL) Record(ctx context.Context, name string) (record.Release, error) {
	rel, err := s.Release(ctx, name)
	if err != nil {
		return record.Release{}, err
	}
	return decodeRecord(rel), nil
}

// Records reads every release's typed record, by name.
func (s *SQL) Records(ctx context.Context) ([]record.Release, error) {
	rels, err := s.Releases(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]record.Release, len(rels))
	for i, rel := range rels {
		out[i] = decodeRecord(rel)
	}
	return out, nil
}

func decodeRecord(rel Release) record.Release {
	return record.Decode(record.Columns{Name: rel.Name, Commit: rel.Commit, Spec: rel.Spec, State: rel.State, Status: rel.Status}, rel.UpdatedAt)
}
