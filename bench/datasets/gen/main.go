// Command gen writes the benchmark dataset of bench/datasets/run.sh:
// deterministic pseudo-random files, or a 1 MiB edit in the middle of one.
//
//	gen tree DIR TOTAL_BYTES FILES BIG_BYTES   # FILES-1 small files sharing TOTAL-BIG, plus big.bin of BIG bytes
//	gen edit FILE SEED                         # overwrite 1 MiB in the middle of FILE
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func num(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen: not a number:", s)
		os.Exit(2)
	}
	return n
}

func run(args []string) error {
	switch {
	case len(args) == 5 && args[0] == "tree":
		return tree(args[1], num(args[2]), num(args[3]), num(args[4]))
	case len(args) == 3 && args[0] == "edit":
		return edit(args[1], uint64(num(args[2])))
	}
	return fmt.Errorf("usage: gen tree DIR TOTAL FILES BIG | gen edit FILE SEED")
}

// fill writes n pseudo-random bytes from r to f.
func fill(f *os.File, r *rand.ChaCha8, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		r.Read(b)
		if _, err := f.Write(b); err != nil {
			return err
		}
		n -= int64(len(b))
	}
	return nil
}

func tree(dir string, total, files, big int64) error {
	r := rand.NewChaCha8([32]byte{1})
	sizes := rand.New(rand.NewPCG(1, 2))
	small := files - 1
	rest := total - big
	avg := rest / max(small, 1)
	var written int64
	for i := int64(0); i < small; i++ {
		// sizes spread between avg/4 and 7avg/4; the last file takes the remainder
		n := avg/4 + sizes.Int64N(avg*3/2+1)
		if i == small-1 {
			n = max(rest-written, 0)
		}
		written += n
		p := filepath.Join(dir, fmt.Sprintf("part-%02d", i/500), fmt.Sprintf("f%05d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := fill(f, r, n); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	if err != nil {
		return err
	}
	defer f.Close()
	return fill(f, r, big)
}

func edit(path string, seed uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	b := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{byte(seed), 9}).Read(b)
	if _, err := f.WriteAt(b, fi.Size()/2); err != nil {
		return err
	}
	return f.Close()
}
