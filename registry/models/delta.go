package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cairn-dev/cairn/registry/cdc"
)

// Delta pulls. A layer of at least DeltaThreshold bytes that is neither in
// the cache nor in place is rebuilt, when the artifact has a chunk index,
// from the chunks an earlier version holds (blobs of the cache whose local
// index is under CacheDir/chunks/sha256/<hex>, else the newest large cached
// blobs chunked on the spot, and the file at the layer's path in DIR), fetching the other chunks with Range requests on the layer
// blob, adjacent chunks in one request, several requests at once. Every chunk is checked against its
// digest as it is written and the whole blob against the layer's digest at
// the end; anything amiss (no index, a registry that ignores Range, a chunk
// or a blob that does not match, a broken transfer) drops the rebuilt file
// and the layer is downloaded whole, as without an index.

// DeltaStat says how one large layer of a pull came: rebuilt from chunks
// (Reused > 0 or Ranges > 0, Fallback empty) or downloaded whole (Fallback
// says why).
type DeltaStat struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// ReusedBytes came from chunks held locally; DownloadedBytes from Range
	// requests (Ranges of them).
	ReusedBytes     int64 `json:"reusedBytes"`
	DownloadedBytes int64 `json:"downloadedBytes"`
	Ranges          int   `json:"ranges"`
	// ResumedBytes, of ReusedBytes, were kept from an interrupted rebuild
	// of this layer (its journalled chunks).
	ResumedBytes int64 `json:"resumedBytes,omitempty"`
	// Fallback is why the layer was downloaded whole instead ("" when
	// rebuilt).
	Fallback string `json:"fallback,omitempty"`
}

// errRangeIgnored: the registry answered a Range request with the whole blob.
var errRangeIgnored = errors.New("the registry ignores Range requests")

// chunkLoc is where a chunk's bytes are held locally.
type chunkLoc struct {
	root *os.Root
	rel  string
	off  int64
}

// deltaState is shared by the layers of one pull.
type deltaState struct {
	idxOnce sync.Once
	idxErr  error
	// index is the artifact's chunk index by layer digest once built:
	// keepIndex reads it without waiting for (or racing with) a load other
	// layers' goroutines run.
	index atomic.Pointer[map[string]*LayerChunks]

	localOnce sync.Once
	local     map[string]chunkLoc // chunks of the cache's blobs wanted by the index
}

// loadIndex fetches the artifact's chunk index once.
func (p *puller) loadIndex(ctx context.Context) (map[string]*LayerChunks, error) {
	p.delta.idxOnce.Do(func() {
		ix, n, err := p.c.fetchChunkIndex(ctx, p.subject)
		p.downloaded.Add(n)
		if err != nil {
			p.delta.idxErr = err
			return
		}
		index := map[string]*LayerChunks{}
		if ix != nil {
			for i := range ix.Layers {
				index[ix.Layers[i].Digest] = &ix.Layers[i]
			}
		}
		p.delta.index.Store(&index)
	})
	if index := p.delta.index.Load(); index != nil {
		return *index, nil
	}
	return nil, p.delta.idxErr
}

