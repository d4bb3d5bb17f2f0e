package datasets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cairn-dev/cairn/registry/blobs"
)

// Entry types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// TreeVersion is the only encoding version Decode accepts.
const TreeVersion = 1

// maxTreeSize bounds the encoded tree ReadTree accepts (about two million
// entries): trees are metadata and are read whole.
const maxTreeSize = 512 << 20

// Chunk is one content-defined piece of a large file, stored as a blob.
type Chunk struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Entry is one path of a dataset version. Fields are declared in the
// alphabetical order of their JSON names; the encoding depends on it.
type Entry struct {
	// Chunks of a large file, in order; empty when the whole content is one
	// blob named by Digest.
	Chunks []Chunk `json:"chunks,omitempty"`
	// Digest is the sha256 of the whole file content (files only).
	Digest string `json:"digest,omitempty"`
	// Mode holds the permission bits (0o777 at most).
	Mode uint32 `json:"mode"`
	// Path is slash-separated, relative, clean, never ".." or absolute.
	Path string `json:"path"`
	// Size of the file content in bytes (files only).
	Size int64 `json:"size,omitempty"`
	// Target of a symlink, relative and inside the tree.
	Target string `json:"target,omitempty"`
	// Type is file, dir or symlink.
	Type string `json:"type"`
}

// Tree is a dataset version: entries sorted by path (byte order), each path
// once, every parent folder listed before its children.
type Tree struct {
	Entries []Entry `json:"entries"`
	Version int     `json:"version"`
}

// Encode returns the canonical encoding of t: compact JSON (no spaces, no
// trailing newline) with object keys in alphabetical order, the entries
// sorted by path, empty optional fields omitted and mode in decimal, e.g.
//
//	{"entries":[{"mode":493,"path":"d","type":"dir"},{"digest":"sha256:…","mode":420,"path":"d/a.csv","size":12,"type":"file"}],"version":1}
//
// The version's digest is the sha256 of these bytes. Encode validates t.
func Encode(t *Tree) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return encode(t)
}

func encode(t *Tree) ([]byte, error) {
	c := *t
	if c.Entries == nil {
		c.Entries = []Entry{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encode tree: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Digest returns the digest of t ("sha256:<hex>").
func (t *Tree) Digest() (string, error) {
	b, err := Encode(t)
	if err != nil {
		return "", err
	}
	return blobs.Digest(b), nil
}

// Lookup returns the entry at path p.
func (t *Tree) Lookup(p string) (Entry, bool) {
	lo, hi := 0, len(t.Entries)
	for lo < hi {
		m := (lo + hi) / 2
		if t.Entries[m].Path < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(t.Entries) && t.Entries[lo].Path == p {
		return t.Entries[lo], true
	}
	return Entry{}, false
}

// ErrInvalidTree marks a tree that fails validation or is not canonical.
var ErrInvalidTree = errors.New("invalid dataset tree")

// Decode parses a canonical tree encoding. Anything Encode would not have
// produced byte for byte (other key order, spaces, unknown fields, unsorted
// or unsafe paths) is refused with ErrInvalidTree.
func Decode(b []byte) (*Tree, error) {
	t := &Tree{Version: TreeVersion, Entries: []Entry{}}
	v := newValidator()
	err := decodeStream(bytes.NewReader(b), func(e Entry) error {
		t.Entries = append(t.Entries, e)
		return v.add(e)
	})
	if err != nil {
		return nil, err
	}
	if err := v.finish(); err != nil {
		return nil, err
	}
	return t, nil
}

// ReadTree fetches the tree with digest from store and verifies it.
func ReadTree(ctx context.Context, store blobs.Store, digest string) (*Tree, error) {
	if _, err := blobs.ParseDigest(digest); err != nil {
		return nil, err
	}
	key := blobs.TreeKey(digest)
	info, err := store.Stat(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
	}
	if info.Size > maxTreeSize {
		return nil, fmt.Errorf("read tree %s: %d bytes, more than the %d allowed", digest, info.Size, maxTreeSize)
	}
	rc, err := store.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
	}
	defer rc.Close()
	vr, err := blobs.NewVerifyReader(rc, info.Size, digest)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(vr)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
	}
	t, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
	}
	return t, nil
}

// CheckPath refuses paths that are empty, absolute, unclean, contain ".."
// or NUL, or are not UTF-8.
func CheckPath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("empty path")
	case !utf8.ValidString(p):
		return fmt.Errorf("path %q is not UTF-8", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("path %q contains NUL", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path %q contains ..", p)
		}
	}
	return nil
}

