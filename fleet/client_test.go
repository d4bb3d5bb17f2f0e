package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestClientDesiredAndErrors(t *testing.T) {
	var gotWait, gotINM, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotWait, gotINM, gotAuth = r.URL.Query().Get("wait"), r.Header.Get("If-None-Match"), r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/api/v1/targets/dev-1/desired":
			if gotINM == `"e1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			json.NewEncoder(w).Encode(DesiredState{Target: "dev-1", ETag: "e1"})
		case "/api/v1/targets/dev-2/desired":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":"this credential belongs to another target"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL)
	ctx := context.Background()
	ds, changed, err := c.Desired(ctx, "dev-1", "cred", "", 0)
	if err != nil || !changed || ds.ETag != "e1" || gotAuth != "Bearer cred" || gotWait != "" {
		t.Fatalf("first poll: %+v %v %v auth=%q wait=%q", ds, changed, err, gotAuth, gotWait)
	}
	ds, changed, err = c.Desired(ctx, "dev-1", "cred", "e1", 1500*time.Millisecond)
	if err != nil || changed || ds != nil || gotWait != "1500ms" {
		t.Fatalf("304 poll: %+v %v %v wait=%q", ds, changed, err, gotWait)
	}
	if _, _, err := c.Desired(ctx, "dev-1", "cred", "e1", -1); err != nil || gotWait != "0s" {
		t.Fatalf("no-wait poll: %v wait=%q", err, gotWait)
	}
	_, _, err = c.Desired(ctx, "dev-2", "cred", "", 0)
	var ae *APIError
	if !errors.Is(err, ErrForbidden) || !errors.As(err, &ae) || ae.Message != "this credential belongs to another target" {
		t.Fatalf("403: %v", err)
	}
	if err := c.ReportStatus(ctx, "dev-3", "cred", StatusReport{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("404: %v", err)
	}
	if err := NewAdminClient(srv.URL, "t").RolloutAction(ctx, "r", "explode"); err == nil {
		t.Fatal("unknown action accepted")
	}
}
