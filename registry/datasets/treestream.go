package datasets

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"unicode/utf8"

	"github.com/cairn-dev/cairn/registry/blobs"
)

// DefaultMaxEntries is the entry limit of OpenTree unless told otherwise.
const DefaultMaxEntries = 20_000_000

// ErrTooManyEntries marks a tree over the entry limit.
var ErrTooManyEntries = errors.New("dataset tree has too many entries")

// TreeOptions bound the reading of a tree by OpenTree.
type TreeOptions struct {
	// MaxEntries refuses a tree with more entries (default
	// DefaultMaxEntries; cairn data --max-entries).
	MaxEntries int
	// TempDir holds the verified local copy (default os.TempDir()).
	TempDir string
}

// TreeFile is a dataset tree verified against its digest, validated, and
// kept in an unlinked local file that Walk decodes entry by entry: memory
// does not grow with the number of entries (only with its folders and
// symlinks, which validation keeps to check link targets).
type TreeFile struct {
	f       *os.File
	size    int64
	Digest  string
	Entries int   // all entries
	Files   int   // file entries
	Bytes   int64 // sum of the files' sizes
}

// OpenTree fetches the tree with digest from store into a local file,
// verifying every byte, and validates it in one streaming pass; a tree over
// opts.MaxEntries is refused with ErrTooManyEntries. Close the TreeFile.
func OpenTree(ctx context.Context, store blobs.Store, digest string, opts TreeOptions) (*TreeFile, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if _, err := blobs.ParseDigest(digest); err != nil {
		return nil, err
	}
	key := blobs.TreeKey(digest)
	info, err := store.Stat(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
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
	f, err := os.CreateTemp(opts.TempDir, "cairn-tree-*")
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
	}
	os.Remove(f.Name()) // the open file stays readable; nothing is left behind
	t := &TreeFile{f: f, Digest: digest}
	if t.size, err = io.Copy(f, vr); err != nil {
		f.Close()
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
	}
	v := newValidator()
	err = t.Walk(func(e Entry) error {
		if t.Entries == opts.MaxEntries {
			return fmt.Errorf("%w: more than %d (raise the limit with --max-entries)", ErrTooManyEntries, opts.MaxEntries)
		}
		t.Entries++
		if e.Type == TypeFile {
			t.Files++
			t.Bytes += e.Size
		}
		return v.add(e)
	})
	if err == nil {
		err = v.finish()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read tree %s: %w", digest, err)
	}
	return t, nil
}

// Close removes the local copy.
func (t *TreeFile) Close() error { return t.f.Close() }

// Walk calls fn with every entry in order; an error from fn stops it.
func (t *TreeFile) Walk(fn func(Entry) error) error {
	return decodeStream(io.NewSectionReader(t.f, 0, t.size), fn)
}

// Tree reads the whole tree into memory (for small trees and tests).
func (t *TreeFile) Tree() (*Tree, error) {
	tr := &Tree{Version: TreeVersion, Entries: make([]Entry, 0, t.Entries)}
	err := t.Walk(func(e Entry) error { tr.Entries = append(tr.Entries, e); return nil })
	return tr, err
}

const (
	treeHead = `{"entries":[`
	treeTail = `],"version":1}`
	// maxEntryBytes bounds one encoded entry (a file's chunk list).
	maxEntryBytes = 64 << 20
)

// treeDecoder decodes a canonical tree encoding entry by entry and refuses
// what Encode would not have written byte for byte: the frame around the
// entries is matched literally, and each entry either parses as the
// canonical form of a plain entry (the fast path: no escapes in strings)
// or is decoded with encoding/json and compared with its re-encoding.
type treeDecoder struct {
	r    *bufio.Reader
	raw  []byte
	buf  bytes.Buffer
	enc  *json.Encoder
	n    int
	done bool
}

func newTreeDecoder(r io.Reader) (*treeDecoder, error) {
	d := &treeDecoder{r: bufio.NewReaderSize(r, 1<<16)}
	d.enc = json.NewEncoder(&d.buf)
	d.enc.SetEscapeHTML(false)
	if err := d.literal(treeHead); err != nil {
		return nil, err
	}
	return d, nil
}

func bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidTree, fmt.Sprintf(format, a...))
}

// literal consumes s exactly.
func (d *treeDecoder) literal(s string) error {
	for i := 0; i < len(s); i++ {
		c, err := d.r.ReadByte()
		if err != nil {
			return bad("truncated: want %q: %v", s, err)
		}
		if c != s[i] {
			return bad("not in canonical encoding: %q where %q belongs", c, s[i:])
		}
	}
	return nil
}

