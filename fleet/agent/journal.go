package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cairn-dev/cairn/internal/atomicfile"
)

// Install steps recorded in the journal.
const (
	stepDownloading = "downloading" // pulling into the inactive slot; current untouched
	stepActivating  = "activating"  // links may point at the new slot
	stepVerifying   = "verifying"   // new slot active, health check running
)

// releaseJournal is what the agent knows for sure about one release.
type releaseJournal struct {
	// Current and Previous are the digests of the active slot and of the
	// slot kept for rollback: the consistent state recovery returns to.
	Current  string `json:"current,omitempty"`
	Previous string `json:"previous,omitempty"`
	// Pending is the digest being installed and Step how far it got.
	Pending        string `json:"pending,omitempty"`
	PendingRollout string `json:"pendingRollout,omitempty"`
	Step           string `json:"step,omitempty"`
	// DownloadSince is when the download of Pending for PendingRollout
	// began: its retries last until the release's downloadTimeout from it.
	DownloadSince time.Time `json:"downloadSince,omitzero"`
	// Failed is the last digest that failed its health check, for the
	// rollout FailedRollout: not retried until the rollout changes.
	Failed        string `json:"failed,omitempty"`
	FailedRollout string `json:"failedRollout,omitempty"`
	FailedMessage string `json:"failedMessage,omitempty"`
	// RuntimePath is the link made for the release's runtime.path.
	RuntimePath string `json:"runtimePath,omitempty"`
	// Stop is the runtime's stop command of the last desired state, run
	// before the release is uninstalled; Stopped says it succeeded (a
	// removal resumed after a crash does not stop twice) and StopFailures
	// counts its failed attempts (see maxStopAttempts).
	Stop         []string `json:"stop,omitempty"`
	Stopped      bool     `json:"stopped,omitempty"`
	StopFailures int      `json:"stopFailures,omitempty"`
}

// journal is the agent's persistent state, DIR/journal.json.
type journal struct {
	Releases map[string]*releaseJournal `json:"releases"`
}

func (j *journal) release(name string) *releaseJournal {
	if j.Releases == nil {
		j.Releases = map[string]*releaseJournal{}
	}
	r, ok := j.Releases[name]
	if !ok {
		r = &releaseJournal{}
		j.Releases[name] = r
	}
	return r
}

func loadJournal(path string) (*journal, error) {
	j := &journal{Releases: map[string]*releaseJournal{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	if err := json.Unmarshal(b, j); err != nil {
		return nil, fmt.Errorf("read journal %s: %w", path, err)
	}
	if j.Releases == nil {
		j.Releases = map[string]*releaseJournal{}
	}
	return j, nil
}

func (j *journal) save(path string) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("encode journal: %w", err)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}
