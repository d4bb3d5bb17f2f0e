package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// The rebuild of one layer. One goroutine walks the chunks in order,
// copying each chunk held locally to its offset after checking its digest
// and grouping the others into runs of adjacent chunks of at most
// rangeRunMax bytes; rangeWorkers goroutines fetch the runs with one Range
// request each and write every chunk at its offset once it matches its
// digest. Another goroutine hashes the file in order behind them, for the
// layer digest, and a last one commits the done chunks to the journal every
// journalEvery. Memory is one copy buffer per goroutine whatever the size of
// the file.

const (
	// rangeWorkers is how many Range requests of one layer are in flight.
	rangeWorkers = 4
	// rangeRunMax bounds the bytes asked by one Range request (a single
	// chunk is at most cdc.MaxChunk, the same 4 MiB).
	rangeRunMax = 4 << 20
	// journalEvery is how often the chunks done are made durable.
	journalEvery = time.Second
)

// errBroken marks a transfer that broke off (the connection, not the
// answer): the rebuild is tried again, and kept to resume, rather than
// given up for a whole download.
type errBroken struct{ err error }

func (e errBroken) Error() string { return e.err.Error() }
func (e errBroken) Unwrap() error { return e.err }

// chunkRun is chunks first..last (inclusive) to fetch with one request.
type chunkRun struct{ first, last int }

