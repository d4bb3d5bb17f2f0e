package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairn-dev/cairn/internal/atomicfile"
	"github.com/cairn-dev/cairn/registry/cdc"
)

// The digest cache keeps the chunk index of each large file it pushed too,
// so that a push of an unchanged file (already in the repository, or
// mounted) neither reads nor chunks it again. There is one entry per path,
// chunks/<sha256 of the absolute path>, overwritten by the file's next
// version: the cache holds one index per large file pushed, ~35 bytes per
// ~250 KiB chunk (~300 KB for 2 GiB). An entry is used only for the file
// version (statKey) it was written for, and only when its layer digest is
// the one the digest cache holds for that version; anything else in the
// file (another version, another chunker, damage) makes it a miss.
//
// An entry, in order (numbers as unsigned varints):
//
//	chunkEntryMagic
//	cdc.Params() "\n"
//	sha256 of the statKey    32 bytes
//	layer digest             32 bytes
//	layer size, chunk count
//	per chunk: size, digest  32 bytes
const chunkEntryMagic = "cairn chunk index v1\n"

// maxChunkEntry bounds an entry read back: the header and maxIndexChunks
// chunks of the largest varint and a digest each.
var maxChunkEntry = len(chunkEntryMagic) + len(cdc.Params()) + 1 + 2*sha256.Size +
	2*binary.MaxVarintLen64 + maxIndexChunks*(binary.MaxVarintLen64+sha256.Size)

func (c *digestCache) chunksFile(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(c.dir, "chunks", hex.EncodeToString(sum[:]))
}

// chunks returns the cached chunk index of the file at path, with its layer
// digest, when the cache has one for the file as it is now; else nil.
func (c *digestCache) chunks(path string) *LayerChunks {
	e, key := c.get(path)
	if e == nil {
		return nil
	}
	f := c.chunksFile(path)
	b, err := readCacheEntry(f, maxChunkEntry)
	if err != nil {
		return nil
	}
	l, err := decodeChunkEntry(b, key)
	if err != nil || l.Digest != e.Digest {
		return nil
	}
	return l
}

// putChunks records l as the chunk index of the file at path in its version
// key. Errors are ignored: the cache only saves work.
func (c *digestCache) putChunks(key, path string, l *LayerChunks) {
	if c == nil || c.dir == "" || key == "" {
		return
	}
	b, err := encodeChunkEntry(key, l)
	if err != nil {
		return
	}
	f := c.chunksFile(path)
	if f == "" || os.MkdirAll(filepath.Dir(f), 0o755) != nil {
		return
	}
	_ = atomicfile.WriteFile(f, b, 0o644) // a cache: a failed write costs a re-chunk
}

func encodeChunkEntry(key string, l *LayerChunks) ([]byte, error) {
	ld, err := rawDigest(l.Digest)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(chunkEntryMagic)+len(cdc.Params())+1+2*sha256.Size+2*binary.MaxVarintLen64+len(l.Chunks)*(4+sha256.Size))
	b = append(b, chunkEntryMagic...)
	b = append(b, cdc.Params()+"\n"...)
	ks := sha256.Sum256([]byte(key))
	b = append(b, ks[:]...)
	b = append(b, ld...)
	b = binary.AppendUvarint(b, uint64(l.Size))
	b = binary.AppendUvarint(b, uint64(len(l.Chunks)))
	for _, ch := range l.Chunks {
		d, err := rawDigest(ch.Digest)
		if err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(ch.Size))
		b = append(b, d...)
	}
	return b, nil
}

var errChunkEntry = errors.New("not a chunk index entry for this file version")

// decodeChunkEntry reads an entry written for the file version key: the
// magic, this chunker, that version, then a layer that validates (chunk
// sizes within cdc's bounds adding up to the layer's) and nothing after it.
func decodeChunkEntry(b []byte, key string) (*LayerChunks, error) {
	head := chunkEntryMagic + cdc.Params() + "\n"
	rest, ok := bytes.CutPrefix(b, []byte(head))
	if !ok || len(rest) < 2*sha256.Size {
		return nil, errChunkEntry
	}
	ks := sha256.Sum256([]byte(key))
	if !bytes.Equal(rest[:sha256.Size], ks[:]) {
		return nil, errChunkEntry
	}
	l := &LayerChunks{Digest: "sha256:" + hex.EncodeToString(rest[sha256.Size:2*sha256.Size])}
	rest = rest[2*sha256.Size:]
	uvarint := func() (uint64, error) {
		v, n := binary.Uvarint(rest)
		if n <= 0 || n != len(binary.AppendUvarint(nil, v)) { // the shortest form only: one entry, one encoding
			return 0, errChunkEntry
		}
		rest = rest[n:]
		return v, nil
	}
	size, err := uvarint()
	if err != nil || size > 1<<62 {
		return nil, errChunkEntry
	}
	count, err := uvarint()
	if err != nil || count > maxIndexChunks || count > uint64(len(rest)) {
		return nil, errChunkEntry
	}
	l.Size = int64(size)
	l.Chunks = make([]IndexChunk, 0, count)
	for range count {
		cs, err := uvarint()
		if err != nil || cs > cdc.MaxChunk || len(rest) < sha256.Size {
			return nil, errChunkEntry
		}
		l.Chunks = append(l.Chunks, IndexChunk{Size: int64(cs), Digest: "sha256:" + hex.EncodeToString(rest[:sha256.Size])})
		rest = rest[sha256.Size:]
	}
	if len(rest) != 0 {
		return nil, errChunkEntry
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errChunkEntry, err)
	}
	return l, nil
}

// rawDigest is the 32 bytes of a "sha256:<64 hex>" digest.
func rawDigest(d string) ([]byte, error) {
	if !reDigest.MatchString(d) {
		return nil, fmt.Errorf("digest %q is not sha256:<64 hex>", d)
	}
	return hex.DecodeString(d[len("sha256:"):])
}