// next returns the next entry; ok is false after the last one, once the
// end of the encoding has been checked.
func (d *treeDecoder) next() (e Entry, ok bool, err error) {
	if d.done {
		return Entry{}, false, nil
	}
	c, err := d.r.ReadByte()
	if err != nil {
		return e, false, bad("truncated after %d entries: %v", d.n, err)
	}
	if c == ']' {
		d.done = true
		d.r.UnreadByte()
		if err := d.literal(treeTail); err != nil {
			return e, false, err
		}
		if _, err := d.r.ReadByte(); err != io.EOF {
			return e, false, bad("trailing data")
		}
		return e, false, nil
	}
	if d.n > 0 {
		if c != ',' {
			return e, false, bad("not in canonical encoding: %q after entry %d", c, d.n-1)
		}
		if c, err = d.r.ReadByte(); err != nil {
			return e, false, bad("truncated after %d entries: %v", d.n, err)
		}
	}
	if c != '{' {
		return e, false, bad("not in canonical encoding: %q where entry %d belongs", c, d.n)
	}
	if err := d.object(); err != nil {
		return e, false, err
	}
	if e, ok = parseEntry(d.raw); !ok {
		if e, err = d.slowEntry(); err != nil {
			return e, false, err
		}
	}
	d.n++
	return e, true, nil
}