// cacheChunks maps the chunks wanted by the artifact's index to the cache
// blobs holding them, from the cache's local indexes; read once per pull.
func (p *puller) cacheChunks(ctx context.Context, index map[string]*LayerChunks) map[string]chunkLoc {
	p.delta.localOnce.Do(func() {
		p.delta.local = map[string]chunkLoc{}
		if p.cache == nil {
			return
		}
		wanted := map[string]bool{}
		for _, l := range index {
			for _, c := range l.Chunks {
				wanted[c.Digest] = true
			}
		}
		add := func(hx string, l *LayerChunks) {
			var off int64
			for _, c := range l.Chunks {
				if _, ok := p.delta.local[c.Digest]; wanted[c.Digest] && !ok {
					p.delta.local[c.Digest] = chunkLoc{root: p.cache, rel: "blobs/sha256/" + hx, off: off}
				}
				off += c.Size
			}
		}
		indexed := map[string]bool{}
		ents, _ := fs.ReadDir(p.cache.FS(), "chunks/sha256")
		for _, e := range ents {
			hx := e.Name()
			if !reHex64.MatchString(hx) || index["sha256:"+hx] != nil {
				continue
			}
			fi, err := p.cache.Stat("blobs/sha256/" + hx)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			b, err := p.cache.ReadFile("chunks/sha256/" + hx)
			if err != nil || len(b) > maxIndexSize {
				continue
			}
			l, err := decodeLayerChunks(b)
			if err != nil || l.Size != fi.Size() {
				continue
			}
			indexed[hx] = true
			add(hx, l)
		}
		if len(p.delta.local) > 0 {
			return
		}
		// None of the indexed blobs helps: chunk the newest large blobs the
		// cache holds without an index (pulled before chunk indexes, or of
		// an artifact pushed without one), at most unindexedTries of them,
		// and keep their indexes.
		blobs, _ := fs.ReadDir(p.cache.FS(), "blobs/sha256")
		type cand struct {
			hx    string
			mtime int64
		}
		var cands []cand
		for _, e := range blobs {
			hx := e.Name()
			if !reHex64.MatchString(hx) || indexed[hx] || index["sha256:"+hx] != nil {
				continue
			}
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() >= DeltaThreshold {
				cands = append(cands, cand{hx, fi.ModTime().UnixNano()})
			}
		}
		sort.Slice(cands, func(i, k int) bool { return cands[i].mtime > cands[k].mtime })
		for i, c := range cands {
			if i == unindexedTries {
				break
			}
			f, err := p.cache.Open("blobs/sha256/" + c.hx)
			if err != nil {
				continue
			}
			l, err := chunkReader(ctx, f)
			f.Close()
			if err != nil || l.Digest != "sha256:"+c.hx {
				continue // a damaged blob: not a source
			}
			p.writeLocalIndex(c.hx, l)
			add(c.hx, l)
		}
	})
	return p.delta.local
}

// unindexedTries bounds the cached blobs without an index chunked by one
// pull.
const unindexedTries = 2

// keepIndex writes the layer's chunks next to its blob in the cache, for
// later pulls to find the chunks it holds. A wrong local index costs reuse,
// never correctness: every reused chunk is checked against its digest.
func (p *puller) keepIndex(d v1.Descriptor) {
	index := p.delta.index.Load() // nil while no layer loaded it, or loading
	if p.cache == nil || index == nil {
		return
	}
	l := (*index)[d.Digest.String()]
	if l == nil || l.Size != d.Size {
		return
	}
	p.writeLocalIndex(d.Digest.Hex, l)
}

