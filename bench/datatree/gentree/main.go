// Command gentree writes a synthetic dataset tree of N entries (files
// spread over D folders, with fake but well-formed digests) into a folder
// blob store, streaming, and prints its digest. bench/datatree/run.sh and
// the e2e tree test read it back with cairn data ls / diff.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/cairn-dev/cairn/registry/blobs"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 5 {
		return fmt.Errorf("usage: gentree STORE_DIR ENTRIES FOLDERS SEED")
	}
	n, err1 := strconv.Atoi(os.Args[2])
	dirs, err2 := strconv.Atoi(os.Args[3])
	seed, err3 := strconv.Atoi(os.Args[4])
	if err1 != nil || err2 != nil || err3 != nil || dirs < 1 || n < dirs {
		return fmt.Errorf("ENTRIES, FOLDERS and SEED must be numbers, 1 <= FOLDERS <= ENTRIES")
	}
	store, err := blobs.NewFolder(os.Args[1])
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp("", "gentree-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(tmp, h), 1<<20)
	w.WriteString(`{"entries":[`)
	perDir := (n - dirs) / dirs
	files := n - dirs
	k := 0
	for d := 0; d < dirs; d++ {
		if d > 0 {
			w.WriteByte(',')
		}
		fmt.Fprintf(w, `{"mode":493,"path":"d%07d","type":"dir"}`, d)
		count := perDir
		if d == dirs-1 {
			count = files - perDir*(dirs-1)
		}
		for f := 0; f < count; f++ {
			// Content digests differ between seeds for one file in 16.
			fd := sha256.Sum256([]byte(fmt.Sprintf("%d/%d/%d", d, f, seed*btoi(k%16 == 0))))
			fmt.Fprintf(w, `,{"digest":"sha256:%s","mode":420,"path":"d%07d/f%08d","size":%d,"type":"file"}`,
				hex.EncodeToString(fd[:]), d, f, 100+k%1000)
			k++
		}
	}
	w.WriteString(`],"version":1}`)
	if err := w.Flush(); err != nil {
		return err
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if _, err := store.Put(context.Background(), blobs.TreeKey(digest), tmp, size, digest); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "tree of %d entries (%d folders), %d bytes\n", n, dirs, size)
	fmt.Println(digest)
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
