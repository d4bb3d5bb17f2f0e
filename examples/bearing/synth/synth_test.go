package synth

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestGenerateIsSeeded(t *testing.T) {
	a := Generate(Options{Seed: 3, Rows: 50})
	b := Generate(Options{Seed: 3, Rows: 50})
	c := Generate(Options{Seed: 4, Rows: 50})
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different rows")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same rows")
	}
}

func TestCSVRoundTrip(t *testing.T) {
	rows := Generate(Options{Seed: 1, Rows: 20})
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCSV(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rows) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(rows))
	}
	for i := range rows {
		if got[i].Failing != rows[i].Failing || got[i].Bearing != rows[i].Bearing {
			t.Fatalf("row %d differs", i)
		}
	}
}

func TestReadCSVErrors(t *testing.T) {
	header := "bearing," + strings.Join(Features, ",") + ",failing\n"
	for name, in := range map[string]string{
		"empty":          "",
		"missing column": "bearing,rms\n",
		"bad number":     header + "B1,x,1,1,1,1,1,1,1,0\n",
		"bad label":      header + "B1,1,1,1,1,1,1,1,1,2\n",
		"nan":            header + "B1,NaN,1,1,1,1,1,1,1,0\n",
	} {
		if _, err := ReadCSV(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzReadCSV(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteCSV(&buf, Generate(Options{Seed: 1, Rows: 3}))
	f.Add(buf.String())
	f.Add("bearing,rms\n1,2\n")
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := ReadCSV(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, r := range rows {
			if len(r.X) != len(Features) {
				t.Fatalf("row with %d features", len(r.X))
			}
		}
	})
}
