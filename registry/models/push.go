package models

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// source is one file to push.
type source struct {
	abs      string // where it is on disk
	rel      string // its filepath in the artifact
	size     int64
	kind     string
	mode     fs.FileMode
	mtime    time.Time
	uid, gid uint32
	kitModel bool // the model file of a KitOps push
}

// Push packs files and folders as a ModelPack artifact and pushes it to ref
// (a tag). A file is stored under its base name, a folder's files under their
// paths relative to the folder. Each file becomes one raw layer, read once:
// hashed while it uploads. It returns the digest-pinned reference. With
// opts.Platform, the manifest becomes the variant for that platform in the
// image index tagged ref, and the reference pins the index.
func Push(ctx context.Context, ref string, paths []string, opts PushOptions) (*PushResult, error) {
	r, err := parseRef(ref, opts.Options)
	if err != nil {
		return nil, err
	}
	tag, ok := r.(name.Tag)
	if !ok {
		return nil, fmt.Errorf("push %s: the reference must be a tag, not a digest", ref)
	}
	for n, d := range opts.TrainedOn {
		if n == "" || !reDigest.MatchString(d) {
			return nil, fmt.Errorf("push %s: trained-on %s=%s: want NAME=sha256:<64 hex>", ref, n, d)
		}
	}
	var platform *v1.Platform
	if opts.Platform != "" {
		if platform, err = parsePlatform(opts.Platform); err != nil {
			return nil, fmt.Errorf("push %s: %w", ref, err)
		}
	}
	lf, err := checkLayerFormat(opts.LayerFormat)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	srcs, err := collect(paths, opts.Kinds)
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("push %s: no files in %s", ref, strings.Join(paths, ", "))
	}
	if lf == LayerFormatKitOps {
		kitOrder(srcs)
	}
	c, err := newRepoClient(ctx, tag.Context(), opts.Options, true)
	if err != nil {
		return nil, err
	}

	var total int64
	for _, s := range srcs {
		total += s.size
	}
	hooks := opts.Progress
	if hooks.Total != nil {
		hooks.Total(total)
	}
	var cache *digestCache
	if opts.DigestCache != "" {
		cache = &digestCache{dir: opts.DigestCache}
	}
	layers := make([]v1.Descriptor, len(srcs))
	fileDigests := make([]string, len(srcs)) // of tar layers' files
	indexes := make([]*LayerChunks, len(srcs))
	versions := make([]string, len(srcs)) // of the indexed files, before they are read
	fresh := make([]bool, len(srcs))      // indexes chunked now, not from the cache
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs(opts.Jobs))
	for i, s := range srcs {
		if !opts.NoChunkIndex && lf == LayerFormatRaw && s.size >= DeltaThreshold {
			versions[i] = versionOf(s.abs)
			// The digest cache has the index of a file pushed before as it
			// is now; else a second read of the file, from the page cache,
			// alongside the upload: the chunk index (see pushChunkIndex).
			// Its layer digest is the upload's.
			if l := cache.chunks(s.abs); l != nil {
				indexes[i] = l
			} else {
				fresh[i] = true
				g.Go(func() error {
					l, err := chunkLayer(gctx, s.abs)
					if err != nil {
						return fmt.Errorf("chunk index of %s: %w", s.rel, err)
					}
					indexes[i] = l
					return nil
				})
			}
		}
		g.Go(func() error {
			if lf != LayerFormatRaw {
				h, size, fd, err := pushTarRetrying(gctx, c, s, hooks)
				if err != nil {
					return fmt.Errorf("push layer %s: %w", s.rel, err)
				}
				layers[i], fileDigests[i] = tarLayerDescriptor(s, h, size, lf), fd
				return nil
			}
			var h v1.Hash
			var err error
			for try := 0; try < attempts; try++ { // a failed upload is sent again from the start
				if h, err = pushFile(gctx, c, s, hooks, cache); err == nil || gctx.Err() != nil {
					break
				}
			}
			if err != nil {
				return fmt.Errorf("push layer %s: %w", s.rel, err)
			}
			layers[i] = v1.Descriptor{
				MediaType: types.MediaType(rawMediaType(s.kind)),
				Digest:    h,
				Size:      s.size,
				Annotations: map[string]string{
					AnnotationFilepath:     s.rel,
					annotationTitle:        s.rel,
					AnnotationFileMetadata: fileMetadata(s),
				},
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	cfgType, artifactType, build := MediaTypeModelConfig, ArtifactTypeModelManifest, buildConfig
	if lf == LayerFormatKitOps {
		cfgType, artifactType, build = MediaTypeKitOpsConfig, ArtifactTypeKitOpsManifest, buildKitfile
	}
	cfg, err := build(srcs, layers, opts)
	if err != nil {
		return nil, err
	}
	cfgDesc, err := pushBytes(ctx, c, cfg, cfgType)
	if err != nil {
		return nil, fmt.Errorf("push config: %w", err)
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        cfgDesc,
		Layers:        layers,
		Annotations:   manifestAnnotations(opts),
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	mdesc := descriptorOf(mb, string(types.OCIManifestSchema1))
	res := &PushResult{Size: total + cfgDesc.Size}
	if platform == nil {
		if err := c.putManifest(ctx, tag.TagStr(), mb, string(types.OCIManifestSchema1)); err != nil {
			return nil, err
		}
		res.Digest = mdesc.Digest.String()
	} else {
		if err := c.putManifest(ctx, mdesc.Digest.String(), mb, string(types.OCIManifestSchema1)); err != nil {
			return nil, err
		}
		idesc, err := c.addVariant(ctx, tag.TagStr(), mdesc, platform, artifactType)
		if err != nil {
			return nil, err
		}
		// Tools that cannot read an image index (modctl, kit) pull the
		// variant by its own tag.
		if err := c.putManifest(ctx, PlatformTag(tag.TagStr(), opts.Platform), mb, string(types.OCIManifestSchema1)); err != nil {
			return nil, err
		}
		res.PlatformTag = PlatformTag(tag.TagStr(), opts.Platform)
		res.Digest = idesc.Digest.String()
		res.Manifest = mdesc.Digest.String()
	}
	res.Ref = tag.Context().Name() + "@" + res.Digest
	var chunked []LayerChunks
	for i, l := range indexes {
		if l == nil {
			continue
		}
		// The upload and the chunker read the file each in turn: the index
		// describes the layer only if the file stayed the same version
		// (statKey: a write changes its ctime) throughout.
		// A cached index was the file's at the start: it must be the
		// uploaded (or mounted) layer's.
		if l.Size != layers[i].Size || versions[i] == "" || versionOf(srcs[i].abs) != versions[i] ||
			!fresh[i] && l.Digest != layers[i].Digest.String() {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s changed while it was pushed: no chunk index for it", srcs[i].rel))
			continue
		}
		if fresh[i] {
			l.Digest = layers[i].Digest.String()
			if key := statKey(srcs[i].abs); key == versions[i] {
				cache.putChunks(key, srcs[i].abs, l)
			}
		}
		chunked = append(chunked, *l)
	}
	if len(chunked) > 0 {
		d, err := pushChunkIndex(ctx, c, mdesc, chunked)
		if err != nil {
			// The model is pushed and complete; pulls of it download
			// whole files.
			res.Warnings = append(res.Warnings, fmt.Sprintf("chunk index not pushed (pulls will download whole files): %v", err))
		} else {
			res.ChunkIndex = d
		}
	}
	for i, s := range srcs {
		d := layers[i].Digest.String()
		if fileDigests[i] != "" {
			d = fileDigests[i]
		}
		res.Files = append(res.Files, File{Path: s.rel, Digest: d, Size: s.size, Kind: s.kind})
	}
	return res, nil
}

func jobs(n int) int {
	if n <= 0 {
		return 4
	}
	return n
}

// pushFile streams one file to the registry and returns its digest. When
// the digest cache knows the file, the registry is asked first whether it
// has the blob or can mount it from a repository it was pushed to before.
func pushFile(ctx context.Context, c *repoClient, s source, hooks ProgressHooks, cache *digestCache) (h v1.Hash, err error) {
	if hooks.Start != nil {
		hooks.Start(s.rel, s.size)
	}
	if hooks.Done != nil {
		defer func() { hooks.Done(s.rel, err) }()
	}
	here := c.repo.Name()
	known, key := cache.get(s.abs)
	if known != nil {
		kh, err := v1.NewHash(known.Digest)
		if err == nil && reusable(ctx, c, kh, known, here) {
			if hooks.Progress != nil {
				hooks.Progress(s.rel, s.size)
			}
			cache.put(key, known.Digest, here, known)
			return kh, nil
		}
	}
	f, err := os.Open(s.abs)
	if err != nil {
		return v1.Hash{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if hooks.Progress != nil {
		r = &progressReader{r: f, path: s.rel, fn: hooks.Progress}
	}
	h, err = c.uploadBlob(ctx, r, s.size)
	if err != nil {
		return v1.Hash{}, err
	}
	if key != "" && statKey(s.abs) == key { // unchanged while it was read
		cache.put(key, h.String(), here, known)
	}
	return h, nil
}

// versionOf identifies the version of the file at path, for the check that
// it did not change while it was pushed: its statKey, else (off Linux) its
// size and mtime; "" when it cannot be read.
func versionOf(path string) string {
	if k := statKey(path); k != "" {
		return k
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", fi.Size(), fi.ModTime().UnixNano())
}

// reusable reports whether the repository has blob h, or got it mounted from
// a repository of the same registry it was pushed to before.
func reusable(ctx context.Context, c *repoClient, h v1.Hash, e *digestEntry, here string) bool {
	if ok, err := c.blobExists(ctx, h); err == nil && ok {
		return true
	}
	prefix := c.repo.RegistryStr() + "/"
	for i := len(e.Repos) - 1; i >= 0; i-- {
		r := e.Repos[i]
		if r == here || !strings.HasPrefix(r, prefix) {
			continue
		}
		if c.mountBlob(ctx, h, strings.TrimPrefix(r, prefix)) {
			return true
		}
	}
	return false
}

// pushBytes uploads a small blob unless the registry has it.
func pushBytes(ctx context.Context, c *repoClient, b []byte, mediaType string) (v1.Descriptor, error) {
	d := descriptorOf(b, mediaType)
	if ok, err := c.blobExists(ctx, d.Digest); err == nil && ok {
		return d, nil
	}
	if _, err := c.uploadBlob(ctx, strings.NewReader(string(b)), int64(len(b))); err != nil {
		return v1.Descriptor{}, err
	}
	return d, nil
}

func descriptorOf(b []byte, mediaType string) v1.Descriptor {
	h, n, _ := v1.SHA256(strings.NewReader(string(b)))
	return v1.Descriptor{MediaType: types.MediaType(mediaType), Digest: h, Size: n}
}

type progressReader struct {
	r    io.Reader
	path string
	fn   func(string, int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(p.path, int64(n))
	}
	return n, err
}

// collect lists the files to push, sorted by their path in the artifact.
func collect(paths []string, kinds map[string]string) ([]source, error) {
	for pat, k := range kinds {
		if !validKind(k) {
			return nil, fmt.Errorf("kind %q for %q: want weight, weight.config, doc, code or dataset", k, pat)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("kind pattern %q: %w", pat, err)
		}
	}
	seen := map[string]string{}
	var out []source
	add := func(abs, rel string, fi fs.FileInfo) error {
		if prev, ok := seen[rel]; ok {
			return fmt.Errorf("%s and %s would both be %s in the artifact", prev, abs, rel)
		}
		seen[rel] = abs
		uid, gid := owner(fi)
		out = append(out, source{abs: abs, rel: rel, size: fi.Size(), kind: kindFor(rel, kinds),
			mode: fi.Mode(), mtime: fi.ModTime().Truncate(time.Second), uid: uid, gid: gid})
		return nil
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
		if !fi.IsDir() {
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("push: %s is not a regular file", p)
			}
			if err := add(p, filepath.Base(p), fi); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == ".git" {
					return filepath.SkipDir
				}
				return nil
			}
			fi, err := os.Stat(f) // follows symlinks to files
			if err != nil {
				return err
			}
			if fi.IsDir() || !fi.Mode().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(p, f)
			if err != nil {
				return err
			}
			return add(f, filepath.ToSlash(rel), fi)
		})
		if err != nil {
			return nil, fmt.Errorf("push: walk %s: %w", p, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, nil
}

func kindFor(rel string, kinds map[string]string) string {
	// Most specific first: patterns sorted longest first.
	pats := make([]string, 0, len(kinds))
	for p := range kinds {
		pats = append(pats, p)
	}
	sort.Slice(pats, func(i, j int) bool {
		if len(pats[i]) != len(pats[j]) {
			return len(pats[i]) > len(pats[j])
		}
		return pats[i] < pats[j]
	})
	for _, p := range pats {
		if ok, _ := path.Match(p, rel); ok {
			return kinds[p]
		}
		if ok, _ := path.Match(p, path.Base(rel)); ok {
			return kinds[p]
		}
	}
	return KindOf(rel)
}

func buildConfig(srcs []source, layers []v1.Descriptor, opts PushOptions) ([]byte, error) {
	created := opts.Created
	if created.IsZero() {
		created = defaultCreated(srcs)
	}
	created = created.UTC().Truncate(time.Second)
	w := describeWeights(srcs)
	params := ModelParams{Format: w.format}
	if opts.Format != "" {
		params.Format = opts.Format
	}
	if w.params > 0 {
		params.ParamSize, params.Precision = paramSize(w.params), w.precision
	}
	cfg := ModelConfig{
		Descriptor: ModelDescriptor{
			CreatedAt: &created,
			Name:      opts.Name,
			Version:   opts.Version,
			SourceURL: opts.Source,
			Revision:  opts.Revision,
		},
		ModelFS: ModelFS{Type: "layers"},
		Config:  params,
	}
	for _, l := range layers {
		cfg.ModelFS.DiffIDs = append(cfg.ModelFS.DiffIDs, l.Digest.String()) // raw layers: diffID = digest
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b, nil
}

func manifestAnnotations(opts PushOptions) map[string]string {
	a := map[string]string{}
	for k, v := range opts.Annotations {
		a[k] = v
	}
	if opts.Source != "" {
		a[annotationSource] = opts.Source
	}
	if opts.Revision != "" {
		a[annotationRevision] = opts.Revision
	}
	if opts.Version != "" {
		a[annotationVersion] = opts.Version
	}
	if len(opts.TrainedOn) > 0 {
		b, _ := json.Marshal(opts.TrainedOn) // map keys are sorted
		a[AnnotationTrainedOn] = string(b)
	}
	if len(a) == 0 {
		return nil
	}
	return a
}

// defaultCreated is createdAt when PushOptions.Created is not set:
// SOURCE_DATE_EPOCH (seconds) when set, else the newest mtime of the files,
// so pushing the same folder again gives the same digest.
func defaultCreated(srcs []source) time.Time {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(n, 0)
		}
	}
	var newest time.Time
	for _, s := range srcs {
		if s.mtime.After(newest) {
			newest = s.mtime
		}
	}
	if newest.IsZero() {
		return time.Now()
	}
	return newest
}

// PlatformTag is the tag a variant pushed for platform is also pushed under,
// next to the image index at tag: TAG-os-arch[-variant][-accelerator]
// ("1.0", "linux/amd64+cuda" → "1.0-linux-amd64-cuda"), for tools that
// cannot read an index.
func PlatformTag(tag, platform string) string {
	return tag + "-" + strings.NewReplacer("/", "-", "+", "-").Replace(platform)
}
