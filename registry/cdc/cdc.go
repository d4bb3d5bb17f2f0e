// Package cdc is cairn's content-defined chunking: the Rabin-fingerprint
// chunker (restic/chunker) with the parameters registry/datasets stores
// large files with and registry/models indexes large layers with. The
// parameters are part of both formats: changing them changes the chunk
// boundaries of new pushes, so reuse against older versions would be lost.
package cdc

import (
	"fmt"
	"io"
	"sync"

	"github.com/restic/chunker"
)

const (
	// Polynomial is the fixed irreducible polynomial of the Rabin
	// fingerprint (the one restic/chunker's own tests use).
	Polynomial = chunker.Pol(0x3DA3358B4DC173)
	// MinChunk and MaxChunk bound chunk sizes (the last chunk of a file may
	// be shorter than MinChunk).
	MinChunk = 128 << 10
	MaxChunk = 4 << 20
	// AverageBits: a cut after MinChunk when the fingerprint's low bits are
	// zero, so chunks average about MinChunk + 2^AverageBits bytes (~250 KiB
	// measured). Smaller than restic's 1 MiB on purpose: a 1 MiB edit then
	// uploads ~1.3 MiB (median; 1.9 MiB at most in 40 random edits) where
	// 1 MiB chunks upload ~2.2 MiB.
	AverageBits = 17
)

// Params names the parameters, as chunk indexes record them.
func Params() string {
	return fmt.Sprintf("rabin-%#x-%d-%d-%d", uint64(Polynomial), MinChunk, MaxChunk, AverageBits)
}

// Split cuts r into content-defined chunks and calls fn with each, in
// order: its offset and its bytes (valid during the call only; at most
// MaxChunk). It returns the number of bytes read. Memory stays at one
// buffer of the largest chunk (at most MaxChunk) whatever the size of r.
func Split(r io.Reader, fn func(off int64, data []byte) error) (int64, error) {
	s := getSplitter(r)
	defer splitters.Put(s)
	var off int64
	for {
		c, err := s.ch.Next(s.buf)
		if cap(c.Data) > cap(s.buf) {
			s.buf = c.Data[:0]
		}
		if err == io.EOF {
			return off, nil
		}
		if err != nil {
			return off, fmt.Errorf("chunk: %w", err)
		}
		if err := fn(off, c.Data); err != nil {
			return off, err
		}
		off += int64(c.Length)
	}
}

// splitter is a chunker and its chunk buffer, kept between Splits: a push
// of several large files chunks them one after another in a few goroutines,
// and each would otherwise allocate its own 1.5–2.5 MiB (the chunker's
// 512 KiB read buffer, the chunk buffer) for the collector to reclaim.
type splitter struct {
	ch  *chunker.Chunker
	buf []byte
}

var splitters sync.Pool

func getSplitter(r io.Reader) *splitter {
	s, _ := splitters.Get().(*splitter)
	if s == nil {
		// Chunks average ~250 KiB and few pass 1 MiB (e^-7 of them in
		// random data), so the buffer starts at 1 MiB and grows, once, to
		// what a larger chunk needs: four files chunked at once (cairn model
		// push) hold 4 MiB less each.
		s = &splitter{ch: chunker.NewWithBoundaries(r, Polynomial, MinChunk, MaxChunk), buf: make([]byte, 0, 1<<20)}
	} else {
		s.ch.ResetWithBoundaries(r, Polynomial, MinChunk, MaxChunk)
	}
	s.ch.SetAverageBits(AverageBits) // after Reset, which restores the default
	return s
}
