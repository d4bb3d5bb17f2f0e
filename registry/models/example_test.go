package models_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/cairn-dev/cairn/registry/models"
)

func ExampleKindOf() {
	for _, p := range []string{"model.onnx", "tokenizer.json", "README.md", "serve.py", "holdout.csv", "weights.unknown"} {
		fmt.Println(p, models.KindOf(p))
	}
	// Output:
	// model.onnx weight
	// tokenizer.json weight.config
	// README.md doc
	// serve.py code
	// holdout.csv dataset
	// weights.unknown weight
}

func ExamplePush() {
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	src, _ := os.MkdirTemp("", "model")
	defer os.RemoveAll(src)
	os.WriteFile(filepath.Join(src, "model.onnx"), []byte("weights"), 0o644)
	os.WriteFile(filepath.Join(src, "README.md"), []byte("# demo\n"), 0o644)

	res, err := models.Push(ctx, host+"/models/demo:1.0", []string{src}, models.PushOptions{
		Name: "demo", Version: "1.0", Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		log.Fatal(err)
	}
	// The digest depends on the files' mtimes and owners (the file
	// metadata annotation): print the repository only.
	fmt.Println(strings.SplitAfter(strings.TrimPrefix(res.Ref, host+"/"), "@sha256:")[0] + "…")

	out, _ := os.MkdirTemp("", "pulled")
	defer os.RemoveAll(out)
	pulled, err := models.Pull(ctx, res.Ref, out, models.PullOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range pulled.Files {
		fmt.Println(f.Path, f.Kind, f.Size)
	}
	// Output:
	// models/demo@sha256:…
	// README.md doc 7
	// model.onnx weight 7
}
