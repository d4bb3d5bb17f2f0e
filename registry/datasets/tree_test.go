package datasets_test

import (
	"testing"

	"github.com/cairn-dev/cairn/registry/datasets"
)

const validTree = `{"entries":[{"mode":493,"path":"d","type":"dir"},{"chunks":[{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":3},{"digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":4}],"digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","mode":420,"path":"d/f","size":7,"type":"file"},{"mode":511,"path":"d/l","target":"f","type":"symlink"}],"version":1}`

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", validTree, true},
		{"empty", `{"entries":[],"version":1}`, true},
		{"null entries", `{"entries":null,"version":1}`, false},
		{"spaces", `{"entries": [],"version":1}`, false},
		{"key order", `{"version":1,"entries":[]}`, false},
		{"unknown field", `{"entries":[],"extra":1,"version":1}`, false},
		{"version 2", `{"entries":[],"version":2}`, false},
		{"trailing", `{"entries":[],"version":1}{}`, false},
		{"newline", `{"entries":[],"version":1}` + "\n", false},
		{"bad type", `{"entries":[{"mode":420,"path":"x","type":"fifo"}],"version":1}`, false},
		{"missing parent", `{"entries":[{"mode":493,"path":"a/b","type":"dir"}],"version":1}`, false},
		{"setuid", `{"entries":[{"mode":2541,"path":"a","type":"dir"}],"version":1}`, false},
		{"bad digest", `{"entries":[{"digest":"sha256:xyz","mode":420,"path":"f","type":"file"}],"version":1}`, false},
		// Links are resolved through the other links of the tree.
		{"relative link", `{"entries":[{"mode":511,"path":"latest","target":"v2/model.bin","type":"symlink"}],"version":1}`, true},
		{"link up a folder", `{"entries":[{"mode":493,"path":"a","type":"dir"},{"mode":511,"path":"a/b","target":"../c","type":"symlink"}],"version":1}`, true},
		{"link through a link", `{"entries":[{"mode":493,"path":"a","type":"dir"},{"mode":493,"path":"a/x","type":"dir"},{"mode":511,"path":"l","target":"a/x","type":"symlink"},{"mode":511,"path":"s","target":"l/../y","type":"symlink"}],"version":1}`, true},
		{"link chain out", `{"entries":[{"mode":511,"path":"d","target":".","type":"symlink"},{"mode":511,"path":"s","target":"d/..","type":"symlink"}],"version":1}`, false},
		{"link chain out, link sorted first", `{"entries":[{"mode":511,"path":"a","target":"z/..","type":"symlink"},{"mode":511,"path":"z","target":".","type":"symlink"}],"version":1}`, false},
		{"link chain out, two hops", `{"entries":[{"mode":493,"path":"a","type":"dir"},{"mode":511,"path":"a/up","target":"..","type":"symlink"},{"mode":511,"path":"d","target":"a/up","type":"symlink"},{"mode":511,"path":"s","target":"d/..","type":"symlink"}],"version":1}`, false},
		{"link loop", `{"entries":[{"mode":511,"path":"a","target":"b","type":"symlink"},{"mode":511,"path":"b","target":"a","type":"symlink"}],"version":1}`, false},
		{"dot-dot after a name not in the tree", `{"entries":[{"mode":511,"path":"s","target":"x/../y","type":"symlink"}],"version":1}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := datasets.Decode([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("Decode: err=%v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				return
			}
			b, err := datasets.Encode(tree)
			if err != nil || string(b) != tc.in {
				t.Fatalf("round trip: %v\n%s", err, b)
			}
		})
	}
}

// FuzzDecodeTree: whatever Decode accepts re-encodes to the same bytes and
// has only safe paths.
func FuzzDecodeTree(f *testing.F) {
	f.Add([]byte(validTree))
	f.Add([]byte(`{"entries":[],"version":1}`))
	f.Add([]byte(`{"entries":[{"mode":511,"path":"l","target":"../x","type":"symlink"}],"version":1}`))
	f.Add([]byte(`{"entries":[{"digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","mode":420,"path":"../f","size":7,"type":"file"}],"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := datasets.Decode(b)
		if err != nil {
			return
		}
		again, err := datasets.Encode(tree)
		if err != nil {
			t.Fatalf("accepted tree does not encode: %v", err)
		}
		if string(again) != string(b) {
			t.Fatalf("not canonical:\n%s\n%s", b, again)
		}
		for _, e := range tree.Entries {
			if err := datasets.CheckPath(e.Path); err != nil {
				t.Fatalf("unsafe path accepted: %v", err)
			}
		}
	})
}
