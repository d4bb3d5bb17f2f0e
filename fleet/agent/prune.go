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

// prune uninstalls every release the files driver holds that the desired
// state no longer lists: its runtime.path link, then its folder (slots,
// current, previous), then its journal entry. Each step is idempotent and
// the journal entry goes last, so a crash part-way leaves the release in
// the journal and the next poll finishes the removal. A folder under
// ROOT/models with no journal entry and not desired (a crash between the
// folder's removal and the journal's save, or a stray) goes too.
func (a *Agent) prune(ctx context.Context, desired map[string]string) error {
	var errs []error
	var gone []string
	for rel := range a.j.Releases {
		if _, ok := desired[rel]; !ok {
			gone = append(gone, rel)
		}
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
		if _, ok := desired[rel]; ok || a.j.Releases[rel] != nil || !e.IsDir() || !releaseName.MatchString(rel) {
			continue
		}
		if err := os.RemoveAll(a.releaseDir(rel)); err != nil {
			errs = append(errs, fmt.Errorf("remove release %s: %w", rel, err))
		}
	}
	return errors.Join(errs...)
}

// uninstall removes one release and logs it as Removed with the digest that
// was active, which ends its deployment in lineage.
func (a *Agent) uninstall(ctx context.Context, rel string) error {
	rj := a.j.Releases[rel]
	if err := a.hook(rel, "remove"); err != nil {
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
	msg := "release no longer desired: uninstalled " + orNone(rj.Current)
	a.log = append(a.log, fleet.LogEntry{Time: time.Now().UTC(), Release: rel, Phase: fleet.PhaseRemoved, Message: msg, Digest: rj.Current})
	if over := len(a.log) - a.cfg.LogSize; over > 0 {
		a.log = slices.Delete(a.log, 0, over)
	}
	a.mu.Unlock()
	a.cfg.Logf("agent: %s: removed (was on %s)", rel, digest.Short(rj.Current))
	a.Report(ctx)
	return nil
}
