package plan

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/registry/models"
)

// Delta updates in the plan. A target that runs an earlier version of a
// release (Target.Models) holds that version's layers, and the agent
// rebuilds a large layer it lacks from the chunks it holds, fetching only
// the others (registry/models' delta pulls). So, per layer of the new
// artifact, a target downloads nothing when it holds the layer (its
// inventory layers or the earlier version's), else, when both versions
// carry a chunk index, the chunks of the layer the earlier index does not
// list, else the whole layer. The registry is asked once per distinct
// (earlier, new) pair, not per target; the earlier version is looked up in
// the repository of the new one.

// deltaKey is a pair of versions: the digest a target runs, the artifact
// (repo@digest) it is to run.
type deltaKey struct{ from, to string }

// delta is what a target running from holds of to.
type delta struct {
	held map[string]bool // layer digests of from
	// missing maps a large layer of to, not held, to the bytes of its
	// chunks that from's chunk index does not list; a layer not in it is
	// downloaded whole.
	missing map[string]int64
	// note says why large layers count whole ("" when they do not, or no
	// layer needed chunks).
	note string
}

// indexEntry is one artifact's chunk index, read once.
type indexEntry struct {
	once   sync.Once
	chunks map[string][]Chunk
	err    error
}

// chunkIndex reads the chunk index of artifact once per plan.
func (c *computer) chunkIndex(artifact string) (map[string][]Chunk, error) {
	c.deltaMu.Lock()
	e := c.indexes[artifact]
	if e == nil {
		e = &indexEntry{}
		c.indexes[artifact] = e
	}
	c.deltaMu.Unlock()
	e.once.Do(func() { e.chunks, e.err = c.opts.ChunkIndexes.ChunkIndex(c.ctx, artifact) })
	return e.chunks, e.err
}

// inspectShared is inspect for the parallel prefetch: c.artifacts under
// deltaMu.
func (c *computer) inspectShared(artifact string) artifactResult {
	c.deltaMu.Lock()
	r, ok := c.artifacts[artifact]
	c.deltaMu.Unlock()
	if ok {
		return r
	}
	info, err := c.opts.Inspector.Inspect(c.ctx, artifact)
	r = artifactResult{info: info, err: err}
	c.deltaMu.Lock()
	c.artifacts[artifact] = r
	c.deltaMu.Unlock()
	return r
}

// prefetchDeltas computes, in parallel, the delta of every (running digest,
// release artifact) pair of the inventory. It runs after prefetch.
func (c *computer) prefetchDeltas(snap *manifests.Snapshot) {
	if c.opts.Inspector == nil || c.opts.ChunkIndexes == nil {
		return
	}
	var keys []deltaKey
	for _, rel := range snap.Releases() {
		m, ok := snap.Model(rel.Spec.Model)
		if !ok {
			continue
		}
		_, to, err := manifests.SplitArtifact(m.Spec.Artifact)
		if err != nil {
			continue
		}
		if art := c.artifacts[m.Spec.Artifact]; art.err != nil || art.info == nil {
			continue
		}
		for _, run := range c.ix.running[rel.Metadata.Name] {
			k := deltaKey{from: run.digest, to: m.Spec.Artifact}
			if run.digest == "" || run.digest == to {
				continue
			}
			if _, ok := c.deltas[k]; !ok {
				c.deltas[k] = nil
				keys = append(keys, k)
			}
		}
	}
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, inspectJobs)
	)
	results := make([]*delta, len(keys))
	for i, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = c.delta(k)
		}()
	}
	wg.Wait()
	for i, k := range keys {
		c.deltas[k] = results[i]
	}
}

