package datasets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/cdc"
)

// Content-defined chunking parameters (package cdc, shared with
// registry/models' chunk indexes). They are part of the format: changing
// them changes the chunk digests (not the file digests) of new pushes, so
// deduplication against older versions would be lost.
const (
	Polynomial  = cdc.Polynomial
	MinChunk    = cdc.MinChunk
	MaxChunk    = cdc.MaxChunk
	averageBits = cdc.AverageBits
	// DefaultChunkThreshold: files at least this large are chunked.
	DefaultChunkThreshold = 4 << 20
	// DefaultWorkers bounds concurrent blob uploads.
	DefaultWorkers = 16
)

// Progress hooks; each may be nil and must be safe for concurrent use.
type Progress struct {
	// Start is called once with the number of files and bytes to process.
	Start func(files int, bytes int64)
	// Bytes is called as content is hashed (push) or written (pull).
	Bytes func(n int64)
}

func (p Progress) start(files int, n int64) {
	if p.Start != nil {
		p.Start(files, n)
	}
}

func (p Progress) bytes(n int64) {
	if p.Bytes != nil && n > 0 {
		p.Bytes(n)
	}
}

// PushOptions configure Push; the zero value is usable.
type PushOptions struct {
	// Workers bounds concurrent uploads (default DefaultWorkers).
	Workers int
	// ChunkThreshold: files of at least this size are chunked
	// (default DefaultChunkThreshold).
	ChunkThreshold int64
	// Profile also computes and stores a profile of the CSV files.
	Profile bool
	// ProfileBins is the histogram bin count (default DefaultBins).
	ProfileBins int
	// CacheDir, when set with StoreID, keeps a push cache there (see
	// cache.go): an unchanged file is not read again, and blobs of the
	// previous push to the same store from the same folder are not checked.
	CacheDir string
	// StoreID names the store in the cache, typically its URL.
	StoreID  string
	Progress Progress
}

// PushResult summarises a push. Byte counts are of file content; the tree
// and profile objects are not counted.
type PushResult struct {
	Digest        string `json:"digest"`
	Files         int    `json:"files"`
	Bytes         int64  `json:"bytes"`
	UploadedBytes int64  `json:"uploadedBytes"`
	ReusedBytes   int64  `json:"reusedBytes"`
}

// pushState is shared by the workers of one push.
type pushState struct {
	ctx      context.Context
	store    blobs.Store
	opts     PushOptions
	uploaded atomic.Int64
	reused   atomic.Int64
	mu       sync.Mutex
	claimed  map[string]bool // blob keys this push has already put or is putting
	known    map[string]bool // blob digests the previous tree vouches for
	// listed holds every blob in the store when listing it was cheap
	// (blind is then set), so absent blobs go up without a Stat first.
	listed map[string]bool
	blind  blobs.BlindPutter
	bufs   sync.Pool
	bigSem chan struct{} // bounds concurrent chunkers (CPU-bound)
}