// writeLocalIndex writes the cache's index of blob hx unless there is one.
func (p *puller) writeLocalIndex(hx string, l *LayerChunks) {
	rel := "chunks/sha256/" + hx
	if _, err := p.cache.Stat(rel); err == nil {
		return
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	tmp := rel + ".tmp" + strconv.Itoa(os.Getpid())
	if err := p.cache.WriteFile(tmp, b, 0o644); err != nil {
		return
	}
	if err := p.cache.Rename(tmp, rel); err != nil {
		_ = p.cache.Remove(tmp)
	}
}

func (p *puller) addDelta(s DeltaStat) {
	p.mu.Lock()
	p.deltas = append(p.deltas, s)
	p.mu.Unlock()
}

// tryDelta rebuilds blob d into rel under root from local chunks and Range
// requests. It reports whether rel now holds the verified blob; when not,
// and without an error, the caller downloads it whole (the reason is in the
// pull's DeltaStats). An error is a transfer that kept breaking off: the
// rebuild so far is kept at rel.delta for the next pull to resume.
func (p *puller) tryDelta(ctx context.Context, j *blobJob, root *os.Root, rel, name string) (bool, error) {
	d := j.desc
	if d.Size < DeltaThreshold || p.noDelta {
		return false, nil
	}
	tmp := rel + ".delta"
	st := DeltaStat{Path: name, Digest: d.Digest.String(), Size: d.Size}
	fallback := func(why string) (bool, error) {
		discardPartial(root, tmp)
		st.Fallback = why
		st.ReusedBytes, st.ResumedBytes = 0, 0 // copied, then dropped
		p.addDelta(st)
		return false, nil
	}
	var inPlaceRel string // the file an earlier pull left at the layer's path in DIR
	for _, l := range j.layers {
		if l.f.tar || l.path == "" {
			continue
		}
		if fi, err := p.dir.Lstat(l.path); err == nil && fi.Mode().IsRegular() && fi.Size() >= DeltaThreshold {
			inPlaceRel = l.path
			break
		}
	}
	if p.cache == nil && inPlaceRel == "" && !hasPartial(root, tmp) {
		return false, nil // nothing to rebuild from, and no cache to keep the index in
	}
	index, err := p.loadIndex(ctx) // also for keepIndex after a whole download
	if err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return fallback("chunk index: " + err.Error())
	}
	if fi, err := root.Stat(rel); err == nil && fi.Size() > 0 {
		return fallback("resuming an interrupted download")
	}
	lc := index[d.Digest.String()]
	if lc == nil || lc.Size != d.Size {
		return fallback("no chunk index")
	}
	shared := p.cacheChunks(ctx, index)
	var inPlace map[string]chunkLoc
	if inPlaceRel != "" {
		if inPlace, err = p.chunksInPlace(ctx, inPlaceRel, lc); err != nil && ctx.Err() != nil {
			return false, nil
		}
	}
	find := func(digest string) (chunkLoc, bool) {
		if c, ok := inPlace[digest]; ok {
			return c, true
		}
		c, ok := shared[digest]
		return c, ok
	}
	pt, err := openPartial(root, tmp, d, lc)
	if err != nil {
		return fallback("rebuild: " + err.Error())
	}
	found, resumed := pt.resumed > 0, pt.resumed
	for _, c := range lc.Chunks {
		if found {
			break
		}
		_, found = find(c.Digest)
	}
	if !found {
		pt.close()
		return fallback("no earlier version holds any of its chunks")
	}
	for try := 1; ; try++ {
		err = p.rebuild(ctx, pt, d, lc, find, &st, j)
		if err == nil || ctx.Err() != nil || !isBroken(err) || try == attempts {
			break
		}
		// Broken off: resume from what is done.
		again, rerr := openPartial(root, tmp, d, lc)
		pt.close()
		if rerr != nil {
			return fallback("rebuild: " + rerr.Error())
		}
		pt = again
	}
	pt.close()
	st.ResumedBytes = resumed
	switch {
	case err == nil:
		st.ReusedBytes = max(0, d.Size-st.DownloadedBytes)
		if err := root.Rename(tmp, rel); err != nil {
			return fallback(err.Error())
		}
		_ = root.Remove(journalRel(tmp))
		p.addDelta(st)
		return true, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("layer %s: rebuild from chunks: %w", name, ctx.Err()) // kept to resume
	case isBroken(err):
		return false, fmt.Errorf("layer %s: rebuild from chunks (%d bytes kept to resume): %w", name, st.ReusedBytes+st.DownloadedBytes, err)
	default:
		return fallback(err.Error())
	}
}

// chunksInPlace chunks the file rel of DIR and maps the chunks lc wants to
// their offsets in it.
func (p *puller) chunksInPlace(ctx context.Context, rel string, lc *LayerChunks) (map[string]chunkLoc, error) {
	wanted := map[string]bool{}
	for _, c := range lc.Chunks {
		wanted[c.Digest] = true
	}
	f, err := p.dir.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]chunkLoc{}
	_, err = cdc.Split(f, func(off int64, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		dg := "sha256:" + hex.EncodeToString(sum[:])
		if _, ok := out[dg]; wanted[dg] && !ok {
			out[dg] = chunkLoc{root: p.dir, rel: rel, off: off}
		}
		return nil
	})
	return out, err
}

// fetchRange GETs bytes from..to (inclusive) of a blob. A registry that
// answers with anything but exactly that range gives errRangeIgnored.
func (c *repoClient) fetchRange(ctx context.Context, h v1.Hash, from, to int64) (io.ReadCloser, error) {
	resp, err := c.do(ctx, "GET", c.base+"/blobs/"+h.String(), nil, 0,
		map[string]string{"Range": "bytes=" + strconv.FormatInt(from, 10) + "-" + strconv.FormatInt(to, 10)})
	if err != nil {
		return nil, errBroken{fmt.Errorf("get blob %s: %w", h, err)}
	}
	if err := check(resp, 200, 206); err != nil {
		return nil, fmt.Errorf("get blob %s: %w", h, err)
	}
	if resp.StatusCode != 206 {
		resp.Body.Close()
		return nil, errRangeIgnored
	}
	want := "bytes " + strconv.FormatInt(from, 10) + "-" + strconv.FormatInt(to, 10) + "/"
	if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, want) {
		resp.Body.Close()
		return nil, fmt.Errorf("get blob %s: asked bytes %d-%d, got Content-Range %q: %w", h, from, to, cr, errRangeIgnored)
	}
	return resp.Body, nil
}
