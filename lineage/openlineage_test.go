package lineage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cairn-dev/cairn/internal/schematest"
	"github.com/cairn-dev/cairn/lineage/openlineage"
)

// offlineLoader serves the schema documents it knows from local files and
// refuses every other URL, so a reference to a remote document fails the
// test instead of reaching the network.
type offlineLoader map[string]string

func (l offlineLoader) Load(url string) (any, error) {
	p, ok := l[url]
	if !ok {
		return nil, fmt.Errorf("schema %s is not available offline", url)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return jsonschema.UnmarshalJSON(f)
}

const schemaID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"

const facetsID = "https://github.com/cairn-dev/cairn/blob/main/lineage/facets.json"

func compileSchema(t *testing.T) (event, runEvent *jsonschema.Schema) {
	t.Helper()
	c := newCompiler(t)
	c.AssertFormat()
	event, err := c.Compile(schemaID)
	if err != nil {
		t.Fatalf("compile OpenLineage schema: %v", err)
	}
	runEvent, err = c.Compile(openlineage.RunEventSchema)
	if err != nil {
		t.Fatalf("compile %s: %v", openlineage.RunEventSchema, err)
	}
	return event, runEvent
}

func newCompiler(t *testing.T) *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.UseLoader(offlineLoader{schemaID: schematest.Path(t, "openlineage/OpenLineage.json"), facetsID: "facets.json"})
	c.AssertFormat()
	return c
}

// validateFacets checks each cairn facet of an event against facets.json.
func validateFacets(t *testing.T, c *jsonschema.Compiler, raw []byte) {
	t.Helper()
	var ev struct {
		Run struct {
			Facets map[string]json.RawMessage `json:"facets"`
		} `json:"run"`
		Inputs, Outputs []struct {
			Facets map[string]json.RawMessage `json:"facets"`
		}
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	all := []map[string]json.RawMessage{ev.Run.Facets}
	for _, d := range append(ev.Inputs, ev.Outputs...) {
		all = append(all, d.Facets)
	}
	defs := map[string]string{"cairn_model": "ModelFacet", "cairn_deployment": "DeploymentFacet", "cairn_admission": "AdmissionFacet"}
	for _, facets := range all {
		for name, f := range facets {
			def, ok := defs[name]
			if !ok {
				t.Errorf("facet %s has no schema", name)
				continue
			}
			var url struct {
				SchemaURL string `json:"_schemaURL"`
			}
			json.Unmarshal(f, &url)
			if want := facetsID + "#/$defs/" + def; url.SchemaURL != want {
				t.Errorf("facet %s _schemaURL = %s, want %s", name, url.SchemaURL, want)
			}
			s, err := c.Compile(facetsID + "#/$defs/" + def)
			if err != nil {
				t.Fatalf("compile %s: %v", def, err)
			}
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(f))
			if err := s.Validate(inst); err != nil {
				t.Errorf("facet %s does not validate against facets.json: %v\n%s", name, err, f)
			}
		}
	}
}

func exportAll(t *testing.T, q Querier) []openlineage.RunEvent {
	t.Helper()
	var evs []openlineage.RunEvent
	if err := Export(context.Background(), q, func(ev openlineage.RunEvent) error { evs = append(evs, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestRunEventsValidate(t *testing.T) {
	event, runEvent := compileSchema(t)
	fc := newCompiler(t)
	g := openSQLite(t)
	ctx := context.Background()
	h := recordHistory(t, g)
	if err := g.RecordAdmission(ctx, AdmissionFacts{Commit: "c3", Release: "bearing", ModelDigest: h.v2, Denied: true, Message: "require-evaluation: no evaluatedOn", Evaluations: []Evaluation{{Dataset: "holdout", Metrics: map[string]float64{"auc": 0.5}}}, Time: h.end}); err != nil {
		t.Fatal(err)
	}
	evs := exportAll(t, g)
	kinds := map[string]bool{}
	for i, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]*jsonschema.Schema{"OpenLineage.json": event, "RunEvent": runEvent} {
			if err := s.Validate(inst); err != nil {
				t.Errorf("event %d (%s %s) does not validate against %s: %v\n%s", i, ev.Job.Name, ev.EventType, name, err, b)
			}
		}
		validateFacets(t, fc, b)
		if _, err := uuid.Parse(ev.Run.RunID); err != nil {
			t.Errorf("event %d runId %q: %v", i, ev.Run.RunID, err)
		}
		kinds[ev.EventType] = true
		kinds[ev.Job.Name] = true
	}
	for _, want := range []string{openlineage.EventStart, openlineage.EventComplete, openlineage.EventFail, "model.push/reg.example/models/bearing", "admission/bearing", "deploy/bearing", "rollback/bearing"} {
		if !kinds[want] {
			t.Errorf("no exported event has %s", want)
		}
	}
	// A negative control: the validator does reject a broken event.
	bad, _ := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(`{"eventTime":"2026-01-01T00:00:00Z","producer":"https://x","schemaURL":"https://x","eventType":"DONE","run":{"runId":"r"},"job":{"namespace":"n","name":"j"}}`)))
	if event.Validate(bad) == nil {
		t.Fatal("the schema accepts an event with eventType DONE and a runId that is no UUID")
	}
}

func TestRunIDsStable(t *testing.T) {
	a, b := openSQLite(t), openSQLite(t)
	recordHistory(t, a)
	recordHistory(t, b)
	recordHistory(t, b) // a replay adds nothing
	ea, eb := exportAll(t, a), exportAll(t, b)
	ja, _ := json.Marshal(ea)
	jb, _ := json.Marshal(eb)
	if !bytes.Equal(ja, jb) {
		t.Fatalf("exports differ after a replay:\n%s\n%s", ja, jb)
	}
	// START and COMPLETE of one deployment share the run.
	runs := map[string][]string{}
	for _, ev := range ea {
		if ev.Job.Name == "deploy/bearing" {
			runs[ev.Run.RunID] = append(runs[ev.Run.RunID], ev.EventType)
		}
	}
	pairs := 0
	for _, types := range runs {
		if len(types) == 2 && types[0] == openlineage.EventStart && types[1] != openlineage.EventStart {
			pairs++
		}
	}
	if pairs != 4 {
		t.Fatalf("deployment runs with START then an end event = %d, want 4: %v", pairs, runs)
	}
}

func TestPosterRetries(t *testing.T) {
	var calls atomic.Int32
	var got openlineage.RunEvent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/lineage" || r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "wrong request", http.StatusBadRequest)
			return
		}
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	ev := openlineage.RunEvent{EventType: openlineage.EventComplete, EventTime: t0, Producer: openlineage.Producer, SchemaURL: openlineage.RunEventSchema, Run: openlineage.Run{RunID: uuid.NewString()}, Job: openlineage.Job{Namespace: openlineage.JobNamespace, Name: "j"}}
	p := &openlineage.Poster{URL: srv.URL + "/", Token: "tok", Backoff: time.Millisecond}
	if err := p.Post(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || got.Run.RunID != ev.Run.RunID {
		t.Fatalf("calls = %d, got run %q", calls.Load(), got.Run.RunID)
	}
	// A 4xx is not retried; running out of attempts is an error.
	p.Token = "wrong"
	calls.Store(0)
	if err := p.Post(context.Background(), ev); err == nil {
		t.Fatal("Post with a rejected token succeeded")
	}
	down := &openlineage.Poster{URL: "http://127.0.0.1:1", Attempts: 2, Backoff: time.Millisecond}
	if err := down.Post(context.Background(), ev); err == nil {
		t.Fatal("Post to a closed port succeeded")
	}
}
