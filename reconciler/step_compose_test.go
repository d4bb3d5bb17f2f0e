package reconciler

import (
	"encoding/json"
	"strconv"
	"testing"
	"unsafe"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
)

// compose writes every body as it always did, head and rest, and the
// targets of one list and no evaluation runs share one rest.
func TestComposeSharesRest(t *testing.T) {
	r := &Reconciler{fleet: newTargetCache()}
	r.fleet.order = []string{"a", "b", "c", "d"}
	models := []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:1", Artifact: "reg/m@sha256:1"}, {Release: "s", Model: "n", Digest: "sha256:2"}}
	perTarget := map[string][]int32{"a": {0, 1}, "b": {0, 1}, "c": {0, 1}, "d": {1}}
	lists := newModelLists(4)
	for _, id := range r.fleet.order {
		for _, i := range perTarget[id] {
			lists.add(id, i)
		}
	}
	if len(lists.lists) != 4 { // none, [0], [0 1], [1]
		t.Fatalf("%d lists: %v", len(lists.lists), lists.lists)
	}
	runs := []fleet.EvaluationRun{{ID: "run-1"}}
	ds := r.compose(models, lists, []string{"k", "s"}, map[string][]fleet.EvaluationRun{"c": runs})
	if len(ds) != 4 {
		t.Fatalf("%d states, want 4", len(ds))
	}
	for _, d := range ds {
		// The encoding before states were split: head, models, keep, runs.
		etag, enc := encodeDesired(models, perTarget[d.Target], []string{"k", "s"})
		tail := ""
		if d.Target == "c" {
			b, _ := json.Marshal(runs)
			etag, tail = fleetstate.ETagWith(etag, b), `,"evaluations":`+string(b)
		}
		want := `{"target":` + strconv.Quote(d.Target) + `,"etag":"` + etag + `","models":` + enc + tail + `}`
		if d.Body != nil || d.Text() != want || d.ETag != etag {
			t.Errorf("%s: %s tagged %s, want %s tagged %s", d.Target, d.Text(), d.ETag, want, etag)
		}
		var st fleet.DesiredState
		if err := json.Unmarshal([]byte(d.Text()), &st); err != nil || st.ETag != d.ETag || st.Target != d.Target {
			t.Errorf("%s: decodes to %+v, %v", d.Target, st, err)
		}
	}
	if unsafe.StringData(ds[0].Rest) != unsafe.StringData(ds[1].Rest) {
		t.Error("a and b, desired the same, do not share their rest")
	}
	// A target already told its state is left out.
	r.fleet.written["a"] = ds[0].ETag
	if again := r.compose(models, lists, []string{"k", "s"}, map[string][]fleet.EvaluationRun{"c": runs}); len(again) != 3 || again[0].Target != "b" {
		t.Errorf("compose again = %d states from %s, want 3 from b", len(again), again[0].Target)
	}
}
