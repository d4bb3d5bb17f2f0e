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

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cairn-dev/cairn/registry/cdc"
)

// Delta pulls. A layer of at least DeltaThreshold bytes that is neither in
// the cache nor in place is rebuilt, when the artifact has a chunk index,
// from the chunks an earlier version holds (blobs of the cache whose local
// index is under CacheDir/chunks/sha256/<hex>, else the newest large cached
// blobs chunked on the spot, and the file at the layer's path in DIR), fetching the other chunks with Range requests on the layer
// blob, adjacent chunks in one request. Every chunk is checked against its
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
	index   map[string]*LayerChunks // of the artifact, by layer digest
	idxErr  error

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
		p.delta.index = map[string]*LayerChunks{}
		if ix != nil {
			for i := range ix.Layers {
				p.delta.index[ix.Layers[i].Digest] = &ix.Layers[i]
			}
		}
	})
	return p.delta.index, p.delta.idxErr
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
	if p.cache == nil || p.delta.index == nil {
		return
	}
	l := p.delta.index[d.Digest.String()]
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
// the caller downloads it whole (the reason is in the pull's DeltaStats).
func (p *puller) tryDelta(ctx context.Context, j *blobJob, root *os.Root, rel, name string) bool {
	d := j.desc
	if d.Size < DeltaThreshold || p.noDelta {
		return false
	}
	st := DeltaStat{Path: name, Digest: d.Digest.String(), Size: d.Size}
	fallback := func(why string) bool {
		st.Fallback = why
		st.ReusedBytes = 0 // copied, then dropped
		p.addDelta(st)
		return false
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
	if p.cache == nil && inPlaceRel == "" {
		return false // nothing to rebuild from, and no cache to keep the index in
	}
	index, err := p.loadIndex(ctx) // also for keepIndex after a whole download
	if err != nil {
		if ctx.Err() != nil {
			return false
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
			return false
		}
	}
	find := func(digest string) (chunkLoc, bool) {
		if c, ok := inPlace[digest]; ok {
			return c, true
		}
		c, ok := shared[digest]
		return c, ok
	}
	found := false
	for _, c := range lc.Chunks {
		if _, ok := find(c.Digest); ok {
			found = true
			break
		}
	}
	if !found {
		return fallback("no earlier version holds any of its chunks")
	}
	err = p.rebuild(ctx, root, rel, d, lc, find, &st, j)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		return fallback(err.Error())
	}
	p.addDelta(st)
	return true
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

// rebuild writes blob d to rel (through rel.delta) chunk by chunk: held
// chunks copied from where they are, after checking their digest; runs of
// the others fetched with one Range request each. The whole blob is
// checked against d at the end.
func (p *puller) rebuild(ctx context.Context, root *os.Root, rel string, d v1.Descriptor, lc *LayerChunks,
	find func(string) (chunkLoc, bool), st *DeltaStat, j *blobJob) (err error) {
	tmp := rel + ".delta"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		f.Close()
		if err != nil {
			_ = root.Remove(tmp)
		}
	}()
	srcs := map[string]*os.File{}
	defer func() {
		for _, s := range srcs {
			s.Close()
		}
	}()
	open := func(c chunkLoc) (*os.File, error) {
		key := fmt.Sprintf("%p/%s", c.root, c.rel)
		if s := srcs[key]; s != nil {
			return s, nil
		}
		s, err := c.root.Open(c.rel)
		if err != nil {
			return nil, err
		}
		srcs[key] = s
		return s, nil
	}
	whole := sha256.New()
	buf := make([]byte, cdc.MaxChunk)
	copyBuf := getBuf()
	defer putBuf(copyBuf)
	progress := func(n int64) {
		if p.hooks.Progress != nil {
			p.hooks.Progress(st.Path, n)
		}
	}

	var offs []int64 // offset of each chunk
	var off int64
	for _, c := range lc.Chunks {
		offs = append(offs, off)
		off += c.Size
	}
	runStart := -1 // first chunk of the run waiting to be fetched
	flush := func(end int) error {
		if runStart < 0 {
			return nil
		}
		first, last := runStart, end-1
		runStart = -1
		from, to := offs[first], offs[last]+lc.Chunks[last].Size-1
		body, err := p.c.fetchRange(ctx, d.Digest, from, to)
		if err != nil {
			return err
		}
		defer body.Close()
		st.Ranges++
		for i := first; i <= last; i++ {
			c := lc.Chunks[i]
			ch := sha256.New()
			n, err := io.CopyBuffer(io.MultiWriter(f, whole, ch), io.LimitReader(body, c.Size), *copyBuf)
			st.DownloadedBytes += n
			p.downloaded.Add(n)
			j.got.Add(n)
			progress(n)
			if err != nil {
				return fmt.Errorf("range %d-%d: %w", from, to, err)
			}
			if n != c.Size {
				return fmt.Errorf("range %d-%d: got %d of chunk %d's %d bytes", from, to, n, i, c.Size)
			}
			if "sha256:"+hex.EncodeToString(ch.Sum(nil)) != c.Digest {
				return fmt.Errorf("%w: chunk %d (bytes %d-%d) from the registry does not match the chunk index", ErrDigestMismatch, i, offs[i], offs[i]+c.Size-1)
			}
		}
		return nil
	}
	for i, c := range lc.Chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if loc, ok := find(c.Digest); ok {
			if s, err := open(loc); err == nil {
				b := buf[:c.Size]
				if _, err := s.ReadAt(b, loc.off); err == nil {
					if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) == c.Digest {
						if err := flush(i); err != nil {
							return err
						}
						if _, err := f.Write(b); err != nil {
							return err
						}
						whole.Write(b)
						st.ReusedBytes += c.Size
						progress(c.Size)
						continue
					}
				}
			}
			// Not what the local index said: fetch it.
		}
		if runStart < 0 {
			runStart = i
		}
	}
	if err := flush(len(lc.Chunks)); err != nil {
		return err
	}
	if off != d.Size || hex.EncodeToString(whole.Sum(nil)) != d.Digest.Hex {
		return fmt.Errorf("%w: rebuilt blob is not %s", ErrDigestMismatch, d.Digest)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return root.Rename(tmp, rel)
}

// fetchRange GETs bytes from..to (inclusive) of a blob. A registry that
// answers with anything but exactly that range gives errRangeIgnored.
func (c *repoClient) fetchRange(ctx context.Context, h v1.Hash, from, to int64) (io.ReadCloser, error) {
	resp, err := c.do(ctx, "GET", c.base+"/blobs/"+h.String(), nil, 0,
		map[string]string{"Range": "bytes=" + strconv.FormatInt(from, 10) + "-" + strconv.FormatInt(to, 10)})
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", h, err)
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
