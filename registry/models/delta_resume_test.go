package models

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// pullHelperEnv makes the test binary, re-executed, pull REF into OUT with
// the cache CACHE ("REF|CACHE|OUT") and exit.
const pullHelperEnv = "CAIRN_MODELS_PULL_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(pullHelperEnv); spec != "" {
		parts := strings.Split(spec, "|")
		if len(parts) != 3 {
			fmt.Fprintln(os.Stderr, "bad", pullHelperEnv)
			os.Exit(2)
		}
		if _, err := Pull(bg, parts[0], parts[2], PullOptions{CacheDir: parts[1]}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// throttle slows the answers to Range requests, when on, to rate bytes a
// second each, and counts their bytes.
type throttle struct {
	on     atomic.Bool
	rate   int64
	served atomic.Int64
	first  atomic.Int64 // unix nanos of the first throttled answer
}

func (th *throttle) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !th.on.Load() || r.Header.Get("Range") == "" {
			h.ServeHTTP(w, r)
			return
		}
		th.first.CompareAndSwap(0, time.Now().UnixNano())
		h.ServeHTTP(&slowWriter{ResponseWriter: w, th: th}, r)
	})
}

type slowWriter struct {
	http.ResponseWriter
	th *throttle
}

func (w *slowWriter) Write(b []byte) (int, error) {
	const piece = 16 << 10
	n := 0
	for len(b) > 0 {
		k := min(len(b), piece)
		time.Sleep(time.Duration(int64(k) * int64(time.Second) / w.th.rate))
		m, err := w.ResponseWriter.Write(b[:k])
		n += m
		w.th.served.Add(int64(m))
		if err != nil {
			return n, err
		}
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		b = b[k:]
	}
	return n, nil
}

