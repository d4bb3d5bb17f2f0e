package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
)

// fakeDriver runs releases nowhere: each is Verifying on its first Apply
// and Healthy after.
type fakeDriver struct {
	mu    sync.Mutex
	seen  map[string]int
	calls [][]string
}

func (f *fakeDriver) Apply(ctx context.Context, models []fleet.DesiredModel) ([]fleet.ReleaseStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rels []string
	var sts []fleet.ReleaseStatus
	for _, dm := range models {
		rels = append(rels, dm.Release)
		f.seen[dm.Release+dm.Digest]++
		st := fleet.ReleaseStatus{Release: dm.Release, Desired: dm.Digest, Phase: fleet.PhaseVerifying}
		if f.seen[dm.Release+dm.Digest] > 1 {
			st.Phase, st.Digest = fleet.PhaseHealthy, dm.Digest
		}
		sts = append(sts, st)
	}
	f.calls = append(f.calls, rels)
	return sts, nil
}

// TestDriver: with a Driver the agent hands it the desired state, reports
// each change of status, forgets releases the driver no longer runs, sends
// no host metrics and scrapes the runtime's metrics URL.
func TestDriver(t *testing.T) {
	rt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"error_rate":0.25,"latency_p95_ms":7}`))
	}))
	defer rt.Close()
	api := newMemAPI()
	drv := &fakeDriver{seen: map[string]int{}}
	a := newTestAgent(t, t.TempDir(), api, func(c *Config) { c.Driver = drv })
	dm := fleet.DesiredModel{Release: "demo", Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
		Runtime: fleet.Runtime{Metrics: rt.URL + "/metrics"}}
	ds := &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}
	for range 3 {
		if err := a.Apply(bg, ds); err != nil {
			t.Fatal(err)
		}
	}
	if got := api.phases("demo"); !slices.Equal(got, []string{fleet.PhaseVerifying, fleet.PhaseHealthy}) {
		t.Errorf("reported phases %v, want Verifying then Healthy once each", got)
	}
	rep, _ := a.buildReport(bg)
	if rep.Metrics["error_rate"] != 0.25 || rep.Metrics["cpu_percent"] != 0 || rep.Metrics["memory_bytes"] != 0 {
		t.Errorf("report metrics %v: want the runtime's, not the host's", rep.Metrics)
	}
	if err := a.Apply(bg, &fleet.DesiredState{}); err != nil {
		t.Fatal(err)
	}
	if len(a.Status()) != 0 || len(drv.calls) != 4 || len(drv.calls[3]) != 0 {
		t.Errorf("after the release left: status %v, driver calls %v", a.Status(), drv.calls)
	}
}

// keepingDriver is a fakeDriver that records the keep lists it is given.
type keepingDriver struct {
	fakeDriver
	keeps [][]string
}

func (k *keepingDriver) ApplyKeeping(ctx context.Context, models []fleet.DesiredModel, keep []string) ([]fleet.ReleaseStatus, error) {
	k.mu.Lock()
	k.keeps = append(k.keeps, keep)
	k.mu.Unlock()
	return k.Apply(ctx, models)
}

// TestDriverKeep: a driver that can keep releases gets the desired state's
// keep list, and the agent goes on reporting a kept release's last status.
func TestDriverKeep(t *testing.T) {
	api := newMemAPI()
	drv := &keepingDriver{fakeDriver: fakeDriver{seen: map[string]int{}}}
	a := newTestAgent(t, t.TempDir(), api, func(c *Config) { c.Driver = drv })
	dm := fleet.DesiredModel{Release: "demo", Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
	for range 2 {
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Apply(bg, &fleet.DesiredState{Keep: []string{"demo"}}); err != nil {
		t.Fatal(err)
	}
	if got := drv.keeps[len(drv.keeps)-1]; !slices.Equal(got, []string{"demo"}) {
		t.Errorf("driver kept %v, want [demo]", got)
	}
	if st := a.Status(); len(st) != 1 || st[0].Release != "demo" || st[0].Phase != fleet.PhaseHealthy {
		t.Errorf("status of the kept release %+v, want its last, Healthy", st)
	}
}
