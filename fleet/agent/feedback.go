package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/atomicfile"
)

// FeedbackAPI is the optional part of API that takes feedback uploads;
// an API without it sends none.
type FeedbackAPI interface {
	UploadFeedback(ctx context.Context, id, cred, release, digest string, jsonl io.Reader) (*fleet.FeedbackBatch, error)
}

var _ FeedbackAPI = (*fleet.Client)(nil)

// feedbackBatch bounds one sampled batch (1 MiB): the server takes at most
// 16 MiB, and a small batch retried costs little.
const feedbackBatch = 1 << 20

// FeedbackDir is the folder where the runtime of release rel spools the
// inputs it saw, as JSON-lines files named *.jsonl, each complete when it
// appears (written under another name, then renamed). Commands the agent
// runs get it as CAIRN_FEEDBACK_DIR.
func (a *Agent) FeedbackDir(rel string) string { return filepath.Join(a.releaseDir(rel), "feedback") }

// feedbackDirOf is FeedbackDir for the slot folder of a release.
func feedbackDirOf(modelDir string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(modelDir)), "feedback")
}

// outgoingDir holds sampled batches of rel not yet accepted by the server.
func (a *Agent) outgoingDir(rel string) string {
	return filepath.Join(a.releaseDir(rel), "feedback-outgoing")
}

// SendFeedback samples the spooled inputs of every release that asks for
// feedback and uploads them, each batch until the server takes it: a batch
// is written to the outgoing folder before its spool file is removed, so a
// crash or a lost answer sends the same bytes again (the server stores
// them once). Spool files of releases that ask for none are removed.
func (a *Agent) SendFeedback(ctx context.Context, ds *fleet.DesiredState) {
	api, ok := a.cfg.API.(FeedbackAPI)
	if !ok || ds == nil || a.cfg.Driver != nil {
		return
	}
	active := map[string]string{}
	for _, st := range a.Status() {
		if st.Phase == fleet.PhaseHealthy {
			active[st.Release] = st.Digest
		}
	}
	id := a.Identity()
	for _, dm := range ds.Models {
		spool := a.FeedbackDir(dm.Release)
		if dm.Feedback == nil {
			removeSpooled(spool)
			continue
		}
		if err := os.MkdirAll(spool, 0o755); err != nil {
			a.cfg.Logf("agent: feedback of %s: %v", dm.Release, err)
			continue
		}
		// Inputs count for a digest only once the runtime serves it.
		if active[dm.Release] != dm.Digest {
			continue
		}
		if err := a.sampleSpool(spool, a.outgoingDir(dm.Release), dm.Feedback.Sample); err != nil {
			a.cfg.Logf("agent: feedback of %s: %v", dm.Release, err)
		}
		if n := trimOutgoing(a.outgoingDir(dm.Release), dm.Feedback.MaxPerDay); n > 0 {
			a.cfg.Logf("agent: feedback of %s: dropped %d waiting batches past a day's budget", dm.Release, n)
		}
		a.uploadOutgoing(ctx, api, id, dm)
	}
}

// trimOutgoing removes the oldest waiting batches while they hold more
// than budget bytes, so an unreachable server or a spent budget never
// fills the disk; it returns how many it removed.
func trimOutgoing(out string, budget int64) int {
	names, _ := filepath.Glob(filepath.Join(out, "*.jsonl"))
	slices.Sort(names)
	var total int64
	sizes := make([]int64, len(names))
	for i, n := range names {
		if fi, err := os.Stat(n); err == nil {
			sizes[i] = fi.Size()
			total += fi.Size()
		}
	}
	removed := 0
	for i := 0; i < len(names) && total > budget; i++ {
		if os.Remove(names[i]) == nil {
			total -= sizes[i]
			removed++
		}
	}
	return removed
}

// removeSpooled removes the spool files of a release without feedback.
func removeSpooled(spool string) {
	names, _ := filepath.Glob(filepath.Join(spool, "*.jsonl"))
	for _, n := range names {
		os.Remove(n)
	}
}

// sampleSpool moves a sample of each spool file's lines into batches in
// out, then removes the spool file.
func (a *Agent) sampleSpool(spool, out string, sample float64) error {
	names, err := filepath.Glob(filepath.Join(spool, "*.jsonl"))
	if err != nil || len(names) == 0 {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		if err := sampleFile(name, out, sample); err != nil {
			return err
		}
		if err := os.Remove(name); err != nil {
			return err
		}
	}
	return nil
}

// sampleFile writes the sampled lines of name as batches of at most
// feedbackBatch bytes into out.
func sampleFile(name, out string, sample float64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	var batch bytes.Buffer
	part := 0
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		base := strings.TrimSuffix(filepath.Base(name), ".jsonl")
		w, err := atomicfile.Create(filepath.Join(out, fmt.Sprintf("%d-%s-%03d.jsonl", time.Now().UnixNano(), base, part)), 0o644)
		if err != nil {
			return err
		}
		defer w.Abort()
		if _, err := w.Write(batch.Bytes()); err != nil {
			return err
		}
		part++
		batch.Reset()
		return w.Commit()
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, rerr := r.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("read %s: %w", name, rerr)
		}
		if t := bytes.TrimSpace(line); len(t) > 0 && len(t) < feedbackBatch && rand.Float64() < sample {
			if batch.Len()+len(t)+1 > feedbackBatch {
				if err := flush(); err != nil {
					return err
				}
			}
			batch.Write(t)
			batch.WriteByte('\n')
		}
		if rerr == io.EOF {
			break
		}
	}
	return flush()
}

// uploadOutgoing sends the batches waiting in the outgoing folder, oldest
// first. A batch the server refuses for good (not JSON, too large, a digest
// no longer desired) is dropped with a log line; on any other error (the
// day's budget spent or too many requests: 429) the batch stays for a
// later round.
func (a *Agent) uploadOutgoing(ctx context.Context, api FeedbackAPI, id Identity, dm fleet.DesiredModel) {
	names, _ := filepath.Glob(filepath.Join(a.outgoingDir(dm.Release), "*.jsonl"))
	slices.Sort(names)
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		uctx, cancel := context.WithTimeout(ctx, time.Minute)
		b, err := api.UploadFeedback(uctx, id.ID, id.Credential, dm.Release, dm.Digest, f)
		cancel()
		f.Close()
		var ae *fleet.APIError
		switch {
		case err == nil:
			os.Remove(name)
			a.cfg.Logf("agent: feedback of %s: %d records stored as %s", dm.Release, b.Records, b.Dataset)
		case errors.As(err, &ae) && (ae.Status == 400 || ae.Status == 409 || ae.Status == 413):
			os.Remove(name)
			a.cfg.Logf("agent: feedback of %s: dropped a batch: %v", dm.Release, err)
		default:
			if ctx.Err() == nil {
				a.cfg.Logf("agent: feedback of %s: %v (will retry)", dm.Release, err)
			}
			return
		}
	}
}