// TestDeltaResumeAfterKill: a delta pull in another process, SIGKILLed while
// its Range requests are under way, leaves the rebuilt file and its
// journal; the next pull keeps the journalled chunks, fetches fewer bytes
// than the whole delta and writes the second version byte for byte. A
// journal for another chunk list, or a journalled chunk damaged on disk,
// is not trusted.
func TestDeltaResumeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	const size, edit = 48 << 20, 8 << 20
	const fname = "model.safetensors"
	th := &throttle{rate: 512 << 10} // each of the 4 requests in flight
	reg := newRegistry(t, th.wrap)
	dir1, dir2, _, sum2 := writeVersions(t, fname, size, edit)
	p1, err := Push(bg, reg+"/resume/m:1", []string{dir1}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Push(bg, reg+"/resume/m:2", []string{dir2}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The whole delta: the bytes of the second version's chunks the first
	// lacks.
	l1, err := chunkFile(bg, filepath.Join(dir1, fname))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := chunkFile(bg, filepath.Join(dir2, fname))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range l1.Chunks {
		have[c.Digest] = true
	}
	var missing int64
	for _, c := range l2.Chunks {
		if !have[c.Digest] {
			missing += c.Size
		}
	}
	cache := t.TempDir()
	if _, err := Pull(bg, p1.Ref, t.TempDir(), PullOptions{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}

	// The delta pull in a child process, killed once it has fetched 60 %
	// of the delta and at least 2.5 s after its first Range answer (so the
	// journal was committed since chunks came).
	th.on.Store(true)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pullHelperEnv+"="+p2.Ref+"|"+cache+"|"+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-exited:
			t.Fatalf("the pull ended before it was killed (%v): %s", err, stderr.Bytes())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("the pull fetched %d bytes in 2 minutes", th.served.Load())
		case <-tick.C:
			first := th.first.Load()
			if th.served.Load() >= missing*6/10 && first != 0 && time.Since(time.Unix(0, first)) >= 2500*time.Millisecond {
				break wait
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := <-exited; !errors.As(err, &ee) {
		t.Fatalf("child: %v", err)
	}
	th.on.Store(false)
	servedBeforeKill := th.served.Load()
	hx := strings.TrimPrefix(r2Digest(t, p2), "sha256:")
	partial := filepath.Join(cache, "blobs", "sha256", hx+".partial.delta")
	journal := partial + ".journal"
	for _, p := range []string{partial, journal} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("nothing kept to resume: %v", err)
		}
	}
	jb, _ := os.ReadFile(journal)
	t.Logf("killed after %d of the delta's %d bytes were served; journal:\n%s", servedBeforeKill, missing, jb)
	saved := t.TempDir()
	copyFile(t, partial, filepath.Join(saved, "delta"))
	copyFile(t, journal, filepath.Join(saved, "journal"))

	pullAgain := func(what string) DeltaStat {
		t.Helper()
		out := t.TempDir()
		r, err := Pull(bg, p2.Ref, out, PullOptions{CacheDir: cache})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := fileSum(t, filepath.Join(out, fname)); got != sum2 {
			t.Fatalf("%s: wrote %s, want %s", what, got, sum2)
		}
		if len(r.Deltas) != 1 || r.Deltas[0].Fallback != "" {
			t.Fatalf("%s: delta %+v, want one rebuilt layer", what, r.Deltas)
		}
		for _, p := range []string{partial, journal} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s: %s left behind", what, filepath.Base(p))
			}
		}
		ds := r.Deltas[0]
		t.Logf("%s: downloaded %d bytes, resumed %d, reused %d, %d ranges", what, ds.DownloadedBytes, ds.ResumedBytes, ds.ReusedBytes, ds.Ranges)
		if ds.DownloadedBytes+ds.ReusedBytes != size {
			t.Errorf("%s: downloaded %d + reused %d != %d", what, ds.DownloadedBytes, ds.ReusedBytes, size)
		}
		return ds
	}
	// Start over from the killed state each time: the blob out of the
	// cache, the rebuild's file and journal back.
	restore := func(journal []byte, damage func(f *os.File)) {
		t.Helper()
		_ = os.Remove(filepath.Join(cache, "blobs", "sha256", hx))
		copyFile(t, filepath.Join(saved, "delta"), partial)
		if err := os.WriteFile(partial+".journal", journal, 0o644); err != nil {
			t.Fatal(err)
		}
		if damage != nil {
			f, err := os.OpenFile(partial, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			damage(f)
			f.Close()
		}
	}

	ds := pullAgain("resumed")
	if ds.ResumedBytes == 0 || ds.DownloadedBytes >= missing {
		t.Errorf("resumed: downloaded %d bytes (resumed %d), want < the whole delta's %d", ds.DownloadedBytes, ds.ResumedBytes, missing)
	}

	// A journal for another layer: the file is discarded, the whole delta
	// fetched.
	restore(bytes.Replace(jb, []byte(hx), []byte(strings.Repeat("0", 64)), 1), nil)
	if ds := pullAgain("journal of another layer"); ds.ResumedBytes != 0 || ds.DownloadedBytes < missing {
		t.Errorf("journal of another layer: resumed %d, downloaded %d, want 0 and the whole delta's %d", ds.ResumedBytes, ds.DownloadedBytes, missing)
	}

	// A journalled chunk damaged on disk (a write the crash lost): fetched
	// again, the others kept.
	root, err := os.OpenRoot(saved)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	h, err := v1.NewHash("sha256:" + hx)
	if err != nil {
		t.Fatal(err)
	}
	claimed := readJournal(root, "journal", journalHeader(v1.Descriptor{Digest: h, Size: size}, l2), len(l2.Chunks))
	victim, victimOff := IndexChunk{}, int64(-1)
	var off int64
	for i, c := range l2.Chunks {
		if claimed[i] && !have[c.Digest] {
			victim, victimOff = c, off
			break
		}
		off += c.Size
	}
	if victimOff < 0 {
		t.Fatalf("the journal names none of the fetched chunks:\n%s", jb)
	}
	restore(jb, func(f *os.File) {
		b := make([]byte, 1)
		f.ReadAt(b, victimOff)
		b[0] ^= 0xff
		f.WriteAt(b, victimOff)
	})
	if ds2 := pullAgain("damaged chunk"); ds2.ResumedBytes != ds.ResumedBytes-victim.Size {
		t.Errorf("damaged chunk: resumed %d, want %d - %d", ds2.ResumedBytes, ds.ResumedBytes, victim.Size)
	}
}

func r2Digest(t *testing.T, p *PushResult) string {
	t.Helper()
	for _, f := range p.Files {
		if strings.HasSuffix(f.Path, ".safetensors") {
			return f.Digest
		}
	}
	t.Fatalf("no weight layer in %+v", p.Files)
	return ""
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
