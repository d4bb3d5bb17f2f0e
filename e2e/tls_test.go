package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/testca"
	"github.com/cairn-dev/cairn/internal/tlsfiles"
)

// TestTLS runs the cairn binary's serve over HTTPS with a CA made here,
// --client-ca and manual acceptance:
//   - an agent trusting the CA enrolls with the fleet token, waits, and is
//     accepted with cairn target accept (the CLI with --ca-file and with
//     CAIRN_CA_FILE; without the CA it fails);
//   - an agent without the CA fails verification and never enrolls;
//   - an agent with a client certificate naming edge-cert, and no token,
//     enrolls accepted and runs a release whose model was pushed to the
//     built-in registry, admitted with the artifact check on (serve trusts
//     its own certificate);
//   - that certificate alone reads edge-cert's desired state, and never
//     edge-1's: not its desired state, not its status, not its name at
//     enrollment;
//   - http:// to a host that is not loopback is refused without --insecure.
func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and runs a server and agents")
	}
	s := newServer(t, serveOptions{clientCA: true, manifests: edgeProfile,
		config: map[string]string{"enrollment": "manual"}})
	view := s.view()
	clientFor := func(name string) *http.Client {
		t.Helper()
		c, k, err := s.ca.Issue(name)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(s.work, "client-"+name)
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, "cert.pem"), c, 0o644)
		os.WriteFile(filepath.Join(dir, "key.pem"), k, 0o600)
		tc, err := tlsfiles.Client(s.pki.CA, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	state := func(name string) func() (bool, string) {
		return func() (bool, string) {
			for _, ti := range view.targets(t) {
				if ti.Name == name {
					return ti.State == "accepted" && ti.Online, fmt.Sprintf("state %s online %v", ti.State, ti.Online)
				}
			}
			return false, "not enrolled"
		}
	}

	// With the fleet token: pending until accepted over TLS.
	s.agent("edge-1", "--labels", "env=lab")
	bad := s.start("edge-noca", agentBin(t), "--server", s.URL, "--enroll-token-file", s.enrollFile, "--name", "edge-noca",
		"--root", s.agentRoot("edge-noca"), "--max-backoff", "1s")
	eventually(t, 30*time.Second, "edge-1 pending", func() (bool, string) {
		for _, ti := range view.targets(t) {
			if ti.Name == "edge-1" {
				return ti.State == "pending", ti.State
			}
		}
		return false, "not enrolled"
	})
	cmd := exec.Command(s.bin, "target", "accept", "edge-1", "--server", s.URL, "--token", s.admin)
	cmd.Env = append(os.Environ(), "CAIRN_CA_FILE="+s.pki.CA)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cairn target accept with CAIRN_CA_FILE: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "edge-1 accepted and online over TLS", state("edge-1"))

	// Without the CA: the handshake fails, the target never appears.
	eventually(t, 20*time.Second, "the agent without the CA to fail verification", func() (bool, string) {
		return strings.Contains(readFile(bad.log), "certificate signed by unknown authority"), bad.tail(1)
	})
	for _, ti := range view.targets(t) {
		if ti.Name == "edge-noca" {
			t.Fatal("an agent that does not trust the server's CA enrolled")
		}
	}
	if out := s.cairn("get", "targets", "--server", s.URL, "--token", s.admin, "--ca-file", s.pki.CA); !strings.Contains(out, "edge-1") {
		t.Fatalf("cairn get targets --ca-file:\n%s", out)
	}
	if out, err := exec.Command(s.bin, "get", "targets", "--server", s.URL, "--token", s.admin).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "certificate") {
		t.Fatalf("cairn get targets without the CA: %v\n%s", err, out)
	}

	// A model in the built-in registry over HTTPS, admitted with the
	// artifact check on.
	paths := writeFiles(t, filepath.Join(s.work, "model"), map[string][]byte{"model.onnx": []byte("weights"), "ok": nil})
	ref := s.push("models/demo:1", paths, "--name", "demo", "--version", "1.0.0")
	s.commit("release demo", edgeProfile+demoRelease("1.0.0", ref, "edge", ""))

	// A client certificate naming edge-cert, no token: enrolled, accepted,
	// healthy on the release.
	cc, ck, err := s.ca.Issue("edge-cert")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.work, "edge-cert.pem"), cc, 0o644)
	os.WriteFile(filepath.Join(s.work, "edge-cert-key.pem"), ck, 0o600)
	s.start("edge-cert", agentBin(t), "--server", s.URL, "--ca-file", s.pki.CA, "--name", "edge-cert", "--labels", "env=prod",
		"--client-cert", filepath.Join(s.work, "edge-cert.pem"), "--client-key", filepath.Join(s.work, "edge-cert-key.pem"),
		"--root", s.agentRoot("edge-cert"), "--poll-wait", "1s", "--max-backoff", "1s")
	eventually(t, 30*time.Second, "edge-cert accepted and online by its certificate", state("edge-cert"))
	eventually(t, 60*time.Second, "edge-cert healthy on demo", func() (bool, string) {
		for _, ti := range view.targets(t) {
			if rs := releaseStatus(ti, "demo"); ti.Name == "edge-cert" {
				return rs.Phase == fleet.PhaseHealthy && rs.Digest == digestOf(ref), rs.Phase + " " + rs.Message
			}
		}
		if r := view.release(t, "demo"); r != nil {
			return false, r.Phase + " " + r.Reason + " " + r.Message
		}
		return false, "not admitted"
	})
	if r := view.release(t, "demo"); r == nil || r.Digest != digestOf(ref) {
		t.Fatalf("release demo: %+v", r)
	}

	// The certificate alone: edge-cert's desired state, never edge-1's.
	hc := clientFor("edge-cert")
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{http.MethodGet, "/api/v1/targets/edge-cert/desired?wait=0s", "", http.StatusOK},
		{http.MethodGet, "/api/v1/targets/edge-1/desired?wait=0s", "", http.StatusForbidden},
		{http.MethodPost, "/api/v1/targets/edge-1/status", `{"releases":[]}`, http.StatusForbidden},
		{http.MethodPost, "/api/v1/enroll", `{"name":"edge-1"}`, http.StatusUnauthorized},
		{http.MethodPost, "/api/v1/enroll", `{"name":"edge-new"}`, http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(tc.method, s.URL+tc.path, strings.NewReader(tc.body))
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		t.Logf("certificate edge-cert: %s %s → %d %s", tc.method, tc.path, resp.StatusCode, strings.TrimSpace(b.String()))
		if resp.StatusCode != tc.want {
			t.Errorf("certificate edge-cert: %s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
	for _, ti := range view.targets(t) {
		if ti.Name == "edge-new" {
			t.Error("a certificate for edge-cert enrolled edge-new")
		}
	}
	// A certificate of another CA is no identity: Go's client does not
	// even send it (its issuer is not among the server's client CAs), or
	// the handshake fails.
	other, err := testca.WriteFiles(filepath.Join(s.work, "other"))
	if err != nil {
		t.Fatal(err)
	}
	otc, err := tlsfiles.Client(s.pki.CA, other.ClientCert, other.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	otr := http.DefaultTransport.(*http.Transport).Clone()
	otr.TLSClientConfig = otc
	if resp, err := (&http.Client{Transport: otr}).Get(s.URL + "/api/v1/targets/edge-cert/desired?wait=0s"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a client certificate of another CA got %d", resp.StatusCode)
		}
	}

	// Plain HTTP to a host that is not loopback: refused, clearly.
	out, err := exec.Command(agentBin(t), "--server", "http://192.0.2.1:7480", "--root", filepath.Join(s.work, "x")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not loopback") || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("agent with http:// to a non-loopback host: err %v\n%s", err, out)
	}
}
