package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// layerPlan is one layer and where it goes.
type layerPlan struct {
	desc v1.Descriptor
	f    layerFormat
	path string // raw layers: the file; tar layers: the folder to extract into ("" = DIR)
}

// blobJob is one distinct blob and the layers made of it.
type blobJob struct {
	desc   v1.Descriptor
	layers []layerPlan
	got    atomic.Int64 // bytes of it downloaded
}

// Pull writes the files of the model artifact ref into dir, verifying every
// byte against its digest: ModelPack artifacts (raw or tar layers, with or
// without artifactType) and KitOps ModelKits. Files are written to a temporary
// name and renamed; a path that would leave dir is refused with
// ErrUnsafePath before anything is written for it. An interrupted pull
// resumes from the bytes it already has when run again.
func Pull(ctx context.Context, ref string, dir string, opts PullOptions) (*PullResult, error) {
	r, err := parseRef(ref, opts.Options)
	if err != nil {
		return nil, err
	}
	c, err := newRepoClient(ctx, r.Context(), opts.Options, false)
	if err != nil {
		return nil, err
	}
	res, err := resolve(ctx, c, r, opts.Options)
	if err != nil {
		return nil, err
	}
	m := res.manifest
	kind := artifactKind(m)
	if kind == KindUnknown {
		return nil, fmt.Errorf("pull %s: %w (artifactType %q, config %q)", ref, ErrNotModel, m.ArtifactType, m.Config.MediaType)
	}
	jobs, err := planLayers(m)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}

	_, statErr := os.Lstat(dir)
	madeDir := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	defer root.Close()
	p := &puller{c: c, dir: root, hooks: opts.Progress, lim: opts.Limits.withDefaults(), subject: res.digest, noDelta: opts.NoDelta}
	if opts.CacheDir != "" {
		if err := os.MkdirAll(filepath.Join(opts.CacheDir, "blobs", "sha256"), 0o755); err != nil {
			return nil, fmt.Errorf("pull %s: cache: %w", ref, err)
		}
		if err := os.MkdirAll(filepath.Join(opts.CacheDir, "chunks", "sha256"), 0o755); err != nil {
			return nil, fmt.Errorf("pull %s: cache: %w", ref, err)
		}
		if err := os.MkdirAll(filepath.Join(opts.CacheDir, "locks"), 0o755); err != nil {
			return nil, fmt.Errorf("pull %s: cache: %w", ref, err)
		}
		if p.cache, err = os.OpenRoot(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("pull %s: cache: %w", ref, err)
		}
		defer p.cache.Close()
	} else {
		if fi, err := root.Lstat(workDir); err == nil && !fi.IsDir() {
			if err := root.Remove(workDir); err != nil {
				return nil, fmt.Errorf("pull %s: %w", ref, err)
			}
		}
		if err := root.MkdirAll(workDir, 0o755); err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
	}

	fail := func(err error) (*PullResult, error) {
		p.undo(permanentPullError(err))
		if madeDir {
			_ = os.Remove(dir) // only when nothing is left in it
		}
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := p.checkDisk(jobs, dir, opts.CacheDir); err != nil {
		return fail(err)
	}
	if p.hooks.Total != nil {
		var total int64
		for _, j := range jobs {
			total += j.desc.Size
		}
		p.hooks.Total(total)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs_(opts.Jobs))
	for _, j := range jobs {
		g.Go(func() error { return p.pullBlob(gctx, j) })
	}
	err = g.Wait()
	// Layers are extracted concurrently and each checks its own links; a
	// link of one layer may still send a link of another (or one already in
	// DIR) out of DIR: check them all together.
	if cerr := checkLinks(root, p.links); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fail(err)
	}
	if p.cache == nil {
		_ = root.RemoveAll(workDir)
	}
	if err := p.applyDirTimes(); err != nil {
		return fail(err)
	}
	sort.Slice(p.files, func(i, k int) bool { return p.files[i].Path < p.files[k].Path })
	var reused int64
	for _, j := range jobs {
		reused += max(0, j.desc.Size-j.got.Load())
	}
	sort.Slice(p.deltas, func(i, k int) bool { return p.deltas[i].Path < p.deltas[k].Path })
	out := &PullResult{Digest: res.digest.String(), Files: p.files, Kind: kind,
		DownloadedBytes: p.downloaded.Load(), ReusedBytes: reused, Deltas: p.deltas}
	if res.index.Hex != "" {
		out.Index = res.index.String()
	}
	return out, nil
}