// object reads one JSON object, whose '{' was read, into d.raw.
func (d *treeDecoder) object() error {
	d.raw = append(d.raw[:0], '{')
	depth, inStr, esc := 1, false, false
	for depth > 0 {
		c, err := d.r.ReadByte()
		if err != nil {
			return bad("entry %d truncated: %v", d.n, err)
		}
		d.raw = append(d.raw, c)
		if len(d.raw) > maxEntryBytes {
			return bad("entry %d is over %d bytes", d.n, maxEntryBytes)
		}
		switch {
		case esc:
			esc = false
		case inStr:
			switch c {
			case '\\':
				esc = true
			case '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// slowEntry decodes d.raw strictly and requires it to be canonical.
func (d *treeDecoder) slowEntry() (Entry, error) {
	var e Entry
	ed := json.NewDecoder(bytes.NewReader(d.raw))
	ed.DisallowUnknownFields()
	if err := ed.Decode(&e); err != nil {
		return e, bad("entry %d: %v", d.n, err)
	}
	if ed.More() {
		return e, bad("entry %d: trailing data", d.n)
	}
	d.buf.Reset()
	if err := d.enc.Encode(&e); err != nil {
		return e, bad("entry %d: %v", d.n, err)
	}
	if !bytes.Equal(bytes.TrimSuffix(d.buf.Bytes(), []byte("\n")), d.raw) {
		return e, bad("entry %d (%q) not in canonical encoding", d.n, e.Path)
	}
	return e, nil
}

// entryParser reads the canonical encoding of a plain entry.
type entryParser struct {
	b  []byte
	ok bool
}

func (p *entryParser) lit(s string) bool {
	if p.ok && len(p.b) >= len(s) && string(p.b[:len(s)]) == s {
		p.b = p.b[len(s):]
		return true
	}
	return false
}

func (p *entryParser) must(s string) {
	if !p.lit(s) {
		p.ok = false
	}
}

// str reads a string without escapes up to its closing quote: exactly how
// encoding/json writes it (valid UTF-8, no control characters, no U+2028
// or U+2029). Anything else leaves the entry to the slow path.
func (p *entryParser) str() string {
	if !p.ok {
		return ""
	}
	i := bytes.IndexByte(p.b, '"')
	if i < 0 {
		p.ok = false
		return ""
	}
	v := p.b[:i]
	for _, c := range v {
		if c < 0x20 || c == '\\' {
			p.ok = false
			return ""
		}
	}
	if !utf8.Valid(v) || bytes.Contains(v, []byte("\u2028")) || bytes.Contains(v, []byte("\u2029")) {
		p.ok = false
		return ""
	}
	p.b = p.b[i+1:]
	return string(v)
}

// num reads a canonical non-negative integer (no sign, no leading zero).
func (p *entryParser) num() int64 {
	if !p.ok {
		return 0
	}
	i := 0
	for i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	if i == 0 || i > 18 || (i > 1 && p.b[0] == '0') {
		p.ok = false
		return 0
	}
	v, _ := strconv.ParseInt(string(p.b[:i]), 10, 64)
	p.b = p.b[i:]
	return v
}

// parseEntry is the fast path: ok only when raw is the canonical encoding
// of the entry it returns. Optional fields present with their zero value
// ("size":0, "digest":"") are not canonical; they go to the slow path,
// which refuses them.
func parseEntry(raw []byte) (e Entry, ok bool) {
	p := &entryParser{b: raw, ok: true}
	p.must("{")
	if p.lit(`"chunks":[`) {
		for {
			p.must(`{"digest":"`)
			var c Chunk
			c.Digest = p.str()
			p.must(`","size":`)
			c.Size = p.num()
			p.must("}")
			if !p.ok {
				return e, false
			}
			e.Chunks = append(e.Chunks, c)
			if p.lit("],") {
				break
			}
			p.must(",")
		}
	}
	if p.lit(`"digest":"`) {
		if e.Digest = p.str(); e.Digest == "" {
			return e, false
		}
		p.must(",")
	}
	p.must(`"mode":`)
	m := p.num()
	if m > 1<<32-1 {
		return e, false
	}
	e.Mode = uint32(m)
	p.must(`,"path":"`)
	e.Path = p.str()
	if p.lit(`,"size":`) {
		if e.Size = p.num(); e.Size == 0 {
			return e, false
		}
	}
	if p.lit(`,"target":"`) {
		if e.Target = p.str(); e.Target == "" {
			return e, false
		}
	}
	p.must(`,"type":"`)
	e.Type = p.str()
	p.must("}")
	return e, p.ok && len(p.b) == 0
}

// decodeStream calls fn with every entry of the encoding read from r.
func decodeStream(r io.Reader, fn func(Entry) error) error {
	d, err := newTreeDecoder(r)
	if err != nil {
		return err
	}
	for {
		e, ok, err := d.next()
		if err != nil || !ok {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// DiffFiles streams the changes from a to b to fn, sorted by path, as
// Diff does for trees in memory.
func DiffFiles(a, b *TreeFile, fn func(Change) error) error {
	da, err := newTreeDecoder(io.NewSectionReader(a.f, 0, a.size))
	if err != nil {
		return err
	}
	db, err := newTreeDecoder(io.NewSectionReader(b.f, 0, b.size))
	if err != nil {
		return err
	}
	x, okx, err := da.next()
	if err != nil {
		return err
	}
	y, oky, err := db.next()
	if err != nil {
		return err
	}
	for okx || oky {
		switch {
		case !oky || (okx && x.Path < y.Path):
			if err := fn(Change{Kind: Removed, Path: x.Path, Type: x.Type, OldSize: x.Size}); err != nil {
				return err
			}
			if x, okx, err = da.next(); err != nil {
				return err
			}
		case !okx || y.Path < x.Path:
			if err := fn(Change{Kind: Added, Path: y.Path, Type: y.Type, NewSize: y.Size}); err != nil {
				return err
			}
			if y, oky, err = db.next(); err != nil {
				return err
			}
		default:
			if x.Type != y.Type || x.Digest != y.Digest || x.Mode != y.Mode || x.Target != y.Target || x.Size != y.Size {
				if err := fn(Change{Kind: Changed, Path: y.Path, Type: y.Type, OldSize: x.Size, NewSize: y.Size}); err != nil {
					return err
				}
			}
			if x, okx, err = da.next(); err != nil {
				return err
			}
			if y, oky, err = db.next(); err != nil {
				return err
			}
		}
	}
	return nil
}

// validator checks the invariants of a tree entry by entry (Tree.Validate):
// it keeps the previous path, the folders and the symlinks.
type validator struct {
	i     int
	prev  string
	dirs  map[string]bool
	links map[string]string
}

func newValidator() *validator {
	return &validator{dirs: map[string]bool{".": true}, links: map[string]string{}}
}

func (v *validator) add(e Entry) error {
	i := v.i
	v.i++
	if err := CheckPath(e.Path); err != nil {
		return bad("entry %d: %v", i, err)
	}
	if i > 0 && v.prev >= e.Path {
		return bad("entries not sorted or duplicated at %q", e.Path)
	}
	v.prev = e.Path
	if !v.dirs[path.Dir(e.Path)] {
		return bad("%s: parent folder is not in the tree", e.Path)
	}
	if e.Mode&^0o777 != 0 {
		return bad("%s: mode %o has more than permission bits", e.Path, e.Mode)
	}
	switch e.Type {
	case TypeDir:
		v.dirs[e.Path] = true
		if e.Digest != "" || e.Size != 0 || e.Chunks != nil || e.Target != "" {
			return bad("%s: folder with content fields", e.Path)
		}
	case TypeSymlink:
		if e.Digest != "" || e.Size != 0 || e.Chunks != nil {
			return bad("%s: symlink with content fields", e.Path)
		}
		if err := checkLink(e.Path, e.Target); err != nil {
			return bad("%v", err)
		}
		v.links[e.Path] = e.Target
	case TypeFile:
		if e.Target != "" {
			return bad("%s: file with a target", e.Path)
		}
		if _, err := blobs.ParseDigest(e.Digest); err != nil {
			return bad("%s: %v", e.Path, err)
		}
		if e.Size < 0 {
			return bad("%s: negative size", e.Path)
		}
		if e.Chunks != nil {
			if len(e.Chunks) == 0 {
				return bad("%s: empty chunk list", e.Path)
			}
			var sum int64
			for _, c := range e.Chunks {
				if _, err := blobs.ParseDigest(c.Digest); err != nil {
					return bad("%s: chunk: %v", e.Path, err)
				}
				if c.Size <= 0 || sum+c.Size < sum {
					return bad("%s: chunk size %d", e.Path, c.Size)
				}
				sum += c.Size
			}
			if sum != e.Size {
				return bad("%s: chunks add up to %d bytes, size is %d", e.Path, sum, e.Size)
			}
		}
	default:
		return bad("%s: unknown type %q", e.Path, e.Type)
	}
	return nil
}

// finish checks every symlink's target through the other symlinks.
func (v *validator) finish() error {
	if err := checkLinkMaps(v.dirs, v.links); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTree, err)
	}
	return nil
}
