package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// TestEnrollmentTakeoverRefused is the device-takeover probe of issue 14
// against a real cairn serve: the shared enrollment token creates pending
// targets, never re-binds a name that has a credential, and the real
// device's credential keeps reading its desired state.
func TestEnrollmentTakeoverRefused(t *testing.T) {
	ctx := context.Background()
	base := startServe(t, Config{Enrollment: "manual", EnrollToken: "enroll-secret", AdminToken: "admin"})
	c := fleet.NewClient(base)
	admin := fleet.NewAdminClient(base, "admin")
	desired := func(er *fleet.EnrollResponse) error {
		_, _, err := c.Desired(ctx, er.ID, er.Credential, "", 0)
		return err
	}

	// A new device is pending until an admin accepts it.
	real := enroll(t, c, "dev-a")
	if !real.Pending {
		t.Fatal("enrollment with the shared token was accepted without an admin")
	}
	if err := desired(real); !errors.Is(err, fleet.ErrPending) {
		t.Fatalf("pending device reads its desired state: %v", err)
	}
	if err := admin.TargetAction(ctx, "dev-a", "accept"); err != nil {
		t.Fatal(err)
	}
	if err := desired(real); err != nil {
		t.Fatalf("accepted device: %v", err)
	}

	// The takeover: the enrollment token under an existing name.
	thief := enroll(t, c, "dev-a")
	if !thief.Pending {
		t.Fatal("the enrollment token re-bound a name with a credential")
	}
	if err := desired(thief); !errors.Is(err, fleet.ErrPending) {
		t.Fatalf("thief's credential: %v, want pending", err)
	}
	if err := desired(real); err != nil {
		t.Fatalf("real device after the takeover attempt: %v", err)
	}
	ts, err := admin.Targets(ctx)
	if err != nil || len(ts) != 1 || !ts[0].PendingCredential || ts[0].State != "accepted" {
		t.Fatalf("targets = %+v, %v", ts, err)
	}
	if err := admin.TargetAction(ctx, "dev-a", "reject"); err != nil {
		t.Fatal(err)
	}
	if err := desired(thief); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Fatalf("rejected second credential: %v", err)
	}
	if err := desired(real); err != nil {
		t.Fatalf("real device after reject: %v", err)
	}

	// Re-enrollment proving the current credential rotates it at once.
	rot, err := c.Enroll(ctx, fleet.EnrollRequest{Name: "dev-a", Credential: real.Credential})
	if err != nil || rot.Pending {
		t.Fatalf("re-enroll with proof = %+v, %v", rot, err)
	}
	if err := desired(rot); err != nil {
		t.Fatalf("rotated credential: %v", err)
	}
	if err := desired(real); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Fatalf("old credential after rotation: %v", err)
	}

	// A pre-authorised one-time token is accepted at once, once.
	tok, err := admin.Preauth(ctx, "dev-b")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Enroll(ctx, fleet.EnrollRequest{Token: tok, Name: "dev-b"})
	if err != nil || b.Pending {
		t.Fatalf("pre-authorised enrollment = %+v, %v", b, err)
	}
	if err := desired(b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enroll(ctx, fleet.EnrollRequest{Token: tok, Name: "dev-b"}); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Fatalf("pre-authorised token used twice: %v", err)
	}

	// Delete forgets the target and its credential.
	if err := admin.TargetAction(ctx, "dev-b", "delete"); err != nil {
		t.Fatal(err)
	}
	if err := desired(b); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Fatalf("deleted target's credential: %v", err)
	}
	if ts, _ := admin.Targets(ctx); len(ts) != 1 {
		t.Fatalf("targets after delete = %d", len(ts))
	}
	// Pending targets are not part of the fleet.
	if inv, err := admin.Inventory(ctx); err != nil || len(inv.Targets) != 1 {
		t.Fatalf("inventory = %+v, %v", inv, err)
	}
	// The read token cannot accept.
	if err := fleet.NewAdminClient(base, "wrong").TargetAction(ctx, "dev-a", "accept"); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Fatalf("accept without the admin token: %v", err)
	}

	// Enrollment is rate-limited per source address (burst 20): 5,000
	// enrollments no longer take 2 s.
	limited := 0
	for i := range 40 {
		_, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "enroll-secret", Name: fmt.Sprintf("fake-%d", i)})
		if errors.Is(err, fleet.ErrRateLimited) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 40 fast enrollments refused, want most beyond the burst", limited)
	}
}

// TestFailedAuthRateLimited: guessing tokens from one address gets 429.
func TestFailedAuthRateLimited(t *testing.T) {
	base := startServe(t, Config{AdminToken: "admin"})
	limited := 0
	for range 60 {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/targets", nil)
		req.Header.Set("Authorization", "Bearer guess")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 30 {
		t.Fatalf("%d of 60 wrong tokens refused with 429", limited)
	}
}

// TestReportWithUndesiredDigestRefused is the "reports are believed" probe
// of issue 14 against a real cairn serve: a device posts a Healthy status
// for a digest it was never desired to run, dated 2001. The server answers
// 409, and lineage at that device in 2001 answers nothing.
func TestReportWithUndesiredDigestRefused(t *testing.T) {
	ctx := context.Background()
	base := startServe(t, Config{EnrollToken: "enroll-secret", AdminToken: "admin"})
	c := fleet.NewClient(base)
	dev := enroll(t, c, "dev-b")
	dated2001 := time.Date(2001, 6, 1, 0, 0, 0, 0, time.UTC)
	forged := "sha256:" + strings.Repeat("ab", 32)
	rep := fleet.StatusReport{Time: dated2001,
		Releases: []fleet.ReleaseStatus{{Release: "bearing", Phase: fleet.PhaseHealthy, Digest: forged}},
		Log:      []fleet.LogEntry{{Time: dated2001, Release: "bearing", Phase: fleet.PhaseHealthy, Message: "activated"}}}
	err := c.ReportStatus(ctx, dev.ID, dev.Credential, rep)
	var ae *fleet.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "never desired") {
		t.Fatalf("report with an undesired digest: %v, want 409 naming the digest", err)
	}
	// A heartbeat naming no digest still passes.
	if err := c.ReportStatus(ctx, dev.ID, dev.Credential, fleet.StatusReport{Time: dated2001}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/lineage/at?target=dev-b&time=2001-06-01T00:00:00Z", nil)
	req.Header.Set("Authorization", "Bearer admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), forged) || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("lineage at dev-b in 2001 = %d %s, want []", resp.StatusCode, body)
	}
	ti, err := fleet.NewAdminClient(base, "admin").Target(ctx, "dev-b")
	if err != nil || len(ti.Releases) > 0 {
		t.Fatalf("refused report changed the target's status: %+v, %v", ti, err)
	}
}
