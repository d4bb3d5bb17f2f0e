package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"

	"github.com/cairn-dev/cairn/internal/atomicfile"
)

// digestCache remembers, per file version, the digest Push computed and the
// repositories it pushed it to. A file version is identified as git's index
// does it: device, inode, size, mtime and ctime (ctime cannot be set from
// user space, so a rewritten file never looks unchanged). With a hit, Push
// asks the registry before reading the file: the blob is already there
// (HEAD), or can be mounted from a repository it was pushed to before. It
// keeps large files' chunk indexes too (chunkcache.go).
type digestCache struct{ dir string }

type digestEntry struct {
	Digest string   `json:"digest"`
	Repos  []string `json:"repos"` // registry/repository, most recent last
}

const maxCachedRepos = 5

// maxDigestEntry bounds an entry read back: a digest and maxCachedRepos
// references come to well under 1 KiB each.
const maxDigestEntry = 64 << 10

func (c *digestCache) file(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(c.dir, "digests", hex.EncodeToString(sum[:]))
}

func (c *digestCache) get(path string) (*digestEntry, string) {
	if c == nil || c.dir == "" {
		return nil, ""
	}
	key := statKey(path)
	if key == "" {
		return nil, ""
	}
	b, err := readCacheEntry(c.file(key), maxDigestEntry)
	if err != nil {
		return nil, key
	}
	var e digestEntry
	if json.Unmarshal(b, &e) != nil || !reDigest.MatchString(e.Digest) {
		return nil, key
	}
	return &e, key
}

// put records that the file version key has digest and is in repo. Errors
// are ignored: the cache only saves work.
func (c *digestCache) put(key, digest, repo string, prev *digestEntry) {
	if c == nil || c.dir == "" || key == "" {
		return
	}
	e := digestEntry{Digest: digest}
	if prev != nil && prev.Digest == digest {
		e.Repos = slices.DeleteFunc(slices.Clone(prev.Repos), func(r string) bool { return r == repo })
	}
	e.Repos = append(e.Repos, repo)
	if len(e.Repos) > maxCachedRepos {
		e.Repos = e.Repos[len(e.Repos)-maxCachedRepos:]
	}
	b, _ := json.Marshal(e)
	f := c.file(key)
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		return
	}
	_ = atomicfile.WriteFile(f, b, 0o644) // a cache: a failed write costs a re-hash
}
