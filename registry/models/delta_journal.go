package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Resuming a delta rebuild. The file being rebuilt (REL.delta) is kept
// when a rebuild stops (killed, rebooted, a broken transfer), with a
// sidecar journal (REL.delta.journal) naming the chunks already written
// and verified in it:
//
//	cairn-delta-journal v1 <layer digest> <size> <sha256 of the chunk list>
//	<first> <end>        chunks first..end-1 are written and verified
//	…
//
// Records are appended only after the rebuilt file was synced, and the
// journal is synced after them, so a record never names bytes the disk may
// not hold. The next pull of the same layer with the same chunk index
// checks each recorded chunk against its digest again and fetches only the
// others; a journal for another layer or index, or that does not parse, and
// its file are discarded.

// journalMagic starts the journal's header line.
const journalMagic = "cairn-delta-journal v1"

// maxJournalSize bounds the journal read back (a record per commit).
const maxJournalSize = 4 << 20

// partial is a file being rebuilt and its journal.
type partial struct {
	root *os.Root
	rel  string // the rebuilt file; rel+".journal" the journal
	f    *os.File
	jf   *os.File // opened for appending

	offs    []int64 // offset of each chunk
	done    []bool  // chunks already written and verified (resumed)
	resumed int64   // their bytes
}

func journalRel(rel string) string { return rel + ".journal" }

// journalHeader names the layer and the exact chunk list a journal is for.
func journalHeader(d v1.Descriptor, lc *LayerChunks) string {
	h := sha256.New()
	for _, c := range lc.Chunks {
		fmt.Fprintf(h, "%s %d\n", c.Digest, c.Size)
	}
	return fmt.Sprintf("%s %s %d sha256:%s\n", journalMagic, d.Digest, d.Size, hex.EncodeToString(h.Sum(nil)))
}

// hasPartial reports whether a rebuild of rel was left with a journal.
func hasPartial(root *os.Root, rel string) bool {
	_, err := root.Stat(journalRel(rel))
	return err == nil
}

// discardPartial removes a rebuilt file and its journal.
func discardPartial(root *os.Root, rel string) {
	_ = root.Remove(rel)
	_ = root.Remove(journalRel(rel))
}

// openPartial opens the rebuild of d into rel: the chunks a matching
// journal names and that still match their digests are marked done; any
// other state is discarded and the file starts empty (sparse, d.Size long).
func openPartial(root *os.Root, rel string, d v1.Descriptor, lc *LayerChunks) (pt *partial, err error) {
	pt = &partial{root: root, rel: rel, done: make([]bool, len(lc.Chunks))}
	var off int64
	for _, c := range lc.Chunks {
		pt.offs = append(pt.offs, off)
		off += c.Size
	}
	head := journalHeader(d, lc)
	claimed := readJournal(root, journalRel(rel), head, len(lc.Chunks))
	f, err := root.OpenFile(rel, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	pt.f = f
	defer func() {
		if err != nil {
			pt.close()
			discardPartial(root, rel)
		}
	}()
	if fi, err := f.Stat(); err != nil || fi.Size() != d.Size {
		claimed = nil
	}
	if claimed != nil {
		buf := getBuf()
		defer putBuf(buf)
		for i, ok := range claimed {
			if !ok {
				continue
			}
			c := lc.Chunks[i]
			if sum, err := digestAt(f, pt.offs[i], c.Size, *buf); err == nil && sum == c.Digest {
				pt.done[i] = true
				pt.resumed += c.Size
			}
		}
		jf, err := root.OpenFile(journalRel(rel), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, err
		}
		pt.jf = jf
		return pt, nil
	}
	// A fresh rebuild: an empty file of the blob's size and a journal of
	// its header alone, both on disk before any record can name them.
	if err := f.Truncate(0); err != nil {
		return nil, err
	}
	if err := f.Truncate(d.Size); err != nil {
		return nil, err
	}
	tmp := journalRel(rel) + ".tmp"
	jf, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := jf.WriteString(head); err != nil {
		jf.Close()
		return nil, err
	}
	if err := jf.Sync(); err != nil {
		jf.Close()
		return nil, err
	}
	jf.Close()
	if err := root.Rename(tmp, journalRel(rel)); err != nil {
		_ = root.Remove(tmp)
		return nil, err
	}
	syncDir(root, path.Dir(rel))
	if pt.jf, err = root.OpenFile(journalRel(rel), os.O_WRONLY|os.O_APPEND, 0); err != nil {
		return nil, err
	}
	return pt, nil
}

// readJournal returns the chunks the journal at jrel says are done, or nil
// when it is missing, for another header, or does not parse. A last line
// cut short by a crash is ignored.
func readJournal(root *os.Root, jrel, head string, n int) []bool {
	f, err := root.Open(jrel)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJournalSize+1))
	if err != nil || len(b) > maxJournalSize || !bytes.HasPrefix(b, []byte(head)) {
		return nil
	}
	claimed := make([]bool, n)
	lines := strings.Split(string(b[len(head):]), "\n")
	for _, line := range lines[:len(lines)-1] { // the last is empty, or cut short
		first, end, ok := strings.Cut(line, " ")
		i, err1 := strconv.Atoi(first)
		k, err2 := strconv.Atoi(end)
		if !ok || err1 != nil || err2 != nil || i < 0 || k > n || i >= k {
			return nil
		}
		for ; i < k; i++ {
			claimed[i] = true
		}
	}
	return claimed
}

// commit makes the chunks in idx durable: the file is synced, then their
// records are appended to the journal and it is synced.
func (pt *partial) commit(idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	if err := pt.f.Sync(); err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range runsOf(idx) {
		fmt.Fprintf(&b, "%d %d\n", r[0], r[1])
	}
	if _, err := pt.jf.WriteString(b.String()); err != nil {
		return err
	}
	return pt.jf.Sync()
}

// runsOf turns chunk numbers into sorted half-open runs [first, end).
func runsOf(idx []int) [][2]int {
	s := append([]int(nil), idx...)
	slices.Sort(s)
	var out [][2]int
	for _, i := range s {
		if n := len(out); n > 0 && out[n-1][1] >= i {
			out[n-1][1] = max(out[n-1][1], i+1)
			continue
		}
		out = append(out, [2]int{i, i + 1})
	}
	return out
}

func (pt *partial) close() {
	if pt.f != nil {
		pt.f.Close()
		pt.f = nil
	}
	if pt.jf != nil {
		pt.jf.Close()
		pt.jf = nil
	}
}

// digestAt is the digest of the size bytes of f at off.
func digestAt(f *os.File, off, size int64, buf []byte) (string, error) {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(f, off, size), buf); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// syncDir syncs a folder under root so the names made in it last (best
// effort: some systems cannot sync a folder).
func syncDir(root *os.Root, rel string) {
	if d, err := root.Open(rel); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
