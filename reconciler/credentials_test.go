package reconciler

import (
	"bytes"
	"context"
	"encoding/base64"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// gitServerAuth is gitServer behind basic auth: user and the password
// *pass (changed by the test to rotate it).
func gitServerAuth(t *testing.T, user string, pass *atomic.Value) (repoURL, work string) {
	t.Helper()
	if _, err := os.Stat(gitBackend); err != nil {
		t.Skip("git http-backend not installed")
	}
	root := t.TempDir()
	run(t, root, "git", "init", "-q", "--bare", "-b", "main", "repo.git")
	run(t, filepath.Join(root, "repo.git"), "git", "config", "http.receivepack", "true")
	h := &cgi.Handler{Path: gitBackend, Root: "/git", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass.Load().(string) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	repoURL = srv.URL + "/git/repo.git"
	work = filepath.Join(t.TempDir(), "work")
	// The test's own clone pushes through a credential helper reading
	// the current password.
	run(t, "", "git", "-c", "credential.helper=", "clone", "-q", withUser(t, repoURL, user, pass.Load().(string)), work)
	run(t, work, "git", "checkout", "-q", "-b", "main")
	return repoURL, work
}

// withUser is raw with user and password as its userinfo.
func withUser(t *testing.T, raw, user, pass string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	return u.String()
}

// TestRepoCredentialsFile: the Git credential comes from an owner-only
// secret file, read at start and on every fetch (a rotated password is
// used from the next fetch), against a git http-backend that demands it.
// serve refuses to start when the file, or a configuration file with the
// credential in its repo URL, is readable by others; and nothing in the
// data folder (database, clone, registry, tokens) holds the credential.
func TestRepoCredentialsFile(t *testing.T) {
	ctx := context.Background()
	const user, pass1, pass2 = "deploy", "s3cr3t-p@ss:one", "s3cr3t-p@ss:two"
	var pass atomic.Value
	pass.Store(pass1)
	gitURL, work := gitServerAuth(t, user, &pass)
	commitPush(t, work, manifestsFor(1), "v1")
	secrets := t.TempDir()
	credFile := filepath.Join(secrets, "git-credentials")
	os.WriteFile(credFile, []byte(user+":"+pass1+"\n"), 0o644)
	os.Chmod(credFile, 0o644)
	quiet := slog.New(slog.DiscardHandler)

	// Readable by others: refused, with the fix in the message.
	err := Serve(ctx, Config{Data: t.TempDir(), Listen: "127.0.0.1:0", Repo: gitURL, RepoCredentialsFile: credFile}, quiet, nil)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+credFile) {
		t.Fatalf("serve with a 0644 credentials file: %v, want a refusal naming chmod 600", err)
	}
	// A configuration file holding the credential in its repo URL: the same.
	cfgFile := filepath.Join(secrets, "serve.yaml")
	os.WriteFile(cfgFile, []byte("repo: "+strings.Replace(gitURL, "http://", "http://"+user+":x@", 1)+"\n"), 0o644)
	os.Chmod(cfgFile, 0o644)
	if _, err := LoadConfig(cfgFile); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("config with a credential in its repo URL, 0644: %v, want a refusal", err)
	}
	os.Chmod(cfgFile, 0o600)
	if _, err := LoadConfig(cfgFile); err != nil {
		t.Fatalf("the same config at 0600: %v", err)
	}
	if err := (&Config{Repo: strings.Replace(gitURL, "http://", "http://u:p@", 1), RepoCredentialsFile: credFile}).Check(); err == nil {
		t.Fatal("a credential both in the URL and in a file was accepted")
	}

	os.Chmod(credFile, 0o600)
	data := t.TempDir()
	base := startServe(t, Config{Data: data, Repo: gitURL, RepoCredentialsFile: credFile, Interval: Duration(time.Hour), AdminToken: "admin-secret"})
	admin := fleet.NewAdminClient(base, "admin-secret")
	if rel := waitAdmitted(t, admin, "r"); rel.Digest != digestOf(1) {
		t.Fatalf("release = %+v", rel)
	}

	// Rotation: the server demands a new password and the file holds it.
	pass.Store(pass2)
	os.WriteFile(credFile, []byte(user+":"+pass2+"\n"), 0o600)
	run(t, work, "git", "remote", "set-url", "origin", withUser(t, gitURL, user, pass2))
	commitPush(t, work, manifestsFor(2), "v2")
	hook(t, base, "")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rel, err := admin.Release(ctx, "r"); err == nil && rel.Digest == digestOf(2) {
			break
		}
		if time.Now().After(deadline) {
			si, _ := admin.Source(ctx)
			t.Fatalf("v2 not admitted after the rotation within 15s: source %+v", si)
		}
	}

	// Nothing in DATA holds either password, raw or as a basic-auth header.
	var needles [][]byte
	for _, p := range []string{pass1, pass2} {
		needles = append(needles, []byte(p), []byte(base64.StdEncoding.EncodeToString([]byte(user+":"+p))), []byte("p@ss"))
	}
	files := 0
	err = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, n := range needles {
			if bytes.Contains(b, n) {
				rel, _ := filepath.Rel(data, p)
				t.Errorf("%s holds %q of the Git credential", rel, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "source", "config")); err != nil || files < 5 {
		t.Fatalf("the data folder has %d files and no clone config (%v): the grep proves nothing", files, err)
	}
}
