package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// regServer is a real `cairn serve` process with the built-in registry,
// restartable on the same data folder.
type regServer struct {
	*fleetServer
}

const regAdmin = e2eAdmin

func startRegServer(t *testing.T) *regServer {
	t.Helper()
	return &regServer{newServer(t, serveOptions{config: map[string]string{"interval": "1h"}})}
}

// rss is the server's resident memory in bytes.
func (s *regServer) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.p.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	s.t.Fatal("no VmRSS")
	return 0
}

// do sends one request with the admin token unless tok says otherwise
// ("-" for none).
func (s *regServer) do(method, path, ctype string, body io.Reader, tok string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", ociManifest+", "+ociIndex)
	switch tok {
	case "":
		req.Header.Set("Authorization", "Bearer "+regAdmin)
	case "-":
	default:
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// pushBlob uploads b in one POST + PUT.
func (s *regServer) pushBlob(repo string, b []byte) string {
	s.t.Helper()
	resp, body := s.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", "", nil, "")
	if resp.StatusCode != http.StatusAccepted {
		s.t.Fatalf("start upload: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	loc = strings.TrimPrefix(loc, s.URL)
	resp, body = s.do(http.MethodPut, loc+sep+"digest="+sha(b), "application/octet-stream", bytes.NewReader(b), "")
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("finish upload: %d %s", resp.StatusCode, body)
	}
	return sha(b)
}

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
)

// imageManifest pushes a config and a layer and returns a manifest naming them.
func (s *regServer) imageManifest(repo, layer string) []byte {
	s.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	cd, ld := s.pushBlob(repo, cfg), s.pushBlob(repo, []byte(layer))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		ociManifest, cd, len(cfg), ld, len(layer))
	return []byte(m)
}

func indexOf(m []byte) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}`,
		ociIndex, ociManifest, sha(m), len(m)))
}

// TestBuiltinRegistryReproductions replays, against the real cairn serve,
// every sequence that broke the previous built-in registry.
func TestBuiltinRegistryReproductions(t *testing.T) {
	type step struct {
		method, ref, ctype string
		body               func() []byte
		tok                string // "" admin, "-" none
		want               int
	}
	const repo = "models/r"
	for _, tc := range []struct {
		name  string
		steps func(s *regServer) []step
		after func(t *testing.T, s *regServer) // checks after the restart
	}{
		{name: "manifest, index naming it, manifest again, restart", steps: func(s *regServer) []step {
			m := s.imageManifest(repo, "weights v1")
			return []step{
				{http.MethodPut, "v1", ociManifest, func() []byte { return m }, "", http.StatusCreated},
				{http.MethodPut, "idx", ociIndex, func() []byte { return indexOf(m) }, "", http.StatusCreated},
				{http.MethodPut, "v1", ociManifest, func() []byte { return m }, "", http.StatusCreated},
			}
		}, after: func(t *testing.T, s *regServer) {
			for _, ref := range []string{"v1", "idx"} {
				if resp, b := s.do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, "", nil, "-"); resp.StatusCode != 200 {
					t.Errorf("GET %s after restart: %d %s", ref, resp.StatusCode, b)
				}
			}
		}},
		{name: "manifest, index naming it, delete manifest by digest, restart", steps: func(s *regServer) []step {
			m := s.imageManifest(repo, "weights v2")
			return []step{
				{http.MethodPut, "v2", ociManifest, func() []byte { return m }, "", http.StatusCreated},
				{http.MethodPut, "idx", ociIndex, func() []byte { return indexOf(m) }, "", http.StatusCreated},
				{http.MethodDelete, sha(m), "", nil, "", http.StatusAccepted},
			}
		}, after: func(t *testing.T, s *regServer) {
			if resp, _ := s.do(http.MethodGet, "/v2/"+repo+"/manifests/v2", "", nil, "-"); resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET of the deleted manifest's tag after restart: %d, want 404", resp.StatusCode)
			}
		}},
		{name: "escaped space in a reference", steps: func(s *regServer) []step {
			m := s.imageManifest(repo, "weights v3") // PUT …/manifests/a%20b
			return []step{{http.MethodPut, "a%20b", ociManifest, func() []byte { return m }, "", http.StatusNotFound}}
		}},
		{name: "manifest under a digest it does not have", steps: func(s *regServer) []step {
			m := s.imageManifest(repo, "weights v4")
			other := sha([]byte("something else"))
			return []step{
				{http.MethodPut, other, ociManifest, func() []byte { return m }, "", http.StatusBadRequest},
				{http.MethodGet, other, "", nil, "-", http.StatusNotFound},
			}
		}},
		{name: "garbage as a manifest", steps: func(s *regServer) []step {
			return []step{
				{http.MethodPut, "g", ociManifest, func() []byte { return []byte("garbage") }, "", http.StatusBadRequest},
				{http.MethodGet, "g", "", nil, "-", http.StatusNotFound},
			}
		}},
		{name: "delete by digest, restart", steps: func(s *regServer) []step {
			m := s.imageManifest(repo, "weights v5")
			return []step{
				{http.MethodPut, "v5", ociManifest, func() []byte { return m }, "", http.StatusCreated},
				{http.MethodDelete, sha(m), "", nil, "", http.StatusAccepted},
				{http.MethodGet, sha(m), "", nil, "-", http.StatusNotFound},
			}
		}, after: func(t *testing.T, s *regServer) {
			for _, ref := range []string{"v5", sha(s.imageManifest(repo, "weights v5"))} {
				if resp, _ := s.do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, "", nil, "-"); resp.StatusCode != http.StatusNotFound {
					t.Errorf("GET %s after delete and restart: %d, want 404", ref, resp.StatusCode)
				}
			}
		}},
		{name: "push without a token from loopback", steps: func(s *regServer) []step {
			m := s.imageManifest(repo, "weights v6")
			return []step{
				{http.MethodPut, "v6", ociManifest, func() []byte { return m }, "-", http.StatusUnauthorized},
				{http.MethodPut, "v6", ociManifest, func() []byte { return m }, "not-the-token", http.StatusUnauthorized},
				{http.MethodDelete, sha(m), "", nil, "-", http.StatusUnauthorized},
				{http.MethodPut, "v6", ociManifest, func() []byte { return m }, "", http.StatusCreated},
				{http.MethodDelete, sha(m), "", nil, "-", http.StatusUnauthorized},
				{http.MethodGet, "v6", "", nil, "-", http.StatusOK},
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startRegServer(t)
			for i, st := range tc.steps(s) {
				var body io.Reader
				if st.body != nil {
					body = bytes.NewReader(st.body())
				}
				resp, b := s.do(st.method, "/v2/"+repo+"/manifests/"+st.ref, st.ctype, body, st.tok)
				if resp.StatusCode != st.want {
					t.Fatalf("step %d: %s %s: %d %s, want %d", i+1, st.method, st.ref, resp.StatusCode, b, st.want)
				}
				if resp.StatusCode == http.StatusUnauthorized {
					checkOCIError(t, resp, b)
				}
			}
			s.restart()
			if tc.after != nil {
				tc.after(t, s)
			}
		})
	}
}

func checkOCIError(t *testing.T, resp *http.Response, b []byte) {
	t.Helper()
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(b, &e); err != nil || len(e.Errors) == 0 || e.Errors[0].Code == "" {
		t.Errorf("401 body is not an OCI error: %q", b)
	}
}

// zeros streams n zero bytes without holding them.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// TestBuiltinRegistryUnfinishedUpload: a 512 MiB PATCH whose upload is
// never finished leaves the server's memory flat and the session readable.
func TestBuiltinRegistryUnfinishedUpload(t *testing.T) {
	s := startRegServer(t)
	before := s.rss()
	resp, b := s.do(http.MethodPost, "/v2/models/big/blobs/uploads/", "", nil, "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d %s", resp.StatusCode, b)
	}
	loc := strings.TrimPrefix(resp.Header.Get("Location"), s.URL)
	const size = 512 << 20
	resp, b = s.do(http.MethodPatch, loc, "application/octet-stream", &zeros{size}, "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, b)
	}
	after := s.rss()
	if r := resp.Header.Get("Range"); r != fmt.Sprintf("0-%d", size-1) {
		t.Errorf("PATCH answered Range %q", r)
	}
	resp, _ = s.do(http.MethodGet, strings.TrimPrefix(resp.Header.Get("Location"), s.URL), "", nil, "")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("GET of the upload session: %d, want 204", resp.StatusCode)
	}
	t.Logf("cairn serve RSS: %d MiB before, %d MiB after a 512 MiB PATCH never finished", before>>20, after>>20)
	if after > 128<<20 {
		t.Errorf("RSS %d MiB after the PATCH, want < 128 MiB", after>>20)
	}
	s.restart()
}

// TestBuiltinRegistryPeers: oras and crane push with the admin token in a
// Docker config, and get 401 without it.
func TestBuiltinRegistryPeers(t *testing.T) {
	s := startRegServer(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "model.bin"), []byte("weights"), 0o644)
	withToken := filepath.Join(dir, "docker-with")
	os.MkdirAll(withToken, 0o700)
	auth := base64.StdEncoding.EncodeToString([]byte("anyone:" + regAdmin))
	os.WriteFile(filepath.Join(withToken, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.addr, auth)), 0o600)
	without := filepath.Join(dir, "docker-without")
	os.MkdirAll(without, 0o700)
	os.WriteFile(filepath.Join(without, "config.json"), []byte(`{"auths":{}}`), 0o600)
	layer := filepath.Join(dir, "layer.tar")
	writeTar(t, layer, "model.bin", []byte("weights"))

	peers := map[string][]string{
		"oras":  {"push", s.addr + "/models/oras:1", "model.bin"},
		"crane": {"append", "-f", layer, "-t", s.addr + "/models/crane:1"},
	}
	for _, name := range []string{"oras", "crane"} {
		bin := lookTool(t, name)
		if bin == "" {
			continue
		}
		for _, tc := range []struct {
			config string
			ok     bool
		}{{without, false}, {withToken, true}} {
			cmd := exec.Command(bin, peers[name]...)
			cmd.Dir = dir
			// Both are Go programs: SSL_CERT_FILE makes them trust the CA.
			cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+tc.config, "SSL_CERT_FILE="+s.pki.CA)
			out, err := cmd.CombinedOutput()
			switch {
			case tc.ok && err != nil:
				t.Errorf("%s push with the admin token: %v\n%s", name, err, out)
			case !tc.ok && err == nil:
				t.Errorf("%s push without a token succeeded:\n%s", name, out)
			case !tc.ok && !bytes.Contains(out, []byte("401")) && !bytes.Contains(bytes.ToLower(out), []byte("unauthorized")) &&
				!bytes.Contains(out, []byte("credential not found")):
				t.Errorf("%s push without a token failed, but not with 401:\n%s", name, out)
			}
		}
	}
}

// lookTool finds crane or oras in PATH or GOPATH/bin (make test installs
// them); under CI a missing one fails.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed: scripts/services/registry.sh installs it under make test", name)
	}
	t.Logf("%s not installed: skipping its checks", name)
	return ""
}

// writeTar writes a tar holding one file.
func writeTar(t *testing.T, path, name string, b []byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
	tw.Write(b)
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBuiltinRegistryGC: `cairn registry gc` removes the blobs no manifest
// references (a deleted manifest's layer, a blob never named, the deleted
// manifest itself) and keeps what a tag still names.
func TestBuiltinRegistryGC(t *testing.T) {
	s := startRegServer(t)
	const repo = "models/gc"
	keep := s.imageManifest(repo, "kept weights")
	gone := s.imageManifest(repo, "deleted weights")
	for _, tc := range []struct {
		method, ref string
		body        []byte
	}{{http.MethodPut, "keep", keep}, {http.MethodPut, "gone", gone}, {http.MethodDelete, sha(gone), nil}} {
		resp, b := s.do(tc.method, "/v2/"+repo+"/manifests/"+tc.ref, ociManifest, bytes.NewReader(tc.body), "")
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %s", tc.method, tc.ref, resp.StatusCode, b)
		}
	}
	s.pushBlob(repo, []byte("a blob no manifest names"))
	cmd := exec.Command(s.bin, "registry", "gc", "--server", s.URL, "--token", "wrong", "--ca-file", s.pki.CA)
	cmd.Dir = s.work
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("gc with a wrong token: %v\n%s", err, out)
	}
	out := s.api("registry", "gc")
	t.Logf("%s", strings.TrimSpace(out))
	// Before: config, two layers, the lone blob, two manifests; after:
	// config, the kept layer and manifest.
	if !strings.Contains(out, "removed 3 of 6 blobs") {
		t.Errorf("gc: %q, want 3 of 6 blobs removed", out)
	}
	for ref, want := range map[string]int{"keep": 200, sha(keep): 200, sha(gone): 404} {
		if resp, _ := s.do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, "", nil, "-"); resp.StatusCode != want {
			t.Errorf("GET manifest %s after gc: %d, want %d", ref, resp.StatusCode, want)
		}
	}
	for blob, want := range map[string]int{sha([]byte("kept weights")): 200, sha([]byte("deleted weights")): 404,
		sha([]byte("a blob no manifest names")): 404} {
		if resp, _ := s.do(http.MethodGet, "/v2/"+repo+"/blobs/"+blob, "", nil, "-"); resp.StatusCode != want {
			t.Errorf("GET blob %s after gc: %d, want %d", blob, resp.StatusCode, want)
		}
	}
	// Pushes work again after gc.
	if resp, b := s.do(http.MethodPut, "/v2/"+repo+"/manifests/again", ociManifest, bytes.NewReader(s.imageManifest(repo, "new weights")), ""); resp.StatusCode != http.StatusCreated {
		t.Errorf("push after gc: %d %s", resp.StatusCode, b)
	}
}
