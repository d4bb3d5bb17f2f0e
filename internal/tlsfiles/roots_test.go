package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/testca"
)

// TestRootsTransport: a transport trusting a server's own certificate file
// verifies that server, before and after the file is renewed (by another
// CA), since the file is read again at each connection; one trusting
// nothing extra does not.
func TestRootsTransport(t *testing.T) {
	dir := t.TempDir()
	url, files := serveTLS(t, filepath.Join(dir, "one"))
	get := func(rt *http.Transport) error {
		defer rt.CloseIdleConnections()
		resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	own, viaCA := RootsTransport(files.Cert), RootsTransport("", files.CA)
	for name, rt := range map[string]*http.Transport{"own certificate": own, "the CA": viaCA} {
		if err := get(rt); err != nil {
			t.Errorf("trusting %s: %v", name, err)
		}
	}
	var uae x509.UnknownAuthorityError
	if err := get(RootsTransport()); !errors.As(err, &uae) {
		t.Errorf("trusting the system roots only: %v, want an unknown authority", err)
	}

	// Renewed by another CA: the same transport trusts the new file.
	next, err := testca.WriteFiles(filepath.Join(dir, "two"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{next.Key, files.Key}, {next.Cert, files.Cert}} {
		if err := os.Rename(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := get(own); err != nil {
		t.Errorf("trusting its own certificate after the renewal: %v", err)
	}
	if err := get(viaCA); !errors.As(err, &uae) {
		t.Errorf("trusting the old CA after the renewal: %v, want an unknown authority", err)
	}
}

// TestFleetTransport: the fleet's CA verifies its server; a server of
// another CA is still refused after the fallback to the system's roots.
func TestFleetTransport(t *testing.T) {
	dir := t.TempDir()
	fleetURL, files := serveTLS(t, filepath.Join(dir, "fleet"))
	otherURL, _ := serveTLS(t, filepath.Join(dir, "other"))
	rt, err := FleetTransport(http.DefaultTransport.(*http.Transport), files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	for i := range 2 {
		resp, err := c.Get(fleetURL)
		if err != nil {
			t.Fatalf("fleet server, request %d: %v", i, err)
		}
		resp.Body.Close()
		var uae x509.UnknownAuthorityError
		if _, err := c.Get(otherURL); !errors.As(err, &uae) {
			t.Fatalf("a server of another CA, request %d: %v, want an unknown authority", i, err)
		}
	}
}

// serveTLS writes a CA and a server certificate into dir and serves "ok"
// over TLS with them on loopback until the test ends; it returns the URL.
func serveTLS(t *testing.T, dir string) (string, testca.Files) {
	t.Helper()
	f, err := testca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := Server(f.Cert, f.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(tls.NewListener(ln, tc))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String() + "/", f
}
