package lineage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/lineage/openlineage"
)

// server mounts the API the way cairn serve does: reads and record.
func server(t *testing.T, g *Graph) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(PathPrefix, NewHandler(g))
	mux.Handle(PathRecord, NewRecordHandler(g))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestClientMatchesGraph(t *testing.T) {
	g := openSQLite(t)
	srv := server(t, g)
	c := NewClient(srv.URL, "")
	ctx := context.Background()
	// Record through the API, query both ways.
	h := history{v1: digestOf('1'), d1: digestOf('d')}
	if err := c.RecordPush(ctx, PushFacts{ModelDigest: h.v1, Revision: "train1", TrainedOn: map[string]string{"vib": h.d1}, Time: t0}); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordAdmission(ctx, AdmissionFacts{Commit: "c1", Release: "bearing", ModelDigest: h.v1, Time: t0}); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordDeployment(ctx, DeploymentFacts{Target: "dev-1", Release: "bearing", ModelDigest: h.v1, Start: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordRollback(ctx, RollbackFacts{Release: "bearing", From: h.v1, Targets: []string{"dev-1"}, Time: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Record(ctx, RecordRequest{Edges: []Edge{{Type: EdgeEvaluatedOn, From: "model:" + h.v1, To: "dataset:holdout", Time: t0}}}); err != nil {
		t.Fatal(err)
	}
	when := t0.Add(30 * time.Minute)
	for _, q := range []struct {
		name string
		call func(Querier) (any, error)
	}{
		{"upstream", func(q Querier) (any, error) { return q.Upstream(ctx, "target:dev-1", 3) }},
		{"downstream", func(q Querier) (any, error) { return q.Downstream(ctx, "dataset:"+h.d1, 0) }},
		{"at", func(q Querier) (any, error) { return q.At(ctx, "dev-1", when) }},
		{"where", func(q Querier) (any, error) { return q.Where(ctx, h.d1, &when) }},
		{"steps", func(q Querier) (any, error) { return q.Steps(ctx, 1, 2) }},
	} {
		t.Run(q.name, func(t *testing.T) {
			want, err := q.call(g)
			if err != nil {
				t.Fatal(err)
			}
			got, err := q.call(c)
			if err != nil {
				t.Fatal(err)
			}
			wj, _ := json.Marshal(want)
			gj, _ := json.Marshal(got)
			if string(wj) != string(gj) {
				t.Fatalf("client:\n%s\ngraph:\n%s", gj, wj)
			}
			if string(wj) == "null" || string(wj) == "[]" {
				t.Fatalf("empty answer: %s", wj)
			}
		})
	}
	// Export through the server: JSON lines, same events as Export.
	resp, err := http.Get(srv.URL + PathPrefix + "export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []openlineage.RunEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev openlineage.RunEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, ev)
	}
	want := exportAll(t, c)
	lj, wj := canonical(t, lines), canonical(t, want)
	if len(lines) != 4 || lj != wj {
		t.Fatalf("server export:\n%s\nclient export:\n%s", lj, wj)
	}
}

func TestHandlerErrors(t *testing.T) {
	g := openSQLite(t)
	srv := server(t, g)
	c := NewClient(srv.URL, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
	}{
		{"bad node", "GET", PathPrefix + "upstream?node=table:x", "", 400},
		{"bad depth", "GET", PathPrefix + "downstream?node=target:x&depth=-1", "", 400},
		{"bad time", "GET", PathPrefix + "at?target=x&time=yesterday", "", 400},
		{"no target", "GET", PathPrefix + "at", "", 400},
		{"no node", "GET", PathPrefix + "where", "", 400},
		{"record GET", "GET", PathRecord, "", 405},
		{"record two facts", "POST", PathRecord, `{"push":{"modelDigest":"sha256:a","time":"2026-01-01T00:00:00Z"},"edges":[{"type":"trainedOn","from":"model:a","to":"dataset:b","time":"2026-01-01T00:00:00Z"}]}`, 400},
		{"record unknown field", "POST", PathRecord, `{"pushed":{}}`, 400},
		{"record garbage", "POST", PathRecord, `{`, 400},
		{"record ok", "POST", PathRecord, `{"deployment":{"target":"dev-1","modelDigest":"sha256:a","start":"2026-01-01T00:00:00Z"}}`, 204},
		{"unknown path", "GET", PathPrefix + "sideways", "", 404},
		{"unknown node", "GET", PathPrefix + "upstream?node=target:nobody", "", 404},
		{"unknown dataset", "GET", PathPrefix + "where?node=dataset:nothing", "", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
			}
		})
	}
	if _, err := c.Upstream(ctx, "table:x", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("client error = %v, want ErrInvalid", err)
	}
	if _, err := c.Downstream(ctx, "target:nobody", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("client error = %v, want ErrNotFound", err)
	}
}

// FuzzRecordRequest feeds the record endpoint's decoder and recorders with
// arbitrary bodies: they must answer 204 or 4xx, never panic or 500.
func FuzzRecordRequest(f *testing.F) {
	for _, s := range []string{
		`{"push":{"modelDigest":"sha256:a","trainedOn":{"d":"sha256:d"},"revision":"c","time":"2026-01-01T00:00:00Z"}}`,
		`{"admission":{"commit":"c","release":"r","modelDigest":"a","evaluations":[{"dataset":"h","metrics":{"auc":1}}]}}`,
		`{"deployment":{"target":"t","modelDigest":"a","start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z","outcome":"Failed"}}`,
		`{"rollback":{"release":"r","from":"a","to":"b","targets":["t"]}}`,
		`{"edges":[{"type":"deployedTo","from":"model:a","to":"target:t","time":"2026-01-01T00:00:00Z","phase":"end"}]}`,
		`{}`, `[]`, `null`,
	} {
		f.Add(s)
	}
	g := openSQLite(f)
	h := NewRecordHandler(g)
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathRecord, strings.NewReader(body)))
		if rec.Code != http.StatusNoContent && rec.Code/100 != 4 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}

func FuzzSplitNode(f *testing.F) {
	for _, s := range []string{"model:sha256:abc", "target:dev-1", "x", ":", "dataset:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, id, err := SplitNode(s)
		if err == nil && Node(typ, id) != s {
			t.Fatalf("Node(SplitNode(%q)) = %q", s, Node(typ, id))
		}
	})
}

// canonical is v's JSON with object keys sorted.
func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(x)
	return string(b)
}