// rebuild writes blob d into pt's file: chunks already done are kept,
// chunks held locally copied, the others fetched. It leaves the verified
// blob at pt.rel, or an error and the journalled progress to resume from.
func (p *puller) rebuild(ctx context.Context, pt *partial, d v1.Descriptor, lc *LayerChunks,
	find func(string) (chunkLoc, bool), st *DeltaStat, j *blobJob) error {
	n := len(lc.Chunks)
	var (
		mu       sync.Mutex
		done     = append([]bool(nil), pt.done...)
		pending  []int // done, not yet in the journal
		wake     = make(chan struct{}, 1)
		reused   atomic.Int64
		fetched  atomic.Int64
		requests atomic.Int64
	)
	markDone := func(i int) {
		mu.Lock()
		done[i] = true
		pending = append(pending, i)
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	progress := func(k int64) {
		if p.hooks.Progress != nil {
			p.hooks.Progress(st.Path, k)
		}
	}
	if pt.resumed > 0 {
		progress(pt.resumed)
	}

	// The journal, committed every journalEvery until the rebuild stops,
	// then once more with what was done last.
	take := func() []int {
		mu.Lock()
		defer mu.Unlock()
		out := pending
		pending = nil
		return out
	}
	stopCommits := make(chan struct{})
	commitsDone := make(chan error, 1)
	go func() {
		t := time.NewTicker(journalEvery)
		defer t.Stop()
		for {
			select {
			case <-stopCommits:
				commitsDone <- nil
				return
			case <-t.C:
				if err := pt.commit(take()); err != nil {
					commitsDone <- err
					return
				}
			}
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	runs := make(chan chunkRun)

	// The walk: local chunks copied, runs of the others handed out.
	g.Go(func() error {
		defer close(runs)
		bufp := getBuf()
		defer putBuf(bufp)
		srcs := map[string]*os.File{}
		defer func() {
			for _, s := range srcs {
				s.Close()
			}
		}()
		open := func(c chunkLoc) (*os.File, error) {
			key := fmt.Sprintf("%p/%s", c.root, c.rel)
			if s := srcs[key]; s != nil {
				return s, nil
			}
			s, err := c.root.Open(c.rel)
			if err != nil {
				return nil, err
			}
			srcs[key] = s
			return s, nil
		}
		run := chunkRun{first: -1}
		var runBytes int64
		flush := func() error {
			if run.first < 0 {
				return nil
			}
			r := run
			run.first, runBytes = -1, 0
			select {
			case runs <- r:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		for i, c := range lc.Chunks {
			if err := gctx.Err(); err != nil {
				return err
			}
			if pt.done[i] {
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			if loc, ok := find(c.Digest); ok {
				if s, err := open(loc); err == nil {
					if ok, err := copyChunk(pt.f, pt.offs[i], io.NewSectionReader(s, loc.off, c.Size), c, *bufp); err != nil {
						return err // writing the rebuilt file failed
					} else if ok {
						if err := flush(); err != nil {
							return err
						}
						reused.Add(c.Size)
						progress(c.Size)
						markDone(i)
						continue
					}
				}
				// Not what the local index said: fetch it.
			}
			if run.first >= 0 && runBytes+c.Size > rangeRunMax {
				if err := flush(); err != nil {
					return err
				}
			}
			if run.first < 0 {
				run.first = i
			}
			run.last = i
			runBytes += c.Size
		}
		return flush()
	})

	// The fetches.
	for range rangeWorkers {
		g.Go(func() error {
			bufp := getBuf()
			defer putBuf(bufp)
			for r := range runs {
				from, to := pt.offs[r.first], pt.offs[r.last]+lc.Chunks[r.last].Size-1
				body, err := p.c.fetchRange(gctx, d.Digest, from, to)
				if err != nil {
					return err
				}
				requests.Add(1)
				err = func() error {
					defer body.Close()
					for i := r.first; i <= r.last; i++ {
						c := lc.Chunks[i]
						cr := &rangeReader{r: io.LimitReader(body, c.Size), fn: func(k int64) {
							fetched.Add(k)
							p.downloaded.Add(k)
							j.got.Add(k)
							progress(k)
						}}
						ok, err := copyChunk(pt.f, pt.offs[i], cr, c, *bufp)
						if err != nil {
							return err
						}
						if cr.n != c.Size {
							if gctx.Err() != nil {
								return gctx.Err()
							}
							return errBroken{fmt.Errorf("range %d-%d: got %d of chunk %d's %d bytes: %w", from, to, cr.n, i, c.Size, errOr(cr.err, io.ErrUnexpectedEOF))}
						}
						if !ok {
							return fmt.Errorf("%w: chunk %d (bytes %d-%d) from the registry does not match the chunk index", ErrDigestMismatch, i, pt.offs[i], pt.offs[i]+c.Size-1)
						}
						markDone(i)
					}
					return nil
				}()
				if err != nil {
					return err
				}
			}
			return nil
		})
	}

	// The layer digest, hashed in order as the chunks are done.
	var whole []byte
	g.Go(func() error {
		h := sha256.New()
		bufp := getBuf()
		defer putBuf(bufp)
		for next := 0; next < n; {
			mu.Lock()
			k := next
			for k < n && done[k] {
				k++
			}
			mu.Unlock()
			if k == next {
				select {
				case <-wake:
					continue
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			from, to := pt.offs[next], pt.offs[k-1]+lc.Chunks[k-1].Size
			if _, err := io.CopyBuffer(h, io.NewSectionReader(pt.f, from, to-from), *bufp); err != nil {
				return fmt.Errorf("read back the rebuilt file: %w", err)
			}
			next = k
		}
		whole = h.Sum(nil)
		return nil
	})

	err := g.Wait()
	close(stopCommits)
	cerr := <-commitsDone
	st.ReusedBytes = pt.resumed + reused.Load()
	st.DownloadedBytes += fetched.Load()
	st.Ranges += int(requests.Load())
	if err != nil {
		if cerr == nil {
			cerr = pt.commit(take()) // keep what was done for the next pull
		}
		return err
	}
	if cerr != nil {
		return fmt.Errorf("journal: %w", cerr)
	}
	if hex.EncodeToString(whole) != d.Digest.Hex {
		return fmt.Errorf("%w: rebuilt blob is not %s", ErrDigestMismatch, d.Digest)
	}
	if err := pt.f.Sync(); err != nil {
		return err
	}
	return nil
}

// copyChunk copies chunk c from r to off in f, hashing on the way, and
// reports whether the bytes match c's digest. The bytes are written
// whatever they are: a chunk that does not match is fetched again over
// them, or the file is dropped. Only a failed write is an error; a short
// or failed read is a false match (rangeReader says which).
func copyChunk(f *os.File, off int64, r io.Reader, c IndexChunk, buf []byte) (bool, error) {
	h := sha256.New()
	var n int64
	for n < c.Size {
		m, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), c.Size-n)])
		if m > 0 {
			h.Write(buf[:m])
			if _, err := f.WriteAt(buf[:m], off+n); err != nil {
				return false, err
			}
			n += int64(m)
		}
		if rerr != nil {
			return false, nil
		}
	}
	return "sha256:"+hex.EncodeToString(h.Sum(nil)) == c.Digest, nil
}

// rangeReader counts the bytes read of a Range answer and keeps the read
// error.
type rangeReader struct {
	r   io.Reader
	n   int64
	err error
	fn  func(int64)
}

func (c *rangeReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if n > 0 && c.fn != nil {
		c.fn(int64(n))
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// isBroken reports whether a rebuild stopped on a broken transfer.
func isBroken(err error) bool {
	var b errBroken
	return errors.As(err, &b)
}