func jobs_(n int) int { return jobs(n) }

// planLayers validates every layer's media type and path before anything is
// downloaded, and groups layers by blob.
func planLayers(m *v1.Manifest) ([]*blobJob, error) {
	byDigest := map[v1.Hash]*blobJob{}
	var out []*blobJob
	seen := map[string]bool{}
	for _, l := range m.Layers {
		lp := layerPlan{desc: l}
		f, ok := parseLayerMediaType(string(l.MediaType))
		switch {
		case ok:
			lp.f = f
		case reOCILayer.MatchString(string(l.MediaType)) && l.Annotations[annotationOrasDir] == "true":
			// oras: a folder packed as tar+gzip, unpacked under its title.
			lp.f = layerFormat{tar: true, compression: "gzip"}
		case layerPath(l) != "":
			lp.f = layerFormat{} // a generic file layer (oras without a media type)
		default:
			return nil, fmt.Errorf("layer %s: unsupported media type %q without a file path", l.Digest, l.MediaType)
		}
		p := layerPath(l)
		if lp.f.tar {
			if l.Annotations[annotationOrasDir] == "true" && p != "" {
				c, err := cleanRel(p)
				if err != nil {
					return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
				}
				lp.path = c
			}
		} else {
			if p == "" {
				return nil, fmt.Errorf("layer %s (%s): no %s annotation", l.Digest, l.MediaType, AnnotationFilepath)
			}
			c, err := cleanRel(p)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			if seen[c] {
				return nil, fmt.Errorf("layer %s: path %s appears twice", l.Digest, c)
			}
			seen[c] = true
			lp.path = c
		}
		j := byDigest[l.Digest]
		if j == nil {
			j = &blobJob{desc: l}
			byDigest[l.Digest] = j
			out = append(out, j)
		}
		j.layers = append(j.layers, lp)
	}
	return out, nil
}

type puller struct {
	c     *repoClient
	dir   *os.Root
	cache *os.Root // nil: no cache, blobs wait in DIR/.cairn-pull
	hooks ProgressHooks

	lim   Limits
	guard *diskGuard // nil: no look at the free disk while unpacking

	entries atomic.Int64 // tar entries read, against lim.MaxFiles

	downloaded atomic.Int64 // bytes from the registry, for PullResult

	subject v1.Hash // the manifest pulled, subject of its chunk index
	noDelta bool
	delta   deltaState

	mu      sync.Mutex
	files   []File
	deltas  []DeltaStat
	links   map[string]bool // symbolic links made, for the final check
	created []string        // files, links and folders made, in order, for undo

	dirTimes map[string]dirTime // folders of tar layers, given their mtime last (under mu)
}

// made records rel as created by this pull (removed again if it fails).
func (p *puller) made(rel string) {
	p.mu.Lock()
	p.created = append(p.created, rel)
	p.mu.Unlock()
}

// undo removes what the pull made, newest first (folders once empty); all
// is true after failures retrying cannot fix (the downloads waiting in
// DIR/.cairn-pull go too; otherwise they stay to resume from).
func (p *puller) undo(all bool) {
	p.mu.Lock()
	created := p.created
	p.created = nil
	p.mu.Unlock()
	for i := len(created) - 1; i >= 0; i-- {
		_ = p.dir.Remove(created[i])
	}
	if all && p.cache == nil {
		_ = p.dir.RemoveAll(workDir)
	}
}