// delta works out what a target running k.from holds of k.to.
func (c *computer) delta(k deltaKey) *delta {
	repo, _, _ := strings.Cut(k.to, "@")
	fromRef := repo + "@" + k.from
	to := c.inspectShared(k.to).info
	old := c.inspectShared(fromRef)
	if old.err != nil {
		return &delta{note: fmt.Sprintf("that version cannot be read (%v): its layers and chunks count as not held", old.err)}
	}
	d := &delta{held: map[string]bool{}}
	for _, l := range old.info.Layers {
		d.held[l.Digest] = true
	}
	var need []Layer
	for _, l := range to.Layers {
		if l.Size >= models.DeltaThreshold && !d.held[l.Digest] {
			need = append(need, l)
		}
	}
	if len(need) == 0 {
		return d
	}
	newIx, err := c.chunkIndex(k.to)
	switch {
	case err != nil:
		d.note = fmt.Sprintf("the chunk index of %s cannot be read (%v): large layers count whole", digest.Short(to.Digest), err)
		return d
	case newIx == nil:
		d.note = fmt.Sprintf("%s has no chunk index: large layers count whole", digest.Short(to.Digest))
		return d
	}
	oldIx, err := c.chunkIndex(fromRef)
	switch {
	case err != nil:
		d.note = fmt.Sprintf("the chunk index of that version cannot be read (%v): large layers count whole", err)
		return d
	case oldIx == nil:
		d.note = "that version has no chunk index: large layers count whole"
		return d
	}
	have := map[string]bool{}
	for _, chunks := range oldIx {
		for _, ch := range chunks {
			have[ch.Digest] = true
		}
	}
	d.missing = map[string]int64{}
	var unindexed []string
	for _, l := range need {
		chunks, ok := newIx[l.Digest]
		var sum, miss int64
		for _, ch := range chunks {
			sum += ch.Size
			if !have[ch.Digest] {
				miss += ch.Size
			}
		}
		if !ok || sum != l.Size {
			unindexed = append(unindexed, layerName(l))
			continue
		}
		d.missing[l.Digest] = miss
	}
	if len(unindexed) > 0 {
		d.note = fmt.Sprintf("the chunk index of %s does not list %s: counted whole", digest.Short(to.Digest), strings.Join(unindexed, ", "))
	}
	return d
}

func layerName(l Layer) string {
	if l.Path != "" {
		return l.Path
	}
	return digest.Short(l.Digest)
}

// targetBytes is what target i, running from ("" for nothing), downloads
// of layers (model bytes in all): with delta updates and whole; d is the
// delta it used, nil for none.
func (c *computer) targetBytes(i int32, from, artifact string, layers []Layer, model int64) (n, whole int64, d *delta) {
	t := c.ix.targets[i]
	if from != "" && len(c.deltas) > 0 {
		d = c.deltas[deltaKey{from: from, to: artifact}]
	}
	n, whole = model, model
	if len(t.Layers) == 0 && (d == nil || d.held == nil) {
		return n, whole, d
	}
	for _, l := range layers {
		if (d != nil && d.held[l.Digest]) || slices.Contains(t.Layers, l.Digest) {
			n -= l.Size
			whole -= l.Size
			continue
		}
		if d != nil {
			if m, ok := d.missing[l.Digest]; ok {
				n -= l.Size - m
			}
		}
	}
	return n, whole, d
}

// deltaNotes notes, once per running version, why a release's large layers
// are counted whole for the targets that run it: counts maps a running
// digest to its targets that must download.
func (c *computer) deltaNotes(r *Release, counts map[string]int) {
	froms := make([]string, 0, len(counts))
	for f := range counts {
		froms = append(froms, f)
	}
	slices.Sort(froms)
	for _, f := range froms {
		d := c.deltas[deltaKey{from: f, to: r.Artifact}]
		if d == nil || d.note == "" {
			continue
		}
		r.Notes = append(r.Notes, fmt.Sprintf("delta sizes, %s running %s: %s", plural(counts[f], "target"), digest.Short(f), d.note))
	}
}

// waveBytes sums the downloads of each wave's targets.
func waveBytes(r *Release) {
	if r.ModelBytes == nil {
		return
	}
	model := *r.ModelBytes
	type dl struct{ n, whole int64 }
	except := make(map[string]dl, len(r.Downloads))
	for _, d := range r.Downloads {
		except[d.Target] = dl{d.Bytes, d.WholeBytes}
	}
	for i := range r.Waves {
		w := &r.Waves[i]
		n := int64(len(w.Targets)) * model
		whole := n
		if len(except) > 0 {
			for _, t := range w.Targets {
				if d, ok := except[t]; ok {
					n += d.n - model
					whole += d.whole - model
				}
			}
		}
		w.Bytes, w.WholeBytes = &n, &whole
	}
}
