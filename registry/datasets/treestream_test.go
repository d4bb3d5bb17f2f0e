package datasets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/registry/blobs"
)

const fileDigest = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

// TestDecodeCanonicalFastPath: encodings the fast path must not take for
// canonical are refused (by the slow path), canonical ones with unusual
// strings are accepted.
func TestDecodeCanonicalFastPath(t *testing.T) {
	tree := func(entries ...string) string { return `{"entries":[` + strings.Join(entries, ",") + `],"version":1}` }
	file := func(fields string) string { return `{` + fields + `}` }
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"plain file", tree(file(`"digest":"` + fileDigest + `","mode":420,"path":"f","size":7,"type":"file"`)), true},
		{"empty file", tree(file(`"digest":"` + fileDigest + `","mode":420,"path":"f","type":"file"`)), true},
		{"size 0 written", tree(file(`"digest":"` + fileDigest + `","mode":420,"path":"f","size":0,"type":"file"`)), false},
		{"leading zero", tree(file(`"digest":"` + fileDigest + `","mode":0420,"path":"f","size":7,"type":"file"`)), false},
		{"negative size", tree(file(`"digest":"` + fileDigest + `","mode":420,"path":"f","size":-7,"type":"file"`)), false},
		{"escaped letter", tree(file(`"digest":"` + fileDigest + `","mode":420,"path":"\u0066","size":7,"type":"file"`)), false},
		{"space after comma", `{"entries":[{"mode":493,"path":"a","type":"dir"}, {"mode":493,"path":"b","type":"dir"}],"version":1}`, false},
		{"space in entry", tree(`{"mode": 493,"path":"a","type":"dir"}`), false},
		{"empty chunk list", tree(file(`"chunks":[],"digest":"` + fileDigest + `","mode":420,"path":"f","size":7,"type":"file"`)), false},
		{"html characters raw", tree(`{"mode":493,"path":"a<b>&c","type":"dir"}`), true},
		{"html characters escaped", tree(`{"mode":493,"path":"a\u003cb","type":"dir"}`), false},
		{"quote escaped", tree(`{"mode":493,"path":"a\"b","type":"dir"}`), true},
		{"line separator raw", tree("{\"mode\":493,\"path\":\"a\u2028b\",\"type\":\"dir\"}"), false},
		{"line separator escaped", tree(`{"mode":493,"path":"a\u2028b","type":"dir"}`), true},
		{"field twice", tree(`{"mode":493,"mode":493,"path":"a","type":"dir"}`), false},
		{"truncated", `{"entries":[{"mode":493,"path":"a","type":"dir"}`, false},
		{"brace in a string", tree(`{"mode":493,"path":"a}b","type":"dir"}`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Decode([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("Decode(%s): %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidTree) {
					t.Errorf("error is not ErrInvalidTree: %v", err)
				}
				return
			}
			if b, err := Encode(tr); err != nil || string(b) != tc.in {
				t.Fatalf("round trip: %v\n%s\n%s", err, b, tc.in)
			}
		})
	}
}

// FuzzParseEntry: what the fast path accepts, encoding/json decodes to the
// same entry and re-encodes to the same bytes.
func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{
		`{"mode":493,"path":"d","type":"dir"}`,
		`{"chunks":[{"digest":"sha256:aa","size":3},{"digest":"sha256:bb","size":4}],"digest":"sha256:cc","mode":420,"path":"d/f","size":7,"type":"file"}`,
		`{"mode":511,"path":"d/l","target":"f","type":"symlink"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, ok := parseEntry(raw)
		if !ok {
			return
		}
		var slow Entry
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&slow); err != nil {
			t.Fatalf("fast path took %q, encoding/json refuses it: %v", raw, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(&e)
		if got := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(got, raw) {
			t.Fatalf("fast path took %q, which is not canonical (%q)", raw, got)
		}
	})
}

func putTree(t *testing.T, st blobs.Store, tr *Tree) string {
	t.Helper()
	b, err := Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	d := blobs.Digest(b)
	if _, err := st.Put(context.Background(), blobs.TreeKey(d), bytes.NewReader(b), int64(len(b)), d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestOpenTreeLimitAndDiff: the entry limit refuses a tree with a clear
// error; DiffFiles streams what Diff computes in memory.
func TestOpenTreeLimitAndDiff(t *testing.T) {
	st, err := blobs.NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &Tree{Version: TreeVersion, Entries: []Entry{
		{Path: "d", Type: TypeDir, Mode: 0o755},
		{Path: "d/gone", Type: TypeFile, Mode: 0o644, Digest: fileDigest, Size: 3},
		{Path: "d/same", Type: TypeFile, Mode: 0o644, Digest: fileDigest, Size: 3},
		{Path: "d/x", Type: TypeFile, Mode: 0o644, Digest: fileDigest, Size: 3},
	}}
	b := &Tree{Version: TreeVersion, Entries: []Entry{
		{Path: "d", Type: TypeDir, Mode: 0o755},
		{Path: "d/new", Type: TypeSymlink, Mode: 0o777, Target: "same"},
		{Path: "d/same", Type: TypeFile, Mode: 0o644, Digest: fileDigest, Size: 3},
		{Path: "d/x", Type: TypeFile, Mode: 0o600, Digest: fileDigest, Size: 3},
		{Path: "e", Type: TypeDir, Mode: 0o755},
	}}
	da, db := putTree(t, st, a), putTree(t, st, b)
	ctx := context.Background()
	if _, err := OpenTree(ctx, st, db, TreeOptions{MaxEntries: 4}); !errors.Is(err, ErrTooManyEntries) ||
		!strings.Contains(err.Error(), "more than 4") {
		t.Fatalf("5 entries with a limit of 4: %v", err)
	}
	fa, err := OpenTree(ctx, st, da, TreeOptions{MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := OpenTree(ctx, st, db, TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if fa.Entries != 4 || fa.Files != 3 || fa.Bytes != 9 {
		t.Errorf("counts of a: %d entries, %d files, %d bytes", fa.Entries, fa.Files, fa.Bytes)
	}
	var got Changes
	if err := DiffFiles(fa, fb, func(c Change) error { got = append(got, c); return nil }); err != nil {
		t.Fatal(err)
	}
	want := Diff(a, b)
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) || len(want) != 4 {
		t.Fatalf("DiffFiles = %s\nDiff      = %s", gj, wj)
	}
	// A tree that does not hash to its digest is refused.
	bad := []byte(`{"entries":[],"version":1}`)
	if _, err := st.Put(ctx, blobs.TreeKey(fileDigest), bytes.NewReader(bad), int64(len(bad)), ""); err == nil {
		if _, err := OpenTree(ctx, st, fileDigest, TreeOptions{}); err == nil {
			t.Fatal("a tree under the wrong digest was opened")
		}
	}
}
