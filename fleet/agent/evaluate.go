package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/errdef"
	"github.com/cairn-dev/cairn/evaluation"
	"github.com/cairn-dev/cairn/fleet"
)

// HoldoutFunc restores the holdout dataset of an evaluation run into dir
// through the server (fleet/agent/holdout.Pull, which `cairn agent` sets;
// the device binary cairn-agent has none and runs no evaluation).
type HoldoutFunc func(ctx context.Context, api EvaluationAPI, id, cred, run, dataset, dir string) error

// EvaluationAPI is the optional part of API that evaluator agents
// (cairn.dev/role=evaluator) use: reporting a run's results and reading
// its holdout dataset through the server. An API without it runs none.
type EvaluationAPI interface {
	ReportEvaluation(ctx context.Context, id, cred, run string, rep fleet.EvaluationReport) (*fleet.EvaluationRecord, error)
	EvaluationObject(ctx context.Context, id, cred, run, key string, off, length int64, head bool) (io.ReadCloser, int64, error)
}

var _ EvaluationAPI = (*fleet.Client)(nil)

// maxStderr is how much of an evaluate command's stderr an error quotes.
const maxStderr = 1000

// Evaluate starts, in the background, the evaluation runs of the desired
// state this agent has not reported yet, one at a time; it returns at once
// when they are running already.
func (a *Agent) Evaluate(ctx context.Context, ds *fleet.DesiredState) {
	if ds == nil || len(ds.Evaluations) == 0 {
		return
	}
	if _, ok := a.cfg.API.(EvaluationAPI); !ok {
		return
	}
	a.evalMu.Lock()
	defer a.evalMu.Unlock()
	if a.evalBusy {
		return
	}
	var todo []fleet.EvaluationRun
	for _, run := range ds.Evaluations {
		if !a.evalDone[run.ID] {
			todo = append(todo, run)
		}
	}
	if len(todo) == 0 {
		return
	}
	a.evalBusy = true
	go func() {
		defer func() {
			a.evalMu.Lock()
			a.evalBusy = false
			a.evalMu.Unlock()
		}()
		a.RunEvaluations(ctx, todo)
	}()
}

// RunEvaluations makes each run and reports it. A run whose models or
// dataset cannot be reached (network, registry, server) is left for the
// next poll; one the evaluate command failed on is reported with why.
func (a *Agent) RunEvaluations(ctx context.Context, runs []fleet.EvaluationRun) {
	api, ok := a.cfg.API.(EvaluationAPI)
	if !ok {
		return
	}
	for _, run := range runs {
		if ctx.Err() != nil {
			return
		}
		a.evalMu.Lock()
		rep, have := a.evalReports[run.ID]
		a.evalMu.Unlock()
		if !have {
			var err error
			if rep, err = a.evaluate(ctx, run); err != nil {
				a.cfg.Logf("agent: evaluation %s of %s: %v (will retry)", run.ID, run.Release, err)
				continue
			}
			a.evalMu.Lock()
			a.evalReports[run.ID] = rep
			a.evalMu.Unlock()
		}
		id := a.Identity()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rec, err := api.ReportEvaluation(rctx, id.ID, id.Credential, run.ID, rep)
		cancel()
		if err != nil && !errors.Is(err, fleet.ErrBadRequest) && !errors.Is(err, fleet.ErrConflict) {
			a.cfg.Logf("agent: report evaluation %s: %v (will retry)", run.ID, err)
			continue
		}
		a.evalMu.Lock()
		delete(a.evalReports, run.ID)
		a.evalDone[run.ID] = true
		a.evalMu.Unlock()
		os.RemoveAll(a.evaluationDir(run.ID))
		switch {
		case err != nil:
			a.cfg.Logf("agent: evaluation %s refused: %v", run.ID, err)
		case rec.Verdict != nil && rec.Verdict.Pass:
			a.cfg.Logf("agent: evaluation %s of %s: candidate passes: %s", run.ID, run.Release, rec.Verdict.Summary)
		case rec.Verdict != nil:
			a.cfg.Logf("agent: evaluation %s of %s: candidate fails: %s", run.ID, run.Release, strings.Join(rec.Verdict.Reasons, "; "))
		default:
			a.cfg.Logf("agent: evaluation %s of %s reported", run.ID, run.Release)
		}
	}
}

func (a *Agent) evaluationDir(run string) string {
	return filepath.Join(a.cfg.Root, "evaluations", filepath.Base(run))
}

