package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/examples/bearing/model"
	"github.com/cairn-dev/cairn/examples/bearing/synth"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/registry/datasets"
	"github.com/cairn-dev/cairn/registry/datasets/drift"
)

// slots trains a small v1 and v2 (and a corrupted v2) into folders under a
// temp dir and points the "current" symlink at v1, as the agent does.
func slots(t *testing.T) (root string, rows []synth.Row) {
	t.Helper()
	root = t.TempDir()
	rows = synth.Generate(synth.Options{Seed: 5, Rows: 400})
	x, y := make([][]float64, len(rows)), make([]bool, len(rows))
	for i, r := range rows {
		x[i], y[i] = r.X, r.Failing
	}
	for _, v := range []struct {
		dir, version string
		corrupt      bool
	}{{"v1", "1.0.0", false}, {"v2", "2.0.0", false}, {"v2-broken", "2.0.1", true}} {
		m, err := model.Train(x, y, model.TrainOptions{Version: v.version, Features: synth.Features, Epochs: 60})
		if err != nil {
			t.Fatal(err)
		}
		if v.corrupt {
			m.Corrupt()
		}
		if err := m.Save(filepath.Join(root, v.dir)); err != nil {
			t.Fatal(err)
		}
	}
	switchSlot(t, root, "v1")
	return root, rows
}