// permanentPullError reports whether err is about the artifact (retrying
// gets the same result), not the way to it.
func permanentPullError(err error) bool {
	return errors.Is(err, ErrLimit) || errors.Is(err, ErrUnsafePath) || errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrNotModel)
}

// countEntry counts one tar entry against lim.MaxFiles.
func (p *puller) countEntry() error {
	if n := p.entries.Add(1); p.lim.MaxFiles > 0 && n > int64(p.lim.MaxFiles) {
		return fmt.Errorf("%w: the model's tar layers hold more than %d entries (max files, --max-files)", ErrLimit, p.lim.MaxFiles)
	}
	return nil
}

// mkdirAll makes the folder rel and its parents under DIR, recording the
// ones it made.
func (p *puller) mkdirAll(rel string) error {
	parts := strings.Split(rel, "/")
	for i := range parts {
		q := strings.Join(parts[:i+1], "/")
		fi, err := p.dir.Lstat(q)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("make folder %s: %s is not a folder", rel, q)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := p.dir.Mkdir(q, 0o755); err != nil {
			if fi, serr := p.dir.Lstat(q); serr == nil && fi.IsDir() {
				continue // made meanwhile by another layer
			}
			return err
		}
		p.made(q)
	}
	return nil
}

// prepare makes the parent folders of rel under DIR, refusing links.
func (p *puller) prepare(rel string) error {
	if err := checkParents(p.dir, rel); err != nil {
		return err
	}
	if d := path.Dir(rel); d != "." {
		if err := p.mkdirAll(d); err != nil {
			return rootErr(rel, err)
		}
	}
	return nil
}

// checkDisk checks, before anything is downloaded, that the disks of dir and
// of the cache have room for the declared sizes plus the reserve, and sets
// the guard that watches the free space while tar layers unpack.
func (p *puller) checkDisk(jobs []*blobJob, dir, cacheDir string) error {
	if p.lim.DiskReserve < 0 {
		return nil
	}
	need := map[string]int64{dir: 0}
	paths := []string{dir}
	if cacheDir != "" {
		need[cacheDir] = 0
		paths = append(paths, cacheDir)
	}
	for _, j := range jobs {
		size := j.desc.Size
		cached := false
		if p.cache != nil {
			_, err := p.cache.Stat("blobs/sha256/" + j.desc.Digest.Hex)
			cached = err == nil
		}
		if !cached {
			if cacheDir != "" {
				need[cacheDir] += size
			} else {
				need[dir] += size
			}
		}
		raw := 0
		for _, l := range j.layers {
			if !l.f.tar {
				raw++
			}
		}
		if cacheDir == "" && raw > 0 {
			raw-- // the last one is renamed into place
		}
		need[dir] += int64(raw) * size
	}
	p.guard = &diskGuard{paths: paths, reserve: p.lim.DiskReserve}
	return checkDisk(need, p.lim.DiskReserve)
}

func (p *puller) madeLink(rel string) {
	p.mu.Lock()
	if p.links == nil {
		p.links = map[string]bool{}
	}
	p.links[rel] = true
	p.mu.Unlock()
}

func (p *puller) addFile(f File) {
	p.mu.Lock()
	p.files = append(p.files, f)
	p.mu.Unlock()
}

func label(j *blobJob) string {
	if p := j.layers[0].path; p != "" {
		return p
	}
	return j.desc.Digest.String()
}

