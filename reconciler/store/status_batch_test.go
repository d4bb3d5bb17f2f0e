package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// TestStatusBatches sends many concurrent reports, one of a target that is
// not enrolled: each gets its own answer and every report is stored.
func TestStatusBatches(t *testing.T) {
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			ctx := context.Background()
			const n = 300
			for i := 0; i < n; i++ {
				if err := s.EnrollTarget(ctx, store.Target{ID: fmt.Sprintf("t%d", i), Name: fmt.Sprintf("t%d", i), CredHash: "h"}); err != nil {
					t.Fatal(err)
				}
			}
			at := time.Now().UTC().Truncate(time.Microsecond)
			var wg sync.WaitGroup
			errs := make([]error, n+1)
			for i := 0; i <= n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					id := fmt.Sprintf("t%d", i) // t300 is not enrolled
					errs[i] = s.PutStatus(ctx, id, fleet.StatusReport{Time: at, Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Message: id}},
						Log: []fleet.LogEntry{{Release: "r", Phase: fleet.PhaseHealthy, Message: "report of " + id}}}, at)
				}(i)
			}
			wg.Wait()
			for i := 0; i < n; i++ {
				if errs[i] != nil {
					t.Fatalf("report %d: %v", i, errs[i])
				}
			}
			if !errors.Is(errs[n], store.ErrNotFound) {
				t.Fatalf("report of a target not enrolled: %v, want ErrNotFound", errs[n])
			}
			for i := 0; i < n; i++ {
				id := fmt.Sprintf("t%d", i)
				tg, err := s.Target(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if tg.Status == nil || len(tg.Status.Releases) != 1 || tg.Status.Releases[0].Message != id || !tg.LastSeen.Equal(at) {
					t.Fatalf("target %s: status %+v last seen %v", id, tg.Status, tg.LastSeen)
				}
				log, err := s.Log(ctx, id, 10)
				if err != nil || len(log) != 1 {
					t.Fatalf("log of %s: %v %v", id, log, err)
				}
			}
		})
	}
}

// TestStatusAcknowledgedSurvivesKill re-executes the test binary as a
// writer of reports that prints each acknowledged one, SIGKILLs it while it
// writes, and checks that every acknowledged report is in the database.
func TestStatusAcknowledgedSurvivesKill(t *testing.T) {
	if dsn := os.Getenv("CAIRN_STATUS_WRITER_DB"); dsn != "" {
		statusWriter(dsn)
		return
	}
	dsn := filepath.Join(t.TempDir(), "cairn.db")
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		if err := s.EnrollTarget(ctx, store.Target{ID: fmt.Sprintf("t%d", i), Name: fmt.Sprintf("t%d", i), CredHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStatusAcknowledgedSurvivesKill$")
	cmd.Env = append(os.Environ(), "CAIRN_STATUS_WRITER_DB="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{} // target → highest acknowledged sequence
	sc := bufio.NewScanner(out)
	lines := 0
	for sc.Scan() {
		var id string
		var seq int
		if _, err := fmt.Sscanf(sc.Text(), "ack %s %d", &id, &seq); err != nil {
			continue
		}
		acked[id] = max(acked[id], seq)
		if lines++; lines == 2000 {
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	cmd.Wait()
	if lines < 2000 {
		t.Fatalf("the writer stopped after %d acknowledgements", lines)
	}
	db, err = sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for id, seq := range acked {
		tg, err := s.Target(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tg.Status == nil || len(tg.Status.Releases) == 0 {
			t.Fatalf("target %s: no stored report, but %d was acknowledged", id, seq)
		}
		if got, _ := strconv.Atoi(tg.Status.Releases[0].Message); got < seq {
			t.Fatalf("target %s: stored report %d, but %d was acknowledged", id, got, seq)
		}
	}
}

// statusWriter is the child of TestStatusAcknowledgedSurvivesKill: 64
// writers report in a loop, printing "ack ID SEQ" after each PutStatus.
func statusWriter(dsn string) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		panic(err)
	}
	s, err := store.Open(ctx, db)
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("t%d", i)
			for seq := 1; ; seq++ {
				now := time.Now()
				if err := s.PutStatus(ctx, id, fleet.StatusReport{Time: now, Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Message: strconv.Itoa(seq)}}}, now); err != nil {
					panic(err)
				}
				mu.Lock()
				fmt.Printf("ack %s %d\n", id, seq)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
}