// evaluate pulls the holdout and every model of run, and scores each. An
// error is a reason to try again later; what the artifacts or the command
// did wrong is in the results.
func (a *Agent) evaluate(ctx context.Context, run fleet.EvaluationRun) (fleet.EvaluationReport, error) {
	dir := a.evaluationDir(run.ID)
	dataDir := filepath.Join(dir, "dataset")
	rep := fleet.EvaluationReport{}
	fail := func(msg string) fleet.EvaluationReport {
		for _, m := range run.Models {
			rep.Results = append(rep.Results, fleet.EvaluationResult{Role: m.Role, Digest: m.Digest, Error: msg})
		}
		return rep
	}
	if a.cfg.PullHoldout == nil {
		return fail("this agent binary cannot evaluate (cairn-agent links no dataset puller): run `cairn agent`"), nil
	}
	id := a.Identity()
	if err := a.cfg.PullHoldout(ctx, a.cfg.API.(EvaluationAPI), id.ID, id.Credential, run.ID, run.Dataset, dataDir); err != nil {
		if errors.Is(err, errdef.ErrNotFound) || errors.Is(err, errdef.ErrDigestMismatch) {
			return fail(fmt.Sprintf("pull holdout %s: %v", run.Dataset, err)), nil
		}
		return rep, fmt.Errorf("pull holdout %s: %w", run.Dataset, err)
	}
	for _, m := range run.Models {
		modelDir := filepath.Join(dir, m.Role)
		got, err := a.fetcher.Fetch(ctx, m.Artifact, modelDir, m.PlainHTTP || a.cfg.PlainHTTP)
		switch {
		case err != nil && permanentFetchError(err):
			rep.Results = append(rep.Results, fleet.EvaluationResult{Role: m.Role, Digest: m.Digest, Error: fmt.Sprintf("pull %s: %v", m.Artifact, err)})
			continue
		case err != nil:
			return fleet.EvaluationReport{}, fmt.Errorf("pull %s: %w", m.Artifact, err)
		case got != m.Digest:
			rep.Results = append(rep.Results, fleet.EvaluationResult{Role: m.Role, Digest: m.Digest, Error: fmt.Sprintf("pull %s: got %s", m.Artifact, got)})
			continue
		}
		rep.Results = append(rep.Results, runEvaluate(ctx, run, m, modelDir, dataDir))
	}
	return rep, nil
}

// runEvaluate runs the evaluate command on one model, with CAIRN_MODEL_DIR
// and CAIRN_DATASET_DIR, in the model folder, for at most the run's
// timeout, and reads the metrics it prints: at most evaluation.MaxOutput
// bytes of stdout, one JSON object. Anything else is an error in the
// result, never metrics.
func runEvaluate(ctx context.Context, run fleet.EvaluationRun, m fleet.EvaluationModel, modelDir, dataDir string) fleet.EvaluationResult {
	res := fleet.EvaluationResult{Role: m.Role, Digest: m.Digest}
	if len(run.Command) == 0 {
		res.Error = "no evaluate command"
		return res
	}
	timeout := run.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, run.Command[0], run.Command[1:]...)
	cmd.Dir = modelDir
	cmd.Env = append(childEnv(os.Environ(), modelDir), "CAIRN_DATASET_DIR="+dataDir, "CAIRN_EVALUATION_ROLE="+m.Role, "CAIRN_RELEASE="+run.Release)
	stdout := &capped{max: evaluation.MaxOutput}
	stderr := &capped{max: 64 << 10, keepTail: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// The command and whatever it starts die together on the timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	res.Seconds = time.Since(start).Seconds()
	argv := strings.Join(run.Command, " ")
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		res.Error = fmt.Sprintf("%s: no result within %s", argv, timeout)
	case err != nil:
		res.Error = fmt.Sprintf("%s: %v", argv, err)
		if tail := stderr.tail(); tail != "" {
			res.Error += ": " + tail
		}
	case stdout.over:
		res.Error = fmt.Sprintf("%s: printed more than %d bytes on stdout", argv, evaluation.MaxOutput)
	default:
		metrics, err := evaluation.ParseMetrics(stdout.buf.Bytes())
		if err != nil {
			res.Error = fmt.Sprintf("%s: %v", argv, err)
		} else {
			res.Metrics = metrics
		}
	}
	return res
}

// capped keeps at most max bytes written to it (the first, or with
// keepTail the last) and says whether more came; it never blocks the
// writer.
type capped struct {
	buf      bytes.Buffer
	max      int
	over     bool
	keepTail bool
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if c.keepTail {
		c.buf.Write(p)
		if extra := c.buf.Len() - c.max; extra > 0 {
			c.buf.Next(extra)
			c.over = true
		}
		return n, nil
	}
	if room := c.max - c.buf.Len(); len(p) > room {
		p, c.over = p[:max(room, 0)], true
	}
	c.buf.Write(p)
	return n, nil
}

// tail is the end of what was kept, trimmed, at most maxStderr bytes.
func (c *capped) tail() string {
	s := strings.TrimSpace(c.buf.String())
	if len(s) > maxStderr {
		s = "…" + s[len(s)-maxStderr:]
	}
	return s
}
