// Package holdout pulls an evaluation run's holdout dataset through the
// server for evaluator agents (`cairn agent`): it links registry/datasets,
// which the device binary cairn-agent leaves out to stay small.
package holdout

import (
	"context"
	"errors"
	"io"

	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

var _ agent.HoldoutFunc = Pull

// Pull restores the holdout dataset of run into dir, reading it through the
// server and verifying every byte against the dataset's digests.
func Pull(ctx context.Context, api agent.EvaluationAPI, id, cred, run, dataset, dir string) error {
	store := &runStore{api: api, id: id, cred: cred, run: run}
	return datasets.Pull(ctx, store, dataset, dir, datasets.PullOptions{Workers: 2})
}

// runStore is the dataset store of a run's holdout, read through the
// server (PathEvaluationBlob): what datasets.Pull reads.
type runStore struct {
	api           agent.EvaluationAPI
	id, cred, run string
}

var _ blobs.Store = (*runStore)(nil)

func (s *runStore) Stat(ctx context.Context, key string) (blobs.Info, error) {
	_, n, err := s.api.EvaluationObject(ctx, s.id, s.cred, s.run, key, 0, 0, true)
	if err != nil {
		return blobs.Info{}, err
	}
	return blobs.Info{Key: key, Size: n}, nil
}

func (s *runStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, _, err := s.api.EvaluationObject(ctx, s.id, s.cred, s.run, key, off, length, false)
	return rc, err
}

func (s *runStore) Put(context.Context, string, io.Reader, int64, string) (bool, error) {
	return false, errors.New("the holdout is read-only on an evaluator")
}

func (s *runStore) List(context.Context, string, func(blobs.Info) error) error {
	return errors.New("the holdout cannot be listed on an evaluator")
}
