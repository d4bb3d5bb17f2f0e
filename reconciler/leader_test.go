package reconciler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// A force-push of the branch back to an older commit is not admitted (Git
// history places it behind the admitted one): a CommitBehind event says so
// once, targets stay where they are, and the same content pushed as a new
// commit (git revert) is admitted. A restart keeps refusing it.
func TestForcePushBackIsNotAdmitted(t *testing.T) {
	url, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	cfg := Config{Repo: url, Interval: Duration(200 * time.Millisecond), EnrollToken: "enroll-secret",
		AdminToken: "admin-secret", ReconcileInterval: Duration(200 * time.Millisecond), Data: t.TempDir()}
	base, stop := startServeStop(t, cfg)
	c := fleet.NewClient(base)
	er := enroll(t, c, "dev-a")
	waitDigest(t, c, er, digestOf(1), 10*time.Second)
	commitPush(t, work, manifestsFor(2), "v2")
	waitDigest(t, c, er, digestOf(2), 10*time.Second)

	run(t, work, "git", "reset", "-q", "--hard", "HEAD~1")
	run(t, work, "git", "push", "-q", "--force", "origin", "main")
	admin := fleet.NewAdminClient(base, "admin-secret")
	behind := func(base string) []fleet.Event {
		evs, err := fleet.NewAdminClient(base, "admin-secret").Events(context.Background(), fleet.EventFilter{Type: EventCommitBehind})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(behind(base)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no CommitBehind event after the force-push back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // more fetches and passes: still one event, still v2
	if evs := behind(base); len(evs) != 1 || !strings.Contains(evs[0].Message, "git revert") {
		t.Fatalf("events = %+v", evs)
	}
	rs, err := admin.Releases(context.Background())
	if err != nil || len(rs) != 1 || rs[0].Digest != digestOf(2) {
		t.Fatalf("after the force-push back: %+v %v", rs, err)
	}
	src, err := admin.Source(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ready := false
	for _, c := range src.Conditions {
		if c.Type == "Ready" && c.Status == "False" && c.Reason == ReasonHistoryRewound {
			ready = true
		}
	}
	if !ready {
		t.Fatalf("source conditions: %+v", src.Conditions)
	}

	// A restart over the same data still refuses it, without a new event.
	stop()
	base = startServe(t, cfg)
	c = fleet.NewClient(base)
	time.Sleep(time.Second)
	if evs := behind(base); len(evs) != 1 {
		t.Fatalf("after restart: %d CommitBehind events", len(evs))
	}
	waitDigest(t, c, er, digestOf(2), 5*time.Second)

	// The rollback as a new commit is admitted.
	commitPush(t, work, strings.Replace(manifestsFor(1), "version: 1.0.1", "version: 1.0.1-revert", 1), "revert v2")
	waitDigest(t, c, er, digestOf(1), 10*time.Second)
}
