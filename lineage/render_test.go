package lineage

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/output"
)

func TestRender(t *testing.T) {
	g := openSQLite(t)
	h := recordHistory(t, g)
	ctx := context.Background()
	// A bare digest names a model first, then a dataset.
	sg, err := g.Downstream(ctx, h.d2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sg.Root != "dataset:"+h.d2 || len(sg.Nodes) != 2 {
		t.Fatalf("Downstream(bare dataset digest) = %+v", sg)
	}
	var dot bytes.Buffer
	if err := sg.WriteDot(&dot); err != nil {
		t.Fatal(err)
	}
	want := `digraph lineage {
  rankdir=LR;
  node [fontname="Helvetica", fontsize=10];
  edge [fontname="Helvetica", fontsize=9];
  "dataset:sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" [label="dataset\nsha256:eeeeeeeeeeee", shape=cylinder, style=bold];
  "model:sha256:2222222222222222222222222222222222222222222222222222222222222222" [label="model\nsha256:222222222222", shape=box3d];
  "model:sha256:2222222222222222222222222222222222222222222222222222222222222222" -> "dataset:sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" [label="trainedOn ×2"];
}
`
	if dot.String() != want {
		t.Fatalf("dot:\n%s\nwant:\n%s", dot.String(), want)
	}
	var table bytes.Buffer
	if err := output.Print(&table, output.Table, sg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "1      model    sha256:2222") || !strings.Contains(table.String(), "trainedOn") {
		t.Fatalf("table:\n%s", table.String())
	}
	a, err := g.At(ctx, "dev-1", h.deployV2.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	table.Reset()
	if err := output.Print(&table, output.Table, Deployments(a)); err != nil {
		t.Fatal(err)
	}
	wantRows := "TARGET  RELEASE  MODEL                SINCE                 OUTCOME    COMMIT  TRAINED ON\n" +
		"dev-1   bearing  sha256:222222222222  2026-11-02T12:00:00Z  Succeeded  c2      sha256:dddddddddddd,sha256:eeeeeeeeeeee\n"
	if table.String() != wantRows {
		t.Fatalf("at table:\n%s\nwant:\n%s", table.String(), wantRows)
	}
}
