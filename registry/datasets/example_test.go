package datasets_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

func Example() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "cairn-example-")
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	os.MkdirAll(filepath.Join(src, "train"), 0o755)
	os.WriteFile(filepath.Join(src, "train", "a.csv"), []byte("x,y\n1,2\n3,4\n"), 0o644)
	os.WriteFile(filepath.Join(src, "train", "b.csv"), []byte("x,y\n1,2\n3,4\n"), 0o644)

	store, _ := blobs.Open(ctx, "file://"+filepath.Join(tmp, "store"))
	v1, _ := datasets.Push(ctx, store, src, datasets.PushOptions{Profile: true})
	fmt.Println(v1.Files, "files,", v1.Bytes, "bytes,", v1.UploadedBytes, "uploaded,", v1.ReusedBytes, "reused")

	os.WriteFile(filepath.Join(src, "train", "b.csv"), []byte("x,y\n5,6\n"), 0o644)
	v2, _ := datasets.Push(ctx, store, src, datasets.PushOptions{})
	a, _ := datasets.ReadTree(ctx, store, v1.Digest)
	b, _ := datasets.ReadTree(ctx, store, v2.Digest)
	for _, c := range datasets.Diff(a, b) {
		fmt.Println(c.Kind, c.Path, c.OldSize, "->", c.NewSize)
	}
	prof, _ := datasets.ReadProfile(ctx, store, v1.Digest)
	col := prof.Files[0].Columns[1]
	fmt.Println(prof.Files[0].Path, col.Name, "mean", col.Mean, "variance", col.Variance)

	if err := datasets.Pull(ctx, store, v2.Digest, filepath.Join(tmp, "out"), datasets.PullOptions{}); err != nil {
		fmt.Println(err)
	}
	got, _ := os.ReadFile(filepath.Join(tmp, "out", "train", "b.csv"))
	fmt.Printf("%q\n", got)
	// Output:
	// 2 files, 24 bytes, 12 uploaded, 12 reused
	// changed train/b.csv 12 -> 8
	// train/a.csv y mean 3 variance 1
	// "x,y\n5,6\n"
}