// switchSlot atomically repoints root/current at root/name.
func switchSlot(t *testing.T, root, name string) {
	t.Helper()
	tmp := filepath.Join(root, "current.tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Join(root, name), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestPredictMatchesEvaluationScores(t *testing.T) {
	root, rows := slots(t)
	s := newServer(filepath.Join(root, "current"))
	s.reload()
	h := s.handler()

	x := make([][]float64, 50)
	for i := range x {
		x[i] = rows[i].X
	}
	body, _ := json.Marshal(PredictRequest{Rows: x})
	rec := do(t, h, "POST", "/predict", string(body))
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /predict: %d %s", rec.Code, rec.Body)
	}
	var resp PredictResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(filepath.Join(root, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Score(x)
	if len(resp.Scores) != len(want) || resp.Version != "1.0.0" {
		t.Fatalf("got %d scores from %s, want %d from 1.0.0", len(resp.Scores), resp.Version, len(want))
	}
	for i := range want {
		if resp.Scores[i] != want[i] {
			t.Fatalf("row %d: /predict scores %v, evaluation %v", i, resp.Scores[i], want[i])
		}
	}

	// The same rows as named instances score alike.
	inst := make([]map[string]float64, 3)
	for i := range inst {
		inst[i] = map[string]float64{}
		for j, f := range synth.Features {
			inst[i][f] = x[i][j]
		}
	}
	body, _ = json.Marshal(PredictRequest{Instances: inst})
	rec = do(t, h, "POST", "/predict", string(body))
	json.Unmarshal(rec.Body.Bytes(), &resp)
	for i := range inst {
		if resp.Scores[i] != want[i] {
			t.Fatalf("instance %d: %v, want %v", i, resp.Scores[i], want[i])
		}
	}
}

func TestReloadOnSlotSwitchAndHealth(t *testing.T) {
	root, _ := slots(t)
	s := newServer(filepath.Join(root, "current"))
	s.reload()
	h := s.handler()
	if rec := do(t, h, "GET", "/healthz", ""); rec.Code != http.StatusOK {
		t.Fatalf("v1 /healthz: %d %s", rec.Code, rec.Body)
	}
	if s.reload() {
		t.Fatal("reload reports a change with the slot unchanged")
	}

	switchSlot(t, root, "v2")
	if !s.reload() {
		t.Fatal("no reload after the slot switched")
	}
	var hz map[string]string
	rec := do(t, h, "GET", "/healthz", "")
	json.Unmarshal(rec.Body.Bytes(), &hz)
	if rec.Code != http.StatusOK || hz["version"] != "2.0.0" {
		t.Fatalf("after switch to v2: %d %v", rec.Code, hz)
	}

	switchSlot(t, root, "v2-broken")
	s.reload()
	rec = do(t, h, "GET", "/healthz", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "self-test") {
		t.Fatalf("broken slot: /healthz %d %s, want 503 naming the self-test", rec.Code, rec.Body)
	}
	// The previous model keeps serving.
	body, _ := json.Marshal(PredictRequest{Rows: [][]float64{{1, 3, 3, 1, 0.3, 0.1, 30, 40}}})
	if rec := do(t, h, "POST", "/predict", string(body)); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"2.0.0"`) {
		t.Fatalf("predict while unhealthy: %d %s", rec.Code, rec.Body)
	}

	switchSlot(t, root, "v2") // rollback
	s.reload()
	if rec := do(t, h, "GET", "/healthz", ""); rec.Code != http.StatusOK {
		t.Fatalf("after rollback: %d %s", rec.Code, rec.Body)
	}
}

func TestMetrics(t *testing.T) {
	root, rows := slots(t)
	s := newServer(filepath.Join(root, "current"))
	s.reload()
	h := s.handler()
	body, _ := json.Marshal(PredictRequest{Rows: [][]float64{rows[0].X, rows[1].X}})
	do(t, h, "POST", "/predict", string(body))
	do(t, h, "POST", "/predict", `{"rows": [[1, 2]]}`) // wrong width: an error
	do(t, h, "POST", "/predict", `not json`)

	var mt Metrics
	rec := do(t, h, "GET", "/metrics", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &mt); err != nil {
		t.Fatal(err)
	}
	if mt.Requests != 3 || mt.Errors != 2 {
		t.Fatalf("requests %d errors %d, want 3 and 2", mt.Requests, mt.Errors)
	}
	if mt.ErrorRate < 0.66 || mt.ErrorRate > 0.67 {
		t.Errorf("error_rate %v, want 2/3", mt.ErrorRate)
	}
	f := mt.Features["rms"]
	if f.Count != 2 || f.Min > f.Max || len(f.Counts) != 10 || len(f.Bins) != 11 {
		t.Errorf("rms stats %+v", f)
	}
	var raw map[string]any
	json.Unmarshal(rec.Body.Bytes(), &raw)
	for _, k := range []string{"error_rate", "latency_p95_ms"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/metrics JSON lacks %q", k)
		}
	}
	for _, req := range [][]string{{"/metrics?format=prometheus"}, {"/metrics", "Accept", "text/plain"}} {
		rec := do(t, h, "GET", req[0], "", req[1:]...)
		b, _ := io.ReadAll(rec.Body)
		if !bytes.Contains(b, []byte("bearing_requests_total 3\n")) || !bytes.Contains(b, []byte(`bearing_feature_mean{feature="rms"}`)) {
			t.Errorf("%v: prometheus text lacks counters:\n%s", req, b)
		}
	}
}

func FuzzPredict(f *testing.F) {
	root := f.TempDir()
	rows := synth.Generate(synth.Options{Seed: 1, Rows: 100})
	x, y := make([][]float64, len(rows)), make([]bool, len(rows))
	for i, r := range rows {
		x[i], y[i] = r.X, r.Failing
	}
	m, err := model.Train(x, y, model.TrainOptions{Features: synth.Features, Epochs: 5})
	if err != nil {
		f.Fatal(err)
	}
	if err := m.Save(root); err != nil {
		f.Fatal(err)
	}
	s := newServer(root)
	s.reload()
	h := s.handler()
	f.Add(`{"rows": [[1,2,3,4,5,6,7,8]]}`)
	f.Add(`{"instances": [{"rms": 1}]}`)
	f.Add(`{"rows": [[1e400]]}`)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/predict", strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}

// The runtime counts live inputs into the bins of the profile the model
// ships, and exports them as cairn_input_feature histograms the agent reads
// back identically from the JSON and the Prometheus text.
func TestInputHistograms(t *testing.T) {
	root, rows := slots(t)
	f0 := synth.Features[0]
	p := datasets.Profile{Files: []datasets.FileProfile{{Path: "train.csv", Columns: []datasets.ColumnProfile{
		{Name: f0, Histogram: datasets.Histogram{Min: 0, Max: 2, Counts: []int64{5, 5}}}}}}}
	b, _ := json.Marshal(p)
	if err := os.WriteFile(filepath.Join(root, "v1", profileFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newServer(filepath.Join(root, "current"))
	s.reload()
	h := s.handler()
	// Values -1, 0, 0.5, 1.5, 2, 3 of the first feature: below the range,
	// on the first edge, bin 0, bin 1, on the last edge, above.
	var in [][]float64
	for _, v := range []float64{-1, 0, 0.5, 1.5, 2, 3} {
		r := append([]float64(nil), rows[0].X...)
		r[0] = v
		in = append(in, r)
	}
	body, _ := json.Marshal(PredictRequest{Rows: in})
	if rec := do(t, h, "POST", "/predict", string(body)); rec.Code != 200 {
		t.Fatalf("predict: %d %s", rec.Code, rec.Body)
	}
	want := []int64{1, 1, 1, 2, 1} // (-inf,0⁻] (0⁻,0] (0,1] (1,2] (2,+inf)
	fromJSON, err := agent.ParseInputs(do(t, h, "GET", "/metrics", "").Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	fromText, err := agent.ParseInputs(do(t, h, "GET", "/metrics?format=prometheus", "").Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]map[string]fleet.FeatureHistogram{"JSON": fromJSON, "Prometheus": fromText} {
		hist, ok := got[f0]
		if !ok || !slices.Equal(hist.Counts, want) || len(got) != 1 {
			t.Errorf("%s inputs = %+v, want %s counts %v", name, got, f0, want)
		}
		if rb := drift.Rebin(p.Files[0].Columns[0].Histogram.Reference(), drift.Live{Bounds: hist.Bounds, Counts: hist.Counts}); !slices.Equal(rb, []float64{1, 2, 2, 1}) {
			t.Errorf("%s: rebinned onto the profile = %v, want [1 2 2 1]", name, rb)
		}
	}
}

// TestFeedbackSpool: the inputs the runtime scored land in the feedback
// folder as complete *.jsonl files (no partial file under that name), one
// JSON object per row keyed by feature, as the agent's upload reads them.
func TestFeedbackSpool(t *testing.T) {
	root, _ := slots(t)
	s := newServer(filepath.Join(root, "current"))
	s.reload()
	dir := filepath.Join(t.TempDir(), "feedback")
	sp, err := newSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.spool = sp
	h := s.handler()
	body, _ := json.Marshal(PredictRequest{Rows: [][]float64{{1, 3, 3, 1, 0.3, 0.1, 30, 40}, {2, 3, 3, 1, 0.3, 0.1, 30, 41}}})
	if rec := do(t, h, "POST", "/predict", string(body)); rec.Code != http.StatusOK {
		t.Fatalf("predict: %d %s", rec.Code, rec.Body)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*.jsonl")); len(names) != 0 {
		t.Fatalf("spooled before a flush: %v", names)
	}
	if err := sp.flush(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 1 || !strings.HasSuffix(names[0], ".jsonl") {
		t.Fatalf("spool folder holds %v, want one .jsonl file", names)
	}
	b, _ := os.ReadFile(names[0])
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(lines), b)
	}
	var in map[string]float64
	if err := json.Unmarshal([]byte(lines[1]), &in); err != nil || len(in) != 8 || in[s.model.Config.Features[7]] != 41 {
		t.Fatalf("line %q: %v %v", lines[1], in, err)
	}
	if err := sp.flush(); err != nil {
		t.Fatal(err)
	}
	if again, _ := filepath.Glob(filepath.Join(dir, "*")); len(again) != 1 {
		t.Fatalf("an empty flush wrote %v", again)
	}
}
