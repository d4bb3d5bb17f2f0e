package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/atomicfile"
)

// The files driver lays a release out under ROOT/models/<release>:
//
//	slots/<digest hex>           a complete, verified model (read-only)
//	slots/<digest hex>.partial   a download in progress (resumable)
//	current -> slots/<hex>       the active model
//	previous -> slots/<hex>      the model kept for rollback
//
// and makes the release's runtime.path, when set, a link to the active slot.

var releaseName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,252}$`)

func (a *Agent) releaseDir(rel string) string { return filepath.Join(a.cfg.Root, "models", rel) }

func slotName(digest string) string {
	_, hex, ok := strings.Cut(digest, ":")
	if !ok {
		return digest
	}
	return hex
}

func (a *Agent) slotDir(rel, digest string) string {
	return filepath.Join(a.releaseDir(rel), "slots", slotName(digest))
}

// SlotDir is where the model digest of release rel is installed.
func (a *Agent) SlotDir(rel, digest string) string { return a.slotDir(rel, digest) }

// CurrentLink is the link to the active slot of release rel.
func (a *Agent) CurrentLink(rel string) string { return filepath.Join(a.releaseDir(rel), "current") }

// ActiveDigest reads which digest the current link of a release points to
// in an agent root ("" when none).
func ActiveDigest(root, rel string) string {
	t, err := os.Readlink(filepath.Join(root, "models", rel, "current"))
	if err != nil {
		return ""
	}
	return "sha256:" + filepath.Base(t)
}

// runtimePath is where the release's runtime.path link goes on this agent:
// an absolute path as is, or under Config.RuntimeRoot when set (several
// simulated devices on one machine); a relative path under the agent root.
func (a *Agent) runtimePath(dm fleet.DesiredModel) string {
	p := dm.Runtime.Path
	switch {
	case p == "":
		return ""
	case !filepath.IsAbs(p):
		return filepath.Join(a.cfg.Root, p)
	case a.cfg.RuntimeRoot != "":
		return filepath.Join(a.cfg.RuntimeRoot, p)
	}
	return filepath.Clean(p)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// setLinks points current, previous and the runtime path of a release at
// the slots of cur and prev ("" removes the link).
func (a *Agent) setLinks(rel, cur, prev, runtimePath string) error {
	dir := a.releaseDir(rel)
	target := func(d string) string {
		if d == "" {
			return ""
		}
		return filepath.Join("slots", slotName(d))
	}
	if err := atomicfile.Symlink(target(prev), filepath.Join(dir, "previous")); err != nil {
		return err
	}
	if err := atomicfile.Symlink(target(cur), filepath.Join(dir, "current")); err != nil {
		return err
	}
	if runtimePath != "" {
		if fi, err := os.Lstat(runtimePath); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("runtime path %s exists and is not a symlink: refusing to replace it", runtimePath)
		}
		abs := ""
		if cur != "" {
			abs = a.slotDir(rel, cur)
		}
		if err := atomicfile.Symlink(abs, runtimePath); err != nil {
			return err
		}
	}
	return nil
}

// Recover brings every release back to the consistent state of the
// journal: the links point at the last model that passed its health check,
// and an install interrupted after its download goes back to be activated
// again. Run calls it first.
func (a *Agent) Recover(ctx context.Context) error {
	changed := false
	for rel, rj := range a.j.Releases {
		if err := a.setLinks(rel, rj.Current, rj.Previous, rj.RuntimePath); err != nil {
			return fmt.Errorf("agent: recover %s: %w", rel, err)
		}
		if rj.Step == stepActivating || rj.Step == stepVerifying {
			a.cfg.Logf("agent: %s: install of %s was interrupted while %s; back on %s", rel, digest.Short(rj.Pending), rj.Step, orNone(rj.Current))
			rj.Step = stepDownloading
			changed = true
		}
		os.Remove(filepath.Join(a.releaseDir(rel), "current.tmp-link"))
		os.Remove(filepath.Join(a.releaseDir(rel), "previous.tmp-link"))
	}
	if changed {
		return a.saveJournal()
	}
	return nil
}

// install brings one release to the desired model.
func (a *Agent) install(ctx context.Context, dm fleet.DesiredModel) error {
	rel := dm.Release
	if !releaseName.MatchString(rel) {
		return fmt.Errorf("invalid release name %q", rel)
	}
	if err := digest.Check(dm.Digest); err != nil {
		return fmt.Errorf("desired model %q: %w", dm.Artifact, err)
	}
	a.mu.Lock()
	if dm.Runtime.HealthCheck != nil && dm.Runtime.HealthCheck.HTTP != "" {
		a.health[rel] = dm.Runtime.HealthCheck.HTTP
	} else {
		delete(a.health, rel)
	}
	if dm.Runtime.Metrics != "" {
		a.inputs[rel] = dm.Runtime.Metrics
	} else {
		delete(a.inputs, rel)
	}
	prevStatus, hadStatus := a.status[rel]
	a.mu.Unlock()
	rj := a.j.release(rel)
	if err := a.noteDesired(ctx, dm, rj); err != nil {
		return err
	}
	st := fleet.ReleaseStatus{Release: rel, Digest: rj.Current, Desired: dm.Digest, Previous: rj.Previous}

	// Already there.
	if rj.Pending == "" && rj.Current == dm.Digest {
		if rj.RuntimePath != a.runtimePath(dm) {
			if err := a.setLinks(rel, rj.Current, rj.Previous, a.runtimePath(dm)); err != nil {
				return err
			}
			rj.RuntimePath = a.runtimePath(dm)
			if err := a.saveJournal(); err != nil {
				return err
			}
		}
		switch {
		case !hadStatus:
			st.Phase, st.Message = fleet.PhaseHealthy, "running "+digest.Short(dm.Digest)
		case prevStatus.Phase == fleet.PhaseHealthy || prevStatus.Phase == fleet.PhaseRolledBack:
			if prevStatus.Desired == dm.Digest && prevStatus.Digest == dm.Digest {
				return nil
			}
			st.Phase, st.Message = prevStatus.Phase, prevStatus.Message
		default: // Failed on another digest, now asked to stay: rolled back
			st.Phase, st.Message = fleet.PhaseRolledBack, "back on "+digest.Short(dm.Digest)+" after "+digest.Short(prevStatus.Desired)+" failed"
		}
		a.setPhase(ctx, st)
		return nil
	}
	// Failed its health check in this rollout: wait for a new one.
	if rj.Pending == "" && rj.Failed == dm.Digest && rj.FailedRollout == dm.Rollout {
		if prevStatus.Phase != fleet.PhaseFailed || prevStatus.Desired != dm.Digest {
			st.Phase, st.Message = fleet.PhaseFailed, rj.FailedMessage
			a.setPhase(ctx, st)
		}
		return nil
	}
	if rj.Pending != "" && rj.Pending != dm.Digest {
		a.cfg.Logf("agent: %s: install of %s superseded by %s", rel, digest.Short(rj.Pending), digest.Short(dm.Digest))
	}

	slot := a.slotDir(rel, dm.Digest)
	if err := a.download(ctx, dm, rj, slot, st); err != nil {
		return err
	}
	if !exists(slot) {
		return nil // failed for good (reported): nothing to activate
	}
	return a.activate(ctx, dm, rj, slot, st)
}

// download pulls the model into slots/<hex>.partial and renames it into
// place once complete and verified.
func (a *Agent) download(ctx context.Context, dm fleet.DesiredModel, rj *releaseJournal, slot string, st fleet.ReleaseStatus) error {
	rel := dm.Release
	if exists(slot) {
		return nil
	}
	if rj.Pending != dm.Digest || rj.PendingRollout != dm.Rollout || rj.DownloadSince.IsZero() {
		rj.DownloadSince = time.Now().UTC()
	}
	rj.Pending, rj.PendingRollout, rj.Step = dm.Digest, dm.Rollout, stepDownloading
	if err := a.saveJournal(); err != nil {
		return err
	}
	st.Phase, st.Message = fleet.PhaseDownloading, "pulling "+dm.Artifact
	a.setPhase(ctx, st)
	if err := a.hook(rel, stepDownloading); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(slot), 0o755); err != nil {
		return a.failInstall(ctx, dm, rj, st, fmt.Errorf("create slot: %w", err), false)
	}
	partial := slot + ".partial"
	got, err := a.fetcher.Fetch(ctx, dm.Artifact, partial, dm.PlainHTTP || a.cfg.PlainHTTP)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cause := fmt.Errorf("download %s: %w", dm.Artifact, err)
		if permanentFetchError(err) {
			return a.failInstall(ctx, dm, rj, st, cause, true)
		}
		// The way to the artifact failed (network, registry, storage):
		// retried with backoff and resumed from the partial slot until the
		// release's downloadTimeout; meanwhile the target is Downloading.
		timeout := dm.DownloadTimeout
		if timeout <= 0 {
			timeout = fleet.DefaultDownloadTimeout
		}
		if waited := time.Since(rj.DownloadSince); waited >= timeout {
			return a.failInstall(ctx, dm, rj, st, fmt.Errorf("download timed out: still failing after %s (downloadTimeout %s): %w", waited.Round(time.Second), timeout, cause), true)
		}
		st.Phase, st.Message = fleet.PhaseDownloading, "retrying: "+cause.Error()
		a.setPhase(ctx, st)
		return cause
	}
	if got != dm.Digest {
		os.RemoveAll(partial)
		return a.failInstall(ctx, dm, rj, st, fmt.Errorf("download %s: got manifest %s, want %s: digest mismatch", dm.Artifact, got, dm.Digest), true)
	}
	if err := syncTree(partial); err != nil {
		return a.failInstall(ctx, dm, rj, st, fmt.Errorf("install %s: %w", digest.Short(dm.Digest), err), false)
	}
	if err := os.Rename(partial, slot); err != nil {
		return a.failInstall(ctx, dm, rj, st, fmt.Errorf("install %s: %w", digest.Short(dm.Digest), err), false)
	}
	if err := atomicfile.SyncDir(filepath.Dir(slot)); err != nil {
		return a.failInstall(ctx, dm, rj, st, err, false)
	}
	return nil
}

// activate switches the links to the new slot, checks health and either
// commits the switch or switches back.
func (a *Agent) activate(ctx context.Context, dm fleet.DesiredModel, rj *releaseJournal, slot string, st fleet.ReleaseStatus) error {
	rel := dm.Release
	old, oldPrev := rj.Current, rj.Previous
	rollingBack := dm.Digest == oldPrev && oldPrev != ""
	st.Phase, st.Message = fleet.PhaseInstalling, "activating slot "+slotName(dm.Digest)[:12]
	a.setPhase(ctx, st)
	if err := a.hook(rel, stepActivating); err != nil {
		return err
	}
	// From here until the journal commits, recovery restores old.
	rj.Pending, rj.PendingRollout, rj.Step = dm.Digest, dm.Rollout, stepActivating
	rj.RuntimePath = a.runtimePath(dm)
	if err := a.saveJournal(); err != nil {
		return err
	}
	prev := old
	if prev == "" || prev == dm.Digest {
		prev = oldPrev
	}
	if err := a.setLinks(rel, dm.Digest, prev, a.runtimePath(dm)); err != nil {
		a.setLinks(rel, old, oldPrev, a.runtimePath(dm))
		return a.failInstall(ctx, dm, rj, st, fmt.Errorf("activate: %w", err), true)
	}
	rj.Step = stepVerifying
	if err := a.saveJournal(); err != nil {
		return err
	}
	st.Phase, st.Message = fleet.PhaseVerifying, "health check of "+digest.Short(dm.Digest)
	a.setPhase(ctx, st)
	if err := a.hook(rel, stepVerifying); err != nil {
		return err
	}
	err := runCommand(ctx, dm.Runtime.Restart, slot)
	if err != nil {
		err = fmt.Errorf("restart runtime: %w", err)
	} else {
		check := func() error { return CheckHealth(ctx, dm.Runtime.HealthCheck, slot, a.hc) }
		if a.cfg.Hooks.Health != nil {
			err = a.cfg.Hooks.Health(ctx, rel, dm.Digest, slot, check)
		} else {
			err = check()
		}
	}
	if ctx.Err() != nil {
		return ctx.Err() // stopped mid-check: recovery switches back
	}
	if err != nil {
		// Switch back to the model that was serving.
		if lerr := a.setLinks(rel, old, oldPrev, a.runtimePath(dm)); lerr != nil {
			err = fmt.Errorf("%w; switching back also failed: %v", err, lerr)
		}
		if old != "" {
			if rerr := runCommand(ctx, dm.Runtime.Restart, a.slotDir(rel, old)); rerr != nil {
				a.cfg.Logf("agent: %s: restart after switching back: %v", rel, rerr)
			}
		}
		st.Digest, st.Previous = old, oldPrev
		return a.failInstall(ctx, dm, rj, st, fmt.Errorf("%v; switched back to %s", err, orNone(old)), true)
	}
	rj.Current, rj.Previous = dm.Digest, prev
	rj.Pending, rj.PendingRollout, rj.Step = "", "", ""
	rj.Failed, rj.FailedRollout, rj.FailedMessage = "", "", ""
	if err := a.saveJournal(); err != nil {
		return err
	}
	st.Digest, st.Previous = rj.Current, rj.Previous
	if rollingBack {
		st.Phase, st.Message = fleet.PhaseRolledBack, "switched back to previous slot "+digest.Short(dm.Digest)
	} else {
		st.Phase, st.Message = fleet.PhaseHealthy, "running "+digest.Short(dm.Digest)
	}
	a.setPhase(ctx, st)
	a.gc(rel, rj)
	return nil
}

// failInstall records a failed install: reported as Failed; permanent
// failures are remembered for the rollout so they are not retried.
func (a *Agent) failInstall(ctx context.Context, dm fleet.DesiredModel, rj *releaseJournal, st fleet.ReleaseStatus, cause error, permanent bool) error {
	rj.Pending, rj.PendingRollout, rj.Step = "", "", ""
	if permanent {
		rj.Failed, rj.FailedRollout, rj.FailedMessage = dm.Digest, dm.Rollout, cause.Error()
	}
	if err := a.saveJournal(); err != nil {
		a.cfg.Logf("agent: %v", err)
	}
	st.Phase, st.Message = fleet.PhaseFailed, cause.Error()
	a.setPhase(ctx, st)
	if permanent {
		return nil
	}
	return cause
}

func (a *Agent) hook(rel, step string) error {
	if a.cfg.Hooks.Step == nil {
		return nil
	}
	return a.cfg.Hooks.Step(rel, step)
}

// gc removes slots other than the current, previous and pending ones.
func (a *Agent) gc(rel string, rj *releaseJournal) {
	dir := filepath.Join(a.releaseDir(rel), "slots")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	keep := map[string]bool{slotName(rj.Current): true, slotName(rj.Previous): true}
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".partial")
		if !keep[name] {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				a.cfg.Logf("agent: %s: remove old slot: %v", rel, err)
			}
		}
	}
}

// syncTree fsyncs every file and folder under dir so a rename after it
// cannot expose unwritten data after a power loss.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		serr := f.Sync()
		f.Close()
		if serr != nil && !errors.Is(serr, os.ErrInvalid) {
			return fmt.Errorf("sync %s: %w", p, serr)
		}
		return nil
	})
}

func orNone(d string) string {
	if d == "" {
		return "no model"
	}
	return digest.Short(d)
}