// pullBlob downloads one blob (unless its files are already in place) and
// writes the files of every layer made of it.
func (p *puller) pullBlob(ctx context.Context, j *blobJob) (err error) {
	name := label(j)
	d := j.desc
	if p.hooks.Start != nil {
		p.hooks.Start(name, d.Size)
	}
	if p.hooks.Done != nil {
		defer func() { p.hooks.Done(name, err) }()
	}

	// Raw files already in place (a resumed pull) are kept after checking them.
	if allRaw(j) {
		done := true
		for _, l := range j.layers {
			if !fileMatches(p.dir, l.path, d) {
				done = false
				break
			}
		}
		if done {
			if p.hooks.Progress != nil {
				p.hooks.Progress(name, d.Size)
			}
			for _, l := range j.layers {
				if err := p.applyMetadata(l.path, l.desc.Annotations); err != nil {
					return fmt.Errorf("file metadata of %s: %w", l.path, err)
				}
				p.addFile(File{Path: l.path, Digest: d.Digest.String(), Size: d.Size, Kind: l.f.kind})
			}
			return nil
		}
	}

	// Where the verified blob is: in the cache, or waiting in DIR/.cairn-pull.
	blobRoot, blobRel := p.dir, workDir+"/sha256-"+d.Digest.Hex
	verified := false
	if p.cache != nil {
		blobRoot, blobRel = p.cache, "blobs/sha256/"+d.Digest.Hex
		// One download per blob at a time across processes sharing the cache.
		lock, err := p.cache.OpenFile("locks/"+d.Digest.Hex, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("layer %s: lock cache: %w", name, err)
		}
		defer lock.Close()
		if err := lockFile(lock); err != nil {
			return fmt.Errorf("layer %s: lock cache: %w", name, err)
		}
		if _, err := p.cache.Stat(blobRel); err == nil {
			verified = false // cached: checked while it is copied (raw) or before extraction (tar)
			if p.hooks.Progress != nil {
				p.hooks.Progress(name, d.Size)
			}
		} else {
			if ok, err := p.tryDelta(ctx, j, p.cache, blobRel+".partial", name); err != nil {
				return err
			} else if !ok {
				if err := p.downloadRetrying(ctx, p.cache, blobRel+".partial", d, name, &j.got); err != nil {
					return err
				}
			}
			if err := p.cache.Rename(blobRel+".partial", blobRel); err != nil {
				return fmt.Errorf("layer %s: %w", name, err)
			}
			verified = true
		}
		p.keepIndex(d)
	} else {
		if ok, err := p.tryDelta(ctx, j, p.dir, blobRel, name); err != nil {
			return err
		} else if !ok {
			if err := p.downloadRetrying(ctx, p.dir, blobRel, d, name, &j.got); err != nil {
				return err
			}
		}
		verified = true
	}

	for i, l := range j.layers {
		var err error
		if l.f.tar {
			if !verified {
				if !fileMatches(blobRoot, blobRel, d) {
					_ = blobRoot.Remove(blobRel)
					return fmt.Errorf("layer %s: cached blob %s: %w", name, d.Digest, ErrDigestMismatch)
				}
				verified = true
			}
			err = p.extract(blobRoot, blobRel, l)
			if errors.Is(err, ErrLimit) && blobRoot == p.cache {
				_ = p.cache.Remove(blobRel) // a bomb: no use keeping it
			}
		} else {
			last := i == len(j.layers)-1
			if p.cache == nil && last {
				err = p.moveInto(blobRel, l)
			} else {
				err = p.copyInto(blobRoot, blobRel, l, verified)
			}
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", layerLabel(l), err)
		}
	}
	if p.cache == nil {
		_ = p.dir.Remove(blobRel)
	}
	return nil
}

func layerLabel(l layerPlan) string {
	if l.path != "" {
		return l.path
	}
	return l.desc.Digest.String()
}

func allRaw(j *blobJob) bool {
	for _, l := range j.layers {
		if l.f.tar {
			return false
		}
	}
	return true
}

// fileMatches reports whether rel is a regular file with d's size and digest.
func fileMatches(root *os.Root, rel string, d v1.Descriptor) bool {
	fi, err := root.Lstat(rel)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != d.Size {
		return false
	}
	f, err := root.Open(rel)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	buf := getBuf()
	defer putBuf(buf)
	if _, err := io.CopyBuffer(h, f, *buf); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == d.Digest.Hex
}