// Push versions the file or folder at root into store and returns its digest.
// Symlinks are stored as links, never followed; a link pointing outside root
// is refused. Identical content (whole small files or chunks of large ones)
// is stored once, and blobs the store already holds are not uploaded again.
func Push(ctx context.Context, store blobs.Store, root string, opts PushOptions) (*PushResult, error) {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.ChunkThreshold <= 0 {
		opts.ChunkThreshold = DefaultChunkThreshold
	}
	started := time.Now()
	tree, locals, fps, err := scan(root)
	if err != nil {
		return nil, err
	}
	var prev *Tree
	var prevFps map[string]fingerprint
	var cacheFile string
	if opts.CacheDir != "" && opts.StoreID != "" {
		cacheFile = cachePath(opts.CacheDir, opts.StoreID, root)
		prev, prevFps = loadCache(ctx, store, cacheFile)
	}
	res := &PushResult{}
	for _, e := range tree.Entries {
		if e.Type == TypeFile {
			res.Files++
			res.Bytes += e.Size
		}
	}
	opts.Progress.start(res.Files, res.Bytes)

	s := &pushState{ctx: ctx, store: store, opts: opts, claimed: map[string]bool{}, known: map[string]bool{},
		bigSem: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))}
	if prev != nil {
		for _, e := range prev.Entries {
			if e.Type != TypeFile {
				continue
			}
			if e.Chunks == nil {
				s.known[e.Digest] = true
			}
			for _, c := range e.Chunks {
				s.known[c.Digest] = true
			}
		}
	}
	s.bufs.New = func() any { b := make([]byte, opts.ChunkThreshold); return &b }

	g, gctx := errgroup.WithContext(ctx)
	s.ctx = gctx
	g.SetLimit(opts.Workers)
	// Large files first: they take longest, and small ones fill in around them.
	order := make([]int, 0, res.Files)
	for i, e := range tree.Entries {
		if e.Type == TypeFile {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return tree.Entries[order[a]].Size > tree.Entries[order[b]].Size })
	// Files unchanged since the cached push take their digests from it.
	todo := order[:0:0]
	var expectBlobs int64
	for _, i := range order {
		e := &tree.Entries[i]
		if prev != nil {
			if fp, ok := prevFps[e.Path]; ok && fp == fps[i] {
				if pe, ok := prev.Lookup(e.Path); ok && pe.Type == TypeFile && pe.Size == e.Size {
					e.Digest, e.Chunks = pe.Digest, pe.Chunks
					s.reused.Add(e.Size)
					opts.Progress.bytes(e.Size)
					continue
				}
			}
		}
		todo = append(todo, i)
		expectBlobs += 1 + e.Size/(MinChunk+1<<averageBits)
	}
	s.listStore(expectBlobs)
	for _, i := range todo {
		e := &tree.Entries[i]
		local := locals[i]
		g.Go(func() error {
			var err error
			if e.Size >= opts.ChunkThreshold {
				err = s.pushLarge(e, local)
			} else {
				err = s.pushSmall(e, local)
			}
			if err != nil {
				return fmt.Errorf("push %s: %w", e.Path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	enc, err := Encode(tree)
	if err != nil {
		return nil, err
	}
	res.Digest = blobs.Digest(enc)
	if opts.Profile {
		prof, err := ProfileTree(ctx, tree, locals, opts.ProfileBins)
		if err != nil {
			return nil, err
		}
		if err := writeProfile(ctx, store, res.Digest, prof); err != nil {
			return nil, err
		}
	}
	// The tree goes last: a tree in the store means all its blobs are there.
	if _, err := store.Put(ctx, blobs.TreeKey(res.Digest), strings.NewReader(string(enc)), int64(len(enc)), res.Digest); err != nil {
		return nil, fmt.Errorf("push tree %s: %w", res.Digest, err)
	}
	if cacheFile != "" {
		cur := make(map[string]fingerprint, res.Files)
		for i, e := range tree.Entries {
			if e.Type == TypeFile {
				cur[e.Path] = fps[i]
			}
		}
		saveCache(cacheFile, res.Digest, cur, started)
	}
	res.UploadedBytes = s.uploaded.Load()
	res.ReusedBytes = s.reused.Load()
	return res, nil
}

// errTooMany stops a listing that is not worth finishing.
var errTooMany = errors.New("too many blobs to list")

// listStore lists the store's blobs once when the store charges a round
// trip per Stat (a BlindPutter) and holds at most a few times as many blobs
// as this push may write: then one listing replaces a Stat per blob. A
// store with many more blobs is not listed to the end.
func (s *pushState) listStore(expect int64) {
	bp, ok := s.store.(blobs.BlindPutter)
	if !ok || expect == 0 {
		return
	}
	limit := 4*expect + 1000
	listed := map[string]bool{}
	err := s.store.List(s.ctx, "blobs/sha256/", func(i blobs.Info) error {
		if int64(len(listed)) >= limit {
			return errTooMany
		}
		listed[i.Key] = true
		return nil
	})
	if err != nil {
		return // fall back to Put's own check
	}
	s.listed, s.blind = listed, bp
}

// claim reports whether this push should put key (false: another worker of
// this push already does).
func (s *pushState) claim(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claimed[key] {
		return false
	}
	s.claimed[key] = true
	return true
}

// put uploads one blob unless already claimed or present, and counts it.
func (s *pushState) put(digest string, size int64, r io.Reader) error {
	key := blobs.BlobKey(digest)
	if s.known[digest] || s.listed[key] || !s.claim(key) {
		s.reused.Add(size)
		return nil
	}
	if s.blind != nil {
		if err := s.blind.PutBlind(s.ctx, key, r, size, digest); err != nil {
			return err
		}
		s.uploaded.Add(size)
		return nil
	}
	written, err := s.store.Put(s.ctx, key, r, size, digest)
	if err != nil {
		return err
	}
	if written {
		s.uploaded.Add(size)
	} else {
		s.reused.Add(size)
	}
	return nil
}

// pushSmall reads a file below the chunk threshold into a pooled buffer,
// hashes it, and puts it as one blob.
func (s *pushState) pushSmall(e *Entry, local string) error {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := (*bp)[:e.Size]
	if _, err := io.ReadFull(f, buf); err != nil {
		return fmt.Errorf("read: %w (changed while pushing?)", err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return errors.New("file grew while pushing")
	}
	sum := sha256.Sum256(buf)
	e.Digest = "sha256:" + hex.EncodeToString(sum[:])
	s.opts.Progress.bytes(e.Size)
	return s.put(e.Digest, e.Size, &byteReader{b: buf})
}

// pushLarge splits a file into content-defined chunks and uploads each
// chunk straight from the file (a section reader), so memory stays flat.
func (s *pushState) pushLarge(e *Entry, local string) error {
	select {
	case s.bigSem <- struct{}{}:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	held := true
	release := func() {
		if held {
			<-s.bigSem
			held = false
		}
	}
	defer release()
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	whole := sha256.New()
	g, _ := errgroup.WithContext(s.ctx)
	g.SetLimit(4)
	var chunks []Chunk
	off, err := cdc.Split(f, func(off int64, data []byte) error {
		whole.Write(data)
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		size := int64(len(data))
		chunks = append(chunks, Chunk{Digest: d, Size: size})
		sec := io.NewSectionReader(f, off, size)
		s.opts.Progress.bytes(size)
		g.Go(func() error { return s.put(d, size, sec) })
		return nil
	})
	if err != nil {
		g.Wait()
		return err
	}
	release() // chunking done; uploads may still run
	if err := g.Wait(); err != nil {
		return err
	}
	if off != e.Size {
		return fmt.Errorf("size changed while pushing: read %d bytes, expected %d", off, e.Size)
	}
	e.Digest = "sha256:" + hex.EncodeToString(whole.Sum(nil))
	e.Chunks = chunks
	return nil
}

type byteReader struct {
	b []byte
	i int
}

func (r *byteReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

// scan walks root without following symlinks and returns the tree (file
// digests not yet filled in) and the local path of each entry.
func scan(root string) (*Tree, []string, []fingerprint, error) {
	// The root itself may be a link the user named; nothing below it is followed.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("push %s: %w", root, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("push %s: %w", root, err)
	}
	t := &Tree{Version: TreeVersion, Entries: []Entry{}}
	var locals []string
	var fps []fingerprint
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return nil, nil, nil, fmt.Errorf("push %s: not a regular file or folder", root)
		}
		name := filepath.Base(root)
		if err := CheckPath(name); err != nil {
			return nil, nil, nil, fmt.Errorf("push %s: %w", root, err)
		}
		t.Entries = append(t.Entries, Entry{Path: name, Type: TypeFile, Mode: uint32(fi.Mode().Perm()), Size: fi.Size()})
		return t, []string{root}, []fingerprint{fingerprintOf(fi)}, nil
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !utf8.ValidString(rel) {
			return fmt.Errorf("%q: file name is not UTF-8", rel)
		}
		if err := CheckPath(rel); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := Entry{Path: rel, Mode: uint32(info.Mode().Perm())}
		switch {
		case info.Mode().IsRegular():
			e.Type, e.Size = TypeFile, info.Size()
		case info.IsDir():
			e.Type = TypeDir
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.Type, e.Target, e.Mode = TypeSymlink, filepath.ToSlash(target), 0o777
			if err := checkLink(rel, e.Target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %s", rel, info.Mode().Type())
		}
		t.Entries = append(t.Entries, e)
		locals = append(locals, p)
		fps = append(fps, fingerprintOf(info))
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("push %s: %w", root, err)
	}
	// WalkDir visits in lexical order of names, which is not byte order of
	// full paths ("a-b" sorts before "a/b"); sort both slices together.
	idx := make([]int, len(t.Entries))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return t.Entries[idx[a]].Path < t.Entries[idx[b]].Path })
	es := make([]Entry, len(idx))
	ls := make([]string, len(idx))
	fpl := make([]fingerprint, len(idx))
	for i, j := range idx {
		es[i], ls[i], fpl[i] = t.Entries[j], locals[j], fps[j]
	}
	t.Entries = es
	// A link may stay inside on its own yet leave root through another link
	// ("s" -> "d/.." with "d" -> "."); Pull would refuse such a tree.
	if err := checkLinks(t.Entries); err != nil {
		return nil, nil, nil, fmt.Errorf("push %s: %w", root, err)
	}
	return t, ls, fpl, nil
}