// checkLink refuses a symlink target that is absolute or leaves the root
// when resolved from the link's folder.
func checkLink(p, target string) error {
	if target == "" || !utf8.ValidString(target) || strings.ContainsRune(target, 0) {
		return fmt.Errorf("symlink %s: invalid target %q", p, target)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("symlink %s: absolute target %q", p, target)
	}
	r := path.Join(path.Dir(p), target)
	if r == ".." || strings.HasPrefix(r, "../") {
		return fmt.Errorf("symlink %s: target %q escapes the root", p, target)
	}
	return nil
}

// maxLinkHops bounds the links followed while resolving one target (as
// Linux's limit of 40).
const maxLinkHops = 40

// checkLinks resolves the target of every symlink of entries (sorted, each
// checked by checkLink) lexically through the other symlinks of the tree,
// as the links will be once pulled, and refuses a target that leaves the
// root that way: "d" -> "." with "s" -> "d/.." would point s at the parent
// of the root. A ".." may only step back out of a folder of the tree; after
// a file, a symlink that cannot be followed or a name the tree does not
// hold, the outcome would depend on what else is on disk, so it is refused.
func checkLinks(entries []Entry) error {
	dirs := map[string]bool{}
	links := map[string]string{}
	for _, e := range entries {
		switch e.Type {
		case TypeDir:
			dirs[e.Path] = true
		case TypeSymlink:
			links[e.Path] = e.Target
		}
	}
	return checkLinkMaps(dirs, links)
}

// checkLinkMaps is checkLinks over the tree's folders and symlinks (path
// to target), in path order.
func checkLinkMaps(dirs map[string]bool, links map[string]string) error {
	for _, p := range slices.Sorted(maps.Keys(links)) {
		if err := resolveLink(p, links[p], dirs, links); err != nil {
			return fmt.Errorf("symlink %s: %w", p, err)
		}
	}
	return nil
}

// resolveLink resolves target from the folder of the link at p, following
// links on the way, and fails when the result leaves the root.
func resolveLink(p, target string, dirs map[string]bool, links map[string]string) error {
	var stack []string // the folders walked into, from the root
	if d := path.Dir(p); d != "." {
		stack = strings.Split(d, "/")
	}
	queue := strings.Split(target, "/")
	hops, via := 0, ""
	escapes := func() error {
		if via != "" {
			return fmt.Errorf("target %q escapes the root through the symlink %s", target, via)
		}
		return fmt.Errorf("target %q escapes the root", target)
	}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return escapes()
			}
			if top := strings.Join(stack, "/"); !dirs[top] {
				return fmt.Errorf("target %q steps out of %s with .., and %s is not a folder of the tree", target, top, top)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		next := strings.Join(append(stack[:len(stack):len(stack)], c), "/")
		t, ok := links[next]
		if !ok {
			stack = append(stack, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return fmt.Errorf("target %q: more than %d symlinks to follow", target, maxLinkHops)
		}
		if t == "" || strings.HasPrefix(t, "/") {
			return fmt.Errorf("target %q goes through the symlink %s, which points to %q", target, next, t)
		}
		via = next
		queue = append(strings.Split(t, "/"), queue...)
	}
	return nil
}

// Validate checks the invariants of a tree: version, sorted unique safe
// paths, parents listed as folders, well-formed digests, chunk sizes adding
// up, symlink targets inside the tree (also when followed through the other
// symlinks of the tree).
func (t *Tree) Validate() error {
	if t.Version != TreeVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrInvalidTree, t.Version, TreeVersion)
	}
	v := newValidator()
	for _, e := range t.Entries {
		if err := v.add(e); err != nil {
			return err
		}
	}
	return v.finish()
}
