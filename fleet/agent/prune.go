package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
)

// maxStopAttempts is how many times the agent tries a pruned release's
// stop command before it uninstalls the release anyway. A failed attempt
// is logged (Removing) and reported, the release stays installed and the
// removal is retried on the next polls (with the agent's backoff); the
// count is kept in the journal, so a restart does not start it over. The
// third failure is reported in the Removed entry, and the model's files go:
// a runtime that cannot be stopped must not keep a removal pending forever.
const maxStopAttempts = 3

// prune uninstalls every release the files driver holds that the desired
// state no longer lists, except those it keeps (fleet.DesiredState.Keep):
// its runtime's stop command, its runtime.path link, then its folder
// (slots, current, previous), then its journal entry. Each step is
// idempotent and the journal entry goes last, so a crash part-way leaves
// the release in the journal and the next poll finishes the removal. A
// folder under ROOT/models with no journal entry, neither desired nor kept
// (a crash between the folder's removal and the journal's save, or a
// stray), goes too.
func (a *Agent) prune(ctx context.Context, desired map[string]string, keepList []string) error {
	keep := make(map[string]bool, len(keepList))
	for _, rel := range keepList {
		keep[rel] = true
	}
	var errs []error
	var gone []string
	for rel := range a.j.Releases {
		if _, ok := desired[rel]; ok {
			continue
		}
		if keep[rel] {
			a.noteKept(rel)
			continue
		}
		gone = append(gone, rel)
	}
	slices.Sort(gone)
	for _, rel := range gone {
		if err := a.uninstall(ctx, rel); err != nil {
			errs = append(errs, fmt.Errorf("remove release %s: %w", rel, err))
		}
	}
	ents, err := os.ReadDir(filepath.Join(a.cfg.Root, "models"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list releases: %w", err))
	}
	for _, e := range ents {
		rel := e.Name()
		if _, ok := desired[rel]; ok || keep[rel] || a.j.Releases[rel] != nil || !e.IsDir() || !releaseName.MatchString(rel) {
			continue
		}
		if err := os.RemoveAll(a.releaseDir(rel)); err != nil {
			errs = append(errs, fmt.Errorf("remove release %s: %w", rel, err))
		}
	}
	return errors.Join(errs...)
}

// noteKept logs, once, that a release no longer desired stays installed.
func (a *Agent) noteKept(rel string) {
	if a.kept[rel] {
		return
	}
	a.kept[rel] = true
	a.cfg.Logf("agent: %s: no longer desired; kept installed (the desired state keeps it: prune: false)", rel)
}

// noteDesired records what a desired release's later removal needs (its
// stop command) and undoes an unfinished one: a release stopped for a
// removal that did not complete and desired again is restarted.
func (a *Agent) noteDesired(ctx context.Context, dm fleet.DesiredModel, rj *releaseJournal) error {
	delete(a.kept, dm.Release)
	if slices.Equal(rj.Stop, dm.Runtime.Stop) && !rj.Stopped && rj.StopFailures == 0 {
		return nil
	}
	restart := rj.Stopped && rj.Current != ""
	rj.Stop, rj.Stopped, rj.StopFailures = slices.Clone(dm.Runtime.Stop), false, 0
	if err := a.saveJournal(); err != nil {
		return err
	}
	if restart {
		if err := runCommand(ctx, dm.Runtime.Restart, a.slotDir(dm.Release, rj.Current)); err != nil {
			a.cfg.Logf("agent: %s: restart after an unfinished removal: %v", dm.Release, err)
		}
	}
	return nil
}

// stop runs a pruned release's stop command, once, before its files go. It
// returns an error while the removal must wait (an attempt failed, fewer
// than maxStopAttempts so far) and, once the attempts are spent, the last
// failure as note for the Removed entry.
func (a *Agent) stop(ctx context.Context, rel string, rj *releaseJournal) (note string, err error) {
	if len(rj.Stop) == 0 || rj.Stopped || rj.Current == "" {
		return "", nil
	}
	serr := runCommand(ctx, rj.Stop, a.slotDir(rel, rj.Current))
	if serr == nil {
		rj.Stopped = true
		return "", a.saveJournal()
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	rj.StopFailures++
	if err := a.saveJournal(); err != nil {
		return "", err
	}
	if rj.StopFailures >= maxStopAttempts {
		return fmt.Sprintf("; stop command failed %d times, uninstalled anyway: %v", rj.StopFailures, serr), nil
	}
	msg := fmt.Sprintf("stop runtime (attempt %d of %d; removal retried): %v", rj.StopFailures, maxStopAttempts, serr)
	a.mu.Lock()
	a.log = append(a.log, fleet.LogEntry{Time: time.Now().UTC(), Release: rel, Phase: fleet.PhaseRemoving, Message: trimMessage(msg), Digest: rj.Current})
	if over := len(a.log) - a.cfg.LogSize; over > 0 {
		a.log = slices.Delete(a.log, 0, over)
	}
	a.mu.Unlock()
	a.cfg.Logf("agent: %s: %s", rel, msg)
	a.Report(ctx)
	return "", errors.New(msg)
}

// uninstall removes one release and logs it as Removed with the digest that
// was active, which ends its deployment in lineage.
func (a *Agent) uninstall(ctx context.Context, rel string) error {
	rj := a.j.Releases[rel]
	if err := a.hook(rel, "remove"); err != nil {
		return err
	}
	note, err := a.stop(ctx, rel, rj)
	if err != nil {
		return err
	}
	if rj.RuntimePath != "" {
		if fi, err := os.Lstat(rj.RuntimePath); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if err := os.Remove(rj.RuntimePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove runtime link: %w", err)
			}
		}
	}
	if err := os.RemoveAll(a.releaseDir(rel)); err != nil {
		return fmt.Errorf("remove slots: %w", err)
	}
	if err := a.hook(rel, "removed-files"); err != nil {
		return err
	}
	delete(a.j.Releases, rel)
	if err := a.saveJournal(); err != nil {
		return err
	}
	a.mu.Lock()
	delete(a.status, rel)
	delete(a.health, rel)
	delete(a.inputs, rel)
	delete(a.scraped, rel)
	msg := trimMessage("release no longer desired: uninstalled " + orNone(rj.Current) + note)
	a.log = append(a.log, fleet.LogEntry{Time: time.Now().UTC(), Release: rel, Phase: fleet.PhaseRemoved, Message: msg, Digest: rj.Current})
	if over := len(a.log) - a.cfg.LogSize; over > 0 {
		a.log = slices.Delete(a.log, 0, over)
	}
	a.mu.Unlock()
	a.cfg.Logf("agent: %s: removed (was on %s)%s", rel, digest.Short(rj.Current), note)
	a.Report(ctx)
	return nil
}

// trimMessage bounds a log message as setPhase bounds a status message.
func trimMessage(m string) string {
	if len(m) > maxMessage {
		return m[:maxMessage] + "…"
	}
	return m
}
