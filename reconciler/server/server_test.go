package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

func newTestServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: st, EnrollToken: "e", AutoAccept: true, AdminToken: "a", ReadToken: "r", StatusRate: 1, StatusBurst: 2})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, hs
}

func TestLongPollWakesOnPublish(t *testing.T) {
	s, hs := newTestServer(t)
	c := fleet.NewClient(hs.URL)
	ctx := context.Background()
	er, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "e", Name: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	ds, changed, err := c.Desired(ctx, er.ID, er.Credential, "", 0)
	if err != nil || !changed || len(ds.Models) != 0 {
		t.Fatalf("initial desired = %+v %v %v", ds, changed, err)
	}
	// Same ETag and no wait: 304 at once.
	if _, changed, err := c.Desired(ctx, er.ID, er.Credential, ds.ETag, -1); err != nil || changed {
		t.Fatalf("304 expected: %v %v", changed, err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.Publish([]store.Desired{fleetstate.EncodeDesired(er.ID, []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:1"}})})
	}()
	got, changed, err := c.Desired(ctx, er.ID, er.Credential, ds.ETag, 10*time.Second)
	if err != nil || !changed || len(got.Models) != 1 || got.ETag == ds.ETag {
		t.Fatalf("long-poll = %+v %v %v", got, changed, err)
	}
}

func TestEnrollAndStatusValidation(t *testing.T) {
	_, hs := newTestServer(t)
	c := fleet.NewClient(hs.URL)
	ctx := context.Background()
	if _, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "wrong", Name: "x"}); err == nil {
		t.Fatal("enrolled with a wrong token")
	}
	if _, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "e", Name: "../etc"}); err == nil {
		t.Fatal("enrolled a bad name")
	}
	er, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "e", Name: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ReportStatus(ctx, er.ID, er.Credential, fleet.StatusReport{Releases: []fleet.ReleaseStatus{{Release: "r", Phase: "Dancing"}}}); err == nil {
		t.Fatal("accepted an unknown phase")
	}
	// Oversized body: 413.
	big := bytes.Repeat([]byte("x"), 2<<20)
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/api/v1/targets/dev-1/status", bytes.NewReader(append(append([]byte(`{"metrics":{"`), big...), `":1}}`...)))
	req.Header.Set("Authorization", "Bearer "+er.Credential)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized status: %v %v", resp.StatusCode, err)
	}
	// Rate limit: burst 2, then 429 (the bad reports above used one token).
	var codes []int
	for range 3 {
		err := c.ReportStatus(ctx, er.ID, er.Credential, fleet.StatusReport{})
		if err == nil {
			codes = append(codes, 204)
		} else if ae, ok := err.(*fleet.APIError); ok {
			codes = append(codes, ae.Status)
		}
	}
	if codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("codes = %v, want a 429", codes)
	}
	// Status API tokens.
	for tok, want := range map[string]int{"": 401, "r": 200, "a": 200, "e": 401} {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/v1/targets", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, _ := http.DefaultClient.Do(req)
		if resp.StatusCode != want {
			t.Errorf("GET targets with %q: %d, want %d", tok, resp.StatusCode, want)
		}
	}
	if err := fleet.NewAdminClient(hs.URL, "r").RolloutAction(ctx, "x", "pause"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("read-only token acted: %v", err)
	}
}

func TestMatchETag(t *testing.T) {
	for h, want := range map[string]bool{`"abc"`: true, `W/"abc"`: true, `"x", "abc"`: true, `*`: true, `"abcd"`: false, ``: false} {
		if got := matchETag(h, "abc"); got != want {
			t.Errorf("matchETag(%q) = %v", h, got)
		}
	}
}

func FuzzValidateStatus(f *testing.F) {
	f.Add([]byte(`{"releases":[{"release":"r","phase":"Healthy"}],"metrics":{"cpu":1}}`))
	f.Add([]byte(`{"facts":{"memory":-1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r fleet.StatusReport
		if json.Unmarshal(b, &r) != nil {
			return
		}
		if ValidateStatus(r) == nil {
			// An accepted report must encode again (it is stored as JSON).
			if _, err := json.Marshal(r); err != nil {
				t.Fatalf("accepted report does not encode: %v", err)
			}
		}
	})
}

func FuzzValidateEnroll(f *testing.F) {
	f.Add([]byte(`{"name":"dev-1","labels":{"env":"prod"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r fleet.EnrollRequest
		if json.Unmarshal(b, &r) != nil {
			return
		}
		if ValidateEnroll(r) == nil && (strings.ContainsAny(r.Name, "/\\ ") || r.Name == "") {
			t.Fatalf("accepted name %q", r.Name)
		}
	})
}
