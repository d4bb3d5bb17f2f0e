package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/errdef"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
	"github.com/cairn-dev/cairn/registry/models"
)

// InspectTimeout bounds one registry or dataset store request of the
// checks below: past it the registry counts as unavailable.
const InspectTimeout = 30 * time.Second

// InspectorOption configures RegistryInspector.
type InspectorOption func(*models.Options)

// WithTransport sets the HTTP transport of the registry requests (default:
// registry/models' own, which trusts the system's roots): cairn serve
// passes one trusting its registry CA and its own certificate.
func WithTransport(rt http.RoundTripper) InspectorOption {
	return func(o *models.Options) { o.Transport = rt }
}

// RegistryInspector reads artifacts with registry/models.Inspect, at most
// InspectTimeout each; plainHTTP says which registries speak plain HTTP
// (nil: none). cairn plan and cairn serve both admit through it.
func RegistryInspector(plainHTTP func(artifact string) bool, opts ...InspectorOption) ArtifactInspector {
	var base models.Options
	for _, o := range opts {
		o(&base)
	}
	return InspectorFunc(func(ctx context.Context, ref string) (*ArtifactInfo, error) {
		ctx, cancel := context.WithTimeout(ctx, InspectTimeout)
		defer cancel()
		mo := base
		mo.PlainHTTP = plainHTTP != nil && plainHTTP(ref)
		a, err := models.Inspect(ctx, ref, mo)
		if err != nil {
			return nil, err
		}
		info := &ArtifactInfo{Digest: a.Digest, MediaType: a.MediaType, ArtifactType: a.ArtifactType, Annotations: a.Annotations}
		for _, v := range a.Variants {
			if v.Platform != "" {
				info.Platforms = append(info.Platforms, v.Platform)
			}
		}
		for _, l := range a.Layers {
			info.Layers = append(info.Layers, Layer{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, Path: l.Path})
		}
		return info, nil
	})
}

// RegistryChunkIndexer reads the chunk indexes of artifacts with
// registry/models.FetchChunkIndex, at most InspectTimeout each; plainHTTP
// and opts as for RegistryInspector. cairn plan counts delta updates with
// it.
func RegistryChunkIndexer(plainHTTP func(artifact string) bool, opts ...InspectorOption) ChunkIndexer {
	var base models.Options
	for _, o := range opts {
		o(&base)
	}
	return ChunkIndexerFunc(func(ctx context.Context, ref string) (map[string][]Chunk, error) {
		ctx, cancel := context.WithTimeout(ctx, InspectTimeout)
		defer cancel()
		mo := base
		mo.PlainHTTP = plainHTTP != nil && plainHTTP(ref)
		ix, err := models.FetchChunkIndex(ctx, ref, mo)
		if err != nil || ix == nil {
			return nil, err
		}
		out := make(map[string][]Chunk, len(ix.Layers))
		for _, l := range ix.Layers {
			chunks := make([]Chunk, len(l.Chunks))
			for i, c := range l.Chunks {
				chunks[i] = Chunk{Digest: c.Digest, Size: c.Size}
			}
			out[l.Digest] = chunks
		}
		return out, nil
	})
}

// StoreChecker finds dataset versions in the named stores (store name →
// file:// or s3:// URL), opening each store once: a version whose tree is
// not stored is errdef.ErrNotFound; its profile, when stored, is summarised
// into DatasetInfo.Profile.
func StoreChecker(urls map[string]string) DatasetChecker {
	return &storeChecker{urls: urls, open: map[string]blobs.Store{}}
}

type storeChecker struct {
	urls map[string]string
	mu   sync.Mutex // Check runs in parallel; stores open one at a time
	open map[string]blobs.Store
}

func (s *storeChecker) store(ctx context.Context, name string) (blobs.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if bs, ok := s.open[name]; ok {
		return bs, nil
	}
	u, ok := s.urls[name]
	if !ok {
		// A store the server does not know can never hold it: a hold, not a retry.
		return nil, fmt.Errorf("dataset store %q is not configured (datasetStores): %w", name, errdef.ErrNotFound)
	}
	bs, err := blobs.Open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("dataset store %s: %w", name, err)
	}
	s.open[name] = bs
	return bs, nil
}

func (s *storeChecker) Check(ctx context.Context, store, digest string) (*DatasetInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, InspectTimeout)
	defer cancel()
	bs, err := s.store(ctx, store)
	if err != nil {
		return nil, err
	}
	// blobs.ErrNotFound is errdef.ErrNotFound: a missing tree holds.
	if _, err := bs.Stat(ctx, blobs.TreeKey(digest)); err != nil {
		return nil, fmt.Errorf("dataset %s: %w", digest, err)
	}
	p, err := datasets.ReadProfile(ctx, bs, digest)
	switch {
	case errors.Is(err, blobs.ErrNotFound):
		return &DatasetInfo{}, nil
	case err != nil:
		return nil, err
	}
	return &DatasetInfo{Profile: profileSummary(p)}, nil
}

// profileSummary is a profile without its histograms, as the policy input
// carries it: {files: [{path, rows, columns: [{name, count, mean, variance,
// min, max}]}]}.
func profileSummary(p *datasets.Profile) map[string]any {
	type col struct {
		Name     string  `json:"name"`
		Count    int64   `json:"count"`
		Mean     float64 `json:"mean"`
		Variance float64 `json:"variance"`
		Min      float64 `json:"min"`
		Max      float64 `json:"max"`
	}
	type file struct {
		Path    string `json:"path"`
		Rows    int64  `json:"rows"`
		Columns []col  `json:"columns"`
	}
	var files []file
	for _, f := range p.Files {
		ff := file{Path: f.Path, Rows: f.Rows, Columns: []col{}}
		for _, c := range f.Columns {
			ff.Columns = append(ff.Columns, col{c.Name, c.Count, c.Mean, c.Variance, c.Min, c.Max})
		}
		files = append(files, ff)
	}
	// Through JSON, so that policies see what they would see of a document.
	b, _ := json.Marshal(map[string]any{"files": files})
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}
