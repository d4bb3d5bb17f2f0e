package reconciler

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent/agentcli"
	"github.com/cairn-dev/cairn/internal/testca"
	"github.com/cairn-dev/cairn/internal/tlsfiles"
)

// tlsClient is an HTTP client trusting caFile, presenting the key pair of
// certFile and keyFile when set.
func tlsClient(t *testing.T, caFile, certFile, keyFile string) *http.Client {
	t.Helper()
	tc, err := tlsfiles.Client(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.DisableKeepAlives = true // every request a new handshake: reloads show at once
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TestServeTLS runs cairn serve over HTTPS with a CA made in the test: a
// client trusting the CA enrolls and reads its desired state, one without
// it, or presenting a certificate of another CA, fails the handshake.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	files, err := testca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	url, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Repo: url, Interval: Duration(time.Hour), EnrollToken: "enroll-secret", AdminToken: "admin",
		ReconcileInterval: Duration(200 * time.Millisecond), TLSCert: files.Cert, TLSKey: files.Key, ClientCA: files.CA})
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}

	c := fleet.NewClient(base, fleet.WithHTTPClient(tlsClient(t, files.CA, "", "")))
	er := enroll(t, c, "dev-a")
	waitDigest(t, c, er, digestOf(1), 20*time.Second)

	// With a client certificate signed by the client CA.
	cc := fleet.NewClient(base, fleet.WithHTTPClient(tlsClient(t, files.CA, files.ClientCert, files.ClientKey)))
	if _, _, err := cc.Desired(context.Background(), er.ID, er.Credential, "", 0); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}

	// No CA: the system roots do not know the server.
	_, err = fleet.NewClient(base).Enroll(context.Background(), fleet.EnrollRequest{Token: "enroll-secret", Name: "dev-b"})
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("client without the CA: %v, want an unknown authority", err)
	}

	// A client certificate of another CA is refused by --client-ca.
	other, err := testca.WriteFiles(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	bad := fleet.NewClient(base, fleet.WithHTTPClient(tlsClient(t, files.CA, other.ClientCert, other.ClientKey)))
	if _, _, err := bad.Desired(context.Background(), er.ID, er.Credential, "", 0); err == nil {
		t.Fatal("a client certificate of an unknown CA was accepted")
	}
	// Plain HTTP to the TLS port gets nothing it can use.
	if _, err := fleet.NewClient("http"+strings.TrimPrefix(base, "https")).Enroll(context.Background(),
		fleet.EnrollRequest{Token: "enroll-secret", Name: "dev-c"}); err == nil {
		t.Fatal("plain HTTP to the TLS listener enrolled")
	}
}

// TestServeTLSReload replaces the certificate files of a running cairn
// serve: new connections see the new certificate (and its CA), the old CA
// no longer verifies.
func TestServeTLSReload(t *testing.T) {
	dir := t.TempDir()
	files, err := testca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	base := startServe(t, Config{EnrollToken: "enroll-secret", TLSCert: files.Cert, TLSKey: files.Key})
	healthz := func(hc *http.Client) error {
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	oldCA := tlsClient(t, files.CA, "", "")
	if err := healthz(oldCA); err != nil {
		t.Fatal(err)
	}

	next, err := testca.WriteFiles(filepath.Join(dir, "next"))
	if err != nil {
		t.Fatal(err)
	}
	serial := func(certFile string) []byte {
		b, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Replace key first, then certificate, as a renewal tool may: a
	// handshake in between keeps the old pair.
	for _, p := range [][2]string{{next.Key, files.Key}, {next.Cert, files.Cert}} {
		if err := os.Rename(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	newCA := tlsClient(t, next.CA, "", "")
	deadline := time.Now().Add(5 * time.Second)
	for healthz(newCA) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("new connections still see the old certificate: %v", healthz(newCA))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := healthz(oldCA); err == nil {
		t.Fatal("the old CA still verifies the server after the reload")
	}
	// The served leaf is the new file's.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), newCA.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	blk, _ := pem.Decode(serial(files.Cert))
	if blk == nil || !bytes.Equal(blk.Bytes, leaf.Raw) {
		t.Fatal("the served certificate is not the one now in the file")
	}
}

// TestAgentOverTLS runs the agent's command (cairn agent, cairn-agent)
// with --ca-file against cairn serve over HTTPS: it enrolls, polls and
// shows up online.
func TestAgentOverTLS(t *testing.T) {
	dir := t.TempDir()
	files, err := testca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	url, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Repo: url, Interval: Duration(time.Hour), EnrollToken: "enroll-secret", AdminToken: "admin",
		ReconcileInterval: Duration(200 * time.Millisecond), TLSCert: files.Cert, TLSKey: files.Key})
	tokFile := filepath.Join(dir, "enroll-token")
	if err := os.WriteFile(tokFile, []byte("enroll-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	cmd := agentcli.Command("cairn-agent", "test")
	cmd.SetArgs([]string{"--server", base, "--ca-file", files.CA, "--enroll-token-file", tokFile,
		"--root", filepath.Join(dir, "agent"), "--name", "dev-tls", "--labels", "env=prod", "--poll-wait", "1s"})
	cmd.SetErr(&out)
	cmd.SetOut(&out)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	admin := fleet.NewAdminClient(base, "admin", fleet.WithHTTPClient(tlsClient(t, files.CA, "", "")))
	deadline := time.Now().Add(20 * time.Second)
	for {
		ts, err := admin.Targets(ctx)
		if err == nil && len(ts) == 1 && ts[0].Name == "dev-tls" && ts[0].Online {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent over TLS not online: %+v, %v\nagent log:\n%s", ts, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestAgentRefusesPlainHTTP: a plain http:// server that is not loopback
// is refused without --insecure, before any token is read or sent.
func TestAgentRefusesPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		refused bool
	}{
		{[]string{"--server", "http://example.com:7480"}, true},
		{[]string{"--server", "http://10.0.0.5:7480"}, true},
		{[]string{"--server", "http://example.com:7480", "--insecure"}, false},
	} {
		cmd := agentcli.Command("cairn-agent", "test")
		root := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		cmd.SetArgs(append(tc.args, "--root", root, "--enroll-token-file", filepath.Join(root, "missing")))
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetOut(&bytes.Buffer{})
		err := cmd.ExecuteContext(ctx)
		cancel()
		refused := err != nil && strings.Contains(err.Error(), "--insecure")
		if refused != tc.refused {
			t.Errorf("%v: err = %v, want refused %v", tc.args, err, tc.refused)
		}
	}
}

// TestPlainHTTPRule: which registries serve tells agents (and admission)
// to reach over plain HTTP: loopback ones, except, with TLS on, a loopback
// host on serve's own port (its built-in registry, or a relay to it).
func TestPlainHTTPRule(t *testing.T) {
	for _, tc := range []struct {
		tlsOn    bool
		artifact string
		plain    bool
	}{
		{false, "127.0.0.1:7480/models/a@sha256:00", true},
		{false, "localhost:5000/models/a", true},
		{true, "127.0.0.1:7480/models/a", false},
		{true, "localhost:7480/models/a", false},
		{true, "[::1]:7480/models/a", false},
		{true, "127.0.0.2:7480/models/a", false},
		{true, "127.0.0.1:5000/models/a", true},
		{true, "registry.example.com/models/a", false},
		{false, "registry.example.com:7480/models/a", false},
	} {
		if got := plainHTTP("127.0.0.1:7480", tc.tlsOn)(tc.artifact); got != tc.plain {
			t.Errorf("tls %v, %s: plain HTTP %v, want %v", tc.tlsOn, tc.artifact, got, tc.plain)
		}
	}
}
