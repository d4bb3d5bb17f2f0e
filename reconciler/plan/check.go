package plan

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cairn-dev/cairn/errdef"
	"github.com/cairn-dev/cairn/manifests"
)

type datasetResult struct {
	info *DatasetInfo
	err  error
}

// datasetKey names a dataset version in a store.
type datasetKey struct{ store, digest string }

// checkDatasets asks the dataset stores for every dataset the model names
// (trainedOn, then evaluatedOn), once per store and digest: one a store
// does not hold holds the release, one it could not be asked about leaves
// it unavailable. It returns the profiles found, by dataset name.
func (c *computer) checkDatasets(r *Release, model manifests.Model) map[string]map[string]any {
	if c.opts.Datasets == nil {
		return nil
	}
	names := datasetNames(model)
	var held, unavailable []string
	profiles := map[string]map[string]any{}
	for _, name := range names {
		ds, ok := c.snap.Dataset(name)
		if !ok || ds.Spec.Digest == "" {
			continue // not declared: the policy input says Missing
		}
		res := c.dataset(ds.Spec.Store, ds.Spec.Digest)
		switch {
		case res.err == nil:
			if res.info != nil && res.info.Profile != nil {
				profiles[name] = res.info.Profile
			}
		case errors.Is(res.err, errdef.ErrNotFound):
			held = append(held, fmt.Sprintf("dataset %s (%s) is not in store %s", name, ds.Spec.Digest, storeName(ds.Spec.Store)))
		default:
			unavailable = append(unavailable, fmt.Sprintf("dataset store %s unavailable: %v", storeName(ds.Spec.Store), res.err))
		}
	}
	r.Held = joinReasons(r.Held, held)
	r.Unavailable = joinReasons(r.Unavailable, unavailable)
	return profiles
}

// datasetNames lists the datasets a model names, each once.
func datasetNames(model manifests.Model) []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, d := range model.Spec.TrainedOn {
		add(d)
	}
	for _, e := range model.Spec.EvaluatedOn {
		add(e.Dataset)
	}
	return out
}

func (c *computer) dataset(store, digest string) datasetResult {
	k := datasetKey{store, digest}
	c.dsMu.Lock()
	r, ok := c.datasets[k]
	c.dsMu.Unlock()
	if ok {
		return r
	}
	info, err := c.opts.Datasets.Check(c.ctx, storeName(store), digest)
	r = datasetResult{info: info, err: err}
	c.dsMu.Lock()
	c.datasets[k] = r
	c.dsMu.Unlock()
	return r
}

// prefetchDatasets asks the stores about every declared dataset in
// parallel, once each.
func (c *computer) prefetchDatasets(snap *manifests.Snapshot) {
	if c.opts.Datasets == nil {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, inspectJobs)
	seen := map[datasetKey]bool{}
	for _, ds := range snap.Datasets() {
		k := datasetKey{ds.Spec.Store, ds.Spec.Digest}
		if ds.Spec.Digest == "" || seen[k] {
			continue
		}
		seen[k] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.dataset(k.store, k.digest)
		}()
	}
	wg.Wait()
}

func storeName(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

func joinReasons(first string, more []string) string {
	if first != "" {
		more = append([]string{first}, more...)
	}
	return strings.Join(more, "; ")
}