// attempts is how many times a transfer is tried before giving up; each
// attempt of a download resumes from the bytes the previous one got.
const attempts = 3

// downloadRetrying retries download after broken transfers (not after a
// digest mismatch or a cancelled context).
func (p *puller) downloadRetrying(ctx context.Context, root *os.Root, rel string, d v1.Descriptor, name string, got *atomic.Int64) error {
	var err error
	for i := 0; i < attempts; i++ {
		if err = p.download(ctx, root, rel, d, name, got); err == nil || errors.Is(err, ErrDigestMismatch) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// download fetches blob d into rel under root, resuming from the bytes rel
// already holds (HTTP Range; from scratch when the registry ignores it), and
// verifies size and digest. On a mismatch rel is removed; on a broken
// transfer it is kept for the next attempt.
func (p *puller) download(ctx context.Context, root *os.Root, rel string, d v1.Descriptor, name string, got *atomic.Int64) error {
	f, err := root.OpenFile(rel, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("layer %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("layer %s: %w", name, err)
	}
	have := fi.Size()
	h := sha256.New()
	bufp := getBuf()
	defer putBuf(bufp)
	buf := *bufp
	restart := func() error {
		h.Reset()
		have = 0
		if err := f.Truncate(0); err != nil {
			return err
		}
		_, err := f.Seek(0, io.SeekStart)
		return err
	}
	if have > d.Size {
		if err := restart(); err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
	}
	if have > 0 {
		if _, err := io.CopyBuffer(h, io.LimitReader(f, have), buf); err != nil {
			return fmt.Errorf("layer %s: read partial download: %w", name, err)
		}
	}
	if have == d.Size && d.Size > 0 {
		if hex.EncodeToString(h.Sum(nil)) == d.Digest.Hex {
			if p.hooks.Progress != nil {
				p.hooks.Progress(name, d.Size)
			}
			return nil
		}
		if err := restart(); err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
	}
	var body io.ReadCloser
	if have < d.Size || d.Size == 0 {
		var start int64
		body, start, err = p.c.fetchBlob(ctx, d.Digest, have, d.Size)
		if err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
		defer body.Close()
		if start != have {
			if err := restart(); err != nil {
				return fmt.Errorf("layer %s: %w", name, err)
			}
		}
		if p.hooks.Progress != nil && have > 0 {
			p.hooks.Progress(name, have)
		}
		if _, err := f.Seek(have, io.SeekStart); err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
		preallocate(f, d.Size)
		var r io.Reader = io.LimitReader(body, d.Size-have+1)
		if p.hooks.Progress != nil {
			r = &progressReader{r: r, path: name, fn: p.hooks.Progress}
		}
		n, err := io.CopyBuffer(io.MultiWriter(f, h), r, buf)
		p.downloaded.Add(n)
		got.Add(n)
		have += n
		if err != nil {
			return fmt.Errorf("layer %s: download %s (%d of %d bytes kept to resume): %w", name, d.Digest, have, d.Size, err)
		}
	}
	if have != d.Size || hex.EncodeToString(h.Sum(nil)) != d.Digest.Hex {
		f.Close()
		_ = root.Remove(rel)
		if have < d.Size {
			return fmt.Errorf("layer %s: download %s: %w: got %d of %d bytes", name, d.Digest, ErrDigestMismatch, have, d.Size)
		}
		return fmt.Errorf("layer %s: %w: blob %s", name, ErrDigestMismatch, d.Digest)
	}
	return nil
}

// moveInto renames the verified blob waiting in DIR/.cairn-pull to its file.
func (p *puller) moveInto(blobRel string, l layerPlan) error {
	if err := p.prepare(l.path); err != nil {
		return err
	}
	if err := p.dir.Rename(blobRel, l.path); err != nil {
		return rootErr(l.path, err)
	}
	p.made(l.path)
	if err := p.applyMetadata(l.path, l.desc.Annotations); err != nil {
		return fmt.Errorf("file metadata of %s: %w", l.path, err)
	}
	p.addFile(File{Path: l.path, Digest: l.desc.Digest.String(), Size: l.desc.Size, Kind: l.f.kind})
	return nil
}

// copyInto copies a blob to its file through a temporary name, verifying the
// digest on the way: cache blobs are checked again each time they are used,
// except one this pull has just downloaded and verified (then the kernel
// copies it, copy_file_range).
func (p *puller) copyInto(src *os.Root, blobRel string, l layerPlan, verified bool) error {
	in, err := src.Open(blobRel)
	if err != nil {
		return err
	}
	defer in.Close()
	if verified {
		if err := p.copyVerified(in, l); err != nil {
			return err
		}
		if err := p.applyMetadata(l.path, l.desc.Annotations); err != nil {
			return fmt.Errorf("file metadata of %s: %w", l.path, err)
		}
		p.addFile(File{Path: l.path, Digest: l.desc.Digest.String(), Size: l.desc.Size, Kind: l.f.kind})
		return nil
	}
	n, sum, err := p.writeFile(l.path, in, 0o644, &l.desc)
	if err != nil {
		if errors.Is(err, ErrDigestMismatch) && src == p.cache {
			_ = src.Remove(blobRel)
		}
		return err
	}
	if err := p.applyMetadata(l.path, l.desc.Annotations); err != nil {
		return fmt.Errorf("file metadata of %s: %w", l.path, err)
	}
	p.addFile(File{Path: l.path, Digest: sum, Size: n, Kind: l.f.kind})
	return nil
}

// copyVerified copies a verified blob to its file through a temporary name.
func (p *puller) copyVerified(in *os.File, l layerPlan) error {
	if err := p.prepare(l.path); err != nil {
		return err
	}
	tmp := tempName(l.path)
	f, err := p.dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return rootErr(l.path, err)
	}
	preallocate(f, l.desc.Size)
	n, err := io.Copy(f, in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != l.desc.Size {
		err = fmt.Errorf("copied %d bytes of %d", n, l.desc.Size)
	}
	if err != nil {
		_ = p.dir.Remove(tmp)
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	if err := p.dir.Rename(tmp, l.path); err != nil {
		_ = p.dir.Remove(tmp)
		return rootErr(l.path, err)
	}
	p.made(l.path)
	return nil
}

// writeFile writes r to rel under DIR through a temporary name and returns
// the size and digest written. With want, a size or digest other than want's
// fails with ErrDigestMismatch and nothing reaches rel.
func (p *puller) writeFile(rel string, r io.Reader, perm fs.FileMode, want *v1.Descriptor) (int64, string, error) {
	if err := p.prepare(rel); err != nil {
		return 0, "", err
	}
	tmp := tempName(rel)
	f, err := p.dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, "", rootErr(rel, err)
	}
	h := sha256.New()
	var w io.Writer = f
	if want == nil && p.guard != nil {
		w = guardedWriter{w: f, g: p.guard} // a size nobody declared
	}
	if want != nil {
		preallocate(f, want.Size)
	}
	buf := getBuf()
	n, err := io.CopyBuffer(io.MultiWriter(w, h), r, *buf)
	putBuf(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = p.dir.Remove(tmp)
		return 0, "", fmt.Errorf("write %s: %w", rel, err)
	}
	sum := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if want != nil && (n != want.Size || sum != want.Digest.String()) {
		_ = p.dir.Remove(tmp)
		return 0, "", fmt.Errorf("%w: blob %s (got %d bytes, %s)", ErrDigestMismatch, want.Digest, n, sum)
	}
	if err := p.dir.Rename(tmp, rel); err != nil {
		_ = p.dir.Remove(tmp)
		return 0, "", rootErr(rel, err)
	}
	p.made(rel)
	return n, sum, nil
}

// bufPool holds the 1 MiB copy buffers of pulls (a tar layer of many small
// files would otherwise allocate one per file) and of uploads.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }
