package reconciler

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/registry/models"
)

// TestDataFolderOwnerOnly is the files-at-rest probe of issue 14: a real
// cairn serve started under umask 022, on a data folder an older version
// left 0755 with a 0644 file, fetches a repository, takes a push into its
// built-in registry and an enrollment; then nothing under the data folder
// is readable, writable or searchable by group or others: the database
// and its -wal and -shm, the generated tokens, the clone's config, the
// registry's and the blob store's files.
func TestDataFolderOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(data, "leftover"), 0o755)
	os.WriteFile(filepath.Join(data, "leftover", "notes"), []byte("x"), 0o644)
	os.Chmod(data, 0o755)

	gitURL, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Data: data, Repo: gitURL, Interval: Duration(time.Hour)})
	adminTok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	admin := fleet.NewAdminClient(base, strings.TrimSpace(string(adminTok)))
	waitAdmitted(t, admin, "r")
	enrollTok, _ := os.ReadFile(filepath.Join(data, "enroll-token"))
	ctx := context.Background()
	if _, err := fleet.NewClient(base).Enroll(ctx, fleet.EnrollRequest{Token: strings.TrimSpace(string(enrollTok)), Name: "dev-a"}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "model.onnx"), bytes.Repeat([]byte("weights"), 1000), 0o644)
	kc := staticKeychain{&authn.Basic{Username: "admin", Password: strings.TrimSpace(string(adminTok))}}
	if _, err := models.Push(ctx, strings.TrimPrefix(base, "http://")+"/models/x:v1", []string{filepath.Join(src, "model.onnx")},
		models.PushOptions{Options: models.Options{PlainHTTP: true, Keychain: kc}}); err != nil {
		t.Fatal(err)
	}

	for _, f := range []string{"cairn.db", "cairn.db-wal", "cairn.db-shm", "admin-token", "enroll-token", "source/config", "blobs", "registry"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("expected %s in the data folder: %v", f, err)
		}
	}
	n := 0
	err = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n++
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o077 != 0 {
			rel, _ := filepath.Rel(data, p)
			t.Errorf("%s is %v: group or others have access", rel, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(data); fi.Mode().Perm() != 0o700 {
		t.Errorf("data folder is %v, want 0700", fi.Mode().Perm())
	}
	t.Logf("%d files and folders, all owner-only", n)
}
