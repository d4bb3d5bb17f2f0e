package agent

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/internal/atomicfile"
	"github.com/cairn-dev/cairn/registry/models"
)

// The layer cache (PullFetcher.CacheDir) holds verified layer blobs under
// blobs/sha256/<hex> (and downloads in progress as <hex>.partial), and, per
// manifest pulled, refs/<manifest hex>: one "<blob digest> <size>" line per
// file, so collection knows which blobs a slot's model is made of.

// Collector is an optional extra of a Fetcher whose cache the agent bounds
// after each install: keep are the manifest digests of the active, previous
// and in-flight slots; busy says a download is in flight (its partial blobs
// stay); max is the byte budget of the blobs kept beyond those of keep (0:
// twice the largest model pulled).
type Collector interface {
	Collect(keep []string, busy bool, max int64) (CacheStats, error)
}

// CacheStats is what a collection left and removed.
type CacheStats struct {
	Bytes, Blobs     int64 // kept
	Removed, Freed   int64 // blobs and bytes removed
	Budget, Required int64 // the budget applied and the bytes keep needs
}

var _ Collector = (*PullFetcher)(nil)

func (p *PullFetcher) refsPath(manifest string) string {
	return filepath.Join(p.CacheDir, "refs", slotName(manifest))
}

// writeRefs records the blobs of a pulled manifest.
func (p *PullFetcher) writeRefs(res *models.PullResult) error {
	var b strings.Builder
	for _, f := range res.Files {
		fmt.Fprintf(&b, "%s %d\n", f.Digest, f.Size)
	}
	if err := os.MkdirAll(filepath.Join(p.CacheDir, "refs"), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(p.refsPath(res.Digest), []byte(b.String()), 0o644)
}

// readRefs returns the blob hexes and sizes recorded for a manifest.
func (p *PullFetcher) readRefs(manifest string) (map[string]int64, error) {
	f, err := os.Open(p.refsPath(manifest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		d, size, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(size, 10, 64)
		if !ok || err != nil {
			continue
		}
		out[slotName(d)] = n
	}
	return out, sc.Err()
}

// Collect implements Collector: the blobs of keep stay, then the most
// recently used others while they fit the budget; partial blobs stay only
// while busy.
func (p *PullFetcher) Collect(keep []string, busy bool, max int64) (CacheStats, error) {
	var st CacheStats
	if p.CacheDir == "" {
		return st, nil
	}
	needed := map[string]bool{}
	refs, _ := os.ReadDir(filepath.Join(p.CacheDir, "refs"))
	largest := int64(0)
	kept := map[string]bool{}
	for _, k := range keep {
		kept[slotName(k)] = true
	}
	for _, r := range refs {
		blobs, err := p.readRefs("sha256:" + r.Name())
		if err != nil {
			continue
		}
		total := int64(0)
		for hex, n := range blobs {
			total += n
			if kept[r.Name()] {
				needed[hex] = true
			}
		}
		largest = maxInt(largest, total)
	}
	if max <= 0 {
		max = 2 * largest
	}
	st.Budget = max
	dir := filepath.Join(p.CacheDir, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return st, nil
		}
		return st, fmt.Errorf("collect layer cache: %w", err)
	}
	type blob struct {
		name  string
		size  int64
		mtime int64
	}
	var others []blob
	remove := func(name string, size int64) {
		if err := os.Remove(filepath.Join(dir, name)); err == nil {
			st.Removed++
			st.Freed += size
			hex, _, _ := strings.Cut(name, ".")
			os.Remove(filepath.Join(p.CacheDir, "locks", hex))
			if hex == name {
				os.Remove(filepath.Join(p.CacheDir, "chunks", "sha256", hex)) // the blob's chunk index
			}
		}
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".partial"), strings.HasSuffix(name, ".partial.delta"), strings.HasSuffix(name, ".partial.delta.journal"):
			// A download, a delta rebuild and its journal: kept to resume
			// while an install is pending.
			if busy {
				st.Blobs++
				st.Bytes += fi.Size()
			} else {
				remove(name, fi.Size())
			}
		case needed[name]:
			st.Blobs++
			st.Bytes += fi.Size()
			st.Required += fi.Size()
		default:
			others = append(others, blob{name, fi.Size(), fi.ModTime().UnixNano()})
		}
	}
	slices.SortFunc(others, func(a, b blob) int { return cmp.Compare(b.mtime, a.mtime) }) // newest first
	for _, b := range others {
		if st.Bytes+b.size <= st.Required+max {
			st.Blobs++
			st.Bytes += b.size
			continue
		}
		remove(b.name, b.size)
	}
	// Drop the chunk indexes of blobs no longer cached.
	if idx, err := os.ReadDir(filepath.Join(p.CacheDir, "chunks", "sha256")); err == nil {
		for _, e := range idx {
			if _, err := os.Stat(filepath.Join(dir, e.Name())); os.IsNotExist(err) {
				os.Remove(filepath.Join(p.CacheDir, "chunks", "sha256", e.Name()))
			}
		}
	}
	// Drop the records of manifests none of whose blobs are left.
	for _, r := range refs {
		if kept[r.Name()] {
			continue
		}
		blobs, err := p.readRefs("sha256:" + r.Name())
		if err != nil {
			continue
		}
		left := false
		for hex := range blobs {
			if _, err := os.Stat(filepath.Join(dir, hex)); err == nil {
				left = true
				break
			}
		}
		if !left {
			os.Remove(filepath.Join(p.CacheDir, "refs", r.Name()))
		}
	}
	return st, nil
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// collect bounds the layer cache and removes partial slots no release
// still wants; called after each pass over the desired models.
func (a *Agent) collect(desired map[string]string) {
	var keep []string
	busy := false
	for rel, rj := range a.j.Releases {
		keep = append(keep, rj.Current, rj.Previous, rj.Pending)
		if rj.Pending != "" {
			busy = true
		}
		// Partial slots of digests no longer desired (superseded, or a
		// release removed) are not going to be resumed.
		dir := filepath.Join(a.releaseDir(rel), "slots")
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			hex, partial := strings.CutSuffix(e.Name(), ".partial")
			if !partial || hex == slotName(rj.Pending) || hex == slotName(desired[rel]) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				a.cfg.Logf("agent: %s: remove stale partial slot: %v", rel, err)
			}
		}
	}
	c, ok := a.fetcher.(Collector)
	if !ok {
		return
	}
	st, err := c.Collect(slices.DeleteFunc(keep, func(d string) bool { return d == "" }), busy, a.cfg.CacheMax)
	if err != nil {
		a.cfg.Logf("agent: %v", err)
		return
	}
	if st.Removed > 0 {
		a.cfg.Logf("agent: layer cache: removed %d blobs (%d bytes); %d blobs, %d bytes kept (budget %d beyond the %d bytes in use)",
			st.Removed, st.Freed, st.Blobs, st.Bytes, st.Budget, st.Required)
	}
}

// ParseBytes reads a byte count: a number with an optional K, M, G or T
// suffix (powers of 1024; "Ki", "MiB" and "GB" are read the same).
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: want a byte count such as 512M or 4G", s)
	}
	return int64(v * float64(mult)), nil
}
