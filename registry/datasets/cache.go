package datasets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/internal/atomicfile"
	"github.com/cairn-dev/cairn/registry/blobs"
)

// The push cache lets an unchanged re-push skip reading files and asking
// the store about blobs, as git's index and restic's parent snapshot do. It
// remembers, per store and local folder, the last tree pushed and a stat
// fingerprint (size, mtime, ctime, inode) of each file. A file whose
// fingerprint is unchanged takes its digest and chunks from that tree, and
// every blob that tree names counts as present: the tree is written last, so
// its presence in the store (checked with one read) vouches for its blobs.
// The cache is only a hint; a missing or unreadable one means a full push.

// fingerprint identifies a file's state without reading it.
type fingerprint struct {
	Size  int64  `json:"s"`
	Mtime int64  `json:"m"`
	Ctime int64  `json:"c,omitempty"`
	Ino   uint64 `json:"i,omitempty"`
}

func fingerprintOf(fi fs.FileInfo) fingerprint {
	fp := fingerprint{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fp.Ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
		fp.Ino = st.Ino
	}
	return fp
}

type pushCache struct {
	Tree  string                 `json:"tree"`
	Files map[string]fingerprint `json:"files"`
}

func cachePath(dir, storeID, root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	h := sha256.Sum256([]byte(storeID + "\x00" + abs))
	return filepath.Join(dir, "datasets", hex.EncodeToString(h[:16])+".json")
}

// loadCache returns the previous tree and fingerprints, or nils.
func loadCache(ctx context.Context, store blobs.Store, path string) (*Tree, map[string]fingerprint) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil
	}
	var c pushCache
	if json.Unmarshal(b, &c) != nil {
		return nil, nil
	}
	prev, err := ReadTree(ctx, store, c.Tree)
	if err != nil {
		return nil, nil
	}
	return prev, c.Files
}

// saveCache records tree and the fingerprints of its files, leaving out
// files modified too recently to be told apart from a later edit.
func saveCache(path, tree string, fps map[string]fingerprint, started time.Time) {
	racy := started.Add(-racyWindow).UnixNano()
	c := pushCache{Tree: tree, Files: make(map[string]fingerprint, len(fps))}
	for p, fp := range fps {
		if fp.Mtime < racy && fp.Ctime < racy {
			c.Files[p] = fp
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return
	}
	if os.MkdirAll(filepath.Dir(path), 0o700) != nil {
		return
	}
	_ = atomicfile.WriteFile(path, b, 0o600) // a cache: a failed write costs a re-hash
}

// racyWindow: files changed this close to the push's start are not cached,
// since a later edit within the file system's timestamp granularity could
// leave the fingerprint unchanged.
var racyWindow = 2 * time.Second
