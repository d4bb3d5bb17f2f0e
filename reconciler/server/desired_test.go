package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// hookStore runs before when the fleet API reads a target's desired state
// from the store, and fails that read with fail when set.
type hookStore struct {
	store.Store
	before func()
	fail   error
}

func (h *hookStore) Desired(ctx context.Context, id string) (store.Desired, error) {
	if h.before != nil {
		h.before()
	}
	if h.fail != nil {
		return store.Desired{}, h.fail
	}
	return h.Store.Desired(ctx, id)
}

// A replica whose cache is behind the store never serves an agent a state
// older than the one it holds: not when the sync loop brings the newer
// state in while the request asks the store (the race that sent targets
// back one version after a failover), and not when the store cannot be read.
func TestDesiredNeverOlderThanTheAgents(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// during runs while the request reads the store.
		during   func(s *Server) error
		fail     error
		wantCode int
	}{
		{name: "store read", wantCode: http.StatusNotModified},
		{name: "sync lands during the store read", during: func(s *Server) error { return s.sync(ctx) }, wantCode: http.StatusNotModified},
		{name: "store unreadable", fail: errors.New("connection reset"), wantCode: http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			sql, err := store.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			hs := &hookStore{Store: sql}
			s := New(Config{Store: hs, EnrollToken: "e", AutoAccept: true})
			srv := httptest.NewServer(s.Handler())
			t.Cleanup(srv.Close)
			c := fleet.NewClient(srv.URL)
			er, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "e", Name: "dev-1"})
			if err != nil {
				t.Fatal(err)
			}
			write := func(digest string) store.Desired {
				d := fleetstate.EncodeDesired(er.ID, []fleet.DesiredModel{{Release: "r", Model: "m", Digest: digest}})
				if d.Rev, err = sql.PutDesired(ctx, []store.Desired{d}); err != nil {
					t.Fatal(err)
				}
				return d
			}
			// This replica published v1; another replica's leader then
			// stored v2 and the agent got it there.
			v1 := write("sha256:1")
			s.Publish([]store.Desired{v1})
			v2 := write("sha256:2")
			hs.fail = tc.fail
			if tc.during != nil {
				hs.before = func() {
					if err := tc.during(s); err != nil {
						t.Error(err)
					}
				}
			}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/targets/"+er.ID+"/desired?wait=0s", nil)
			req.Header.Set("Authorization", "Bearer "+er.Credential)
			req.Header.Set("If-None-Match", strconv.Quote(v2.ETag))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("agent holding v2 got %d (ETag %s; v1 is %s), want %d", resp.StatusCode, resp.Header.Get("ETag"), v1.ETag, tc.wantCode)
			}
			if tc.wantCode == http.StatusNotModified && resp.Header.Get("ETag") != strconv.Quote(v2.ETag) {
				t.Fatalf("ETag %s, want v2's %s", resp.Header.Get("ETag"), v2.ETag)
			}
		})
	}
}
