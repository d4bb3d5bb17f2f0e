package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// Reloader serves a key pair read from two files, read again at the next
// handshake after either file's modification time or size changed.
type Reloader struct {
	certFile, keyFile string

	mu   sync.Mutex
	cert *tls.Certificate
	seen [2]stamp
}

type stamp struct {
	mod  time.Time
	size int64
}

// NewReloader reads the key pair once; an error names the file.
func NewReloader(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.GetCertificate(nil); err != nil {
		return nil, err
	}
	return r, nil
}

func statFile(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// GetCertificate implements tls.Config.GetCertificate. A key pair that
// fails to load after a change keeps the previous one serving.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, cerr := statFile(r.certFile)
	ks, kerr := statFile(r.keyFile)
	if cerr == nil && kerr == nil && r.cert != nil && r.seen == [2]stamp{cs, ks} {
		return r.cert, nil
	}
	if err := cmpErr(cerr, kerr); err != nil {
		if r.cert != nil {
			return r.cert, nil
		}
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil // half-written files: try again next handshake
		}
		return nil, fmt.Errorf("tls certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.seen = &c, [2]stamp{cs, ks}
	return r.cert, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// CertPool is the certificates of a PEM file.
func CertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate", file)
	}
	return p, nil
}

// Server is the TLS configuration of cairn serve: the key pair of certFile
// and keyFile, reloaded when they change, and, with clientCA, client
// certificates verified against it when a client presents one
// (tls.VerifyClientCertIfGiven: bearer tokens stay the authentication).
func Server(certFile, keyFile, clientCA string) (*tls.Config, error) {
	r, err := NewReloader(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate,
		NextProtos: []string{"h2", "http/1.1"}}
	if clientCA != "" {
		p, err := CertPool(clientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		c.ClientCAs, c.ClientAuth = p, tls.VerifyClientCertIfGiven
	}
	return c, nil
}

// Client is the TLS configuration of a client of cairn serve: the system's
// roots plus those of caFile when set, and the client key pair of certFile
// and keyFile when set.
func Client(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		p, err := x509.SystemCertPool()
		if err != nil || p == nil {
			p = x509.NewCertPool()
		}
		if !p.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", caFile)
		}
		c.RootCAs = p
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("a client certificate needs both --client-cert and --client-key")
	}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s, key %s: %w", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}

// CheckURL refuses a plain http:// server URL whose host is not loopback
// unless insecure: credentials and desired states (whose commands an agent
// runs) would cross the network in clear text.
func CheckURL(server string, insecure bool) error {
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("server URL %q: %w", server, err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if insecure || IsLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("server URL %s is plain http to a host that is not loopback: use https:// (cairn serve --tls-cert/--tls-key, and --ca-file here) or pass --insecure to send credentials in clear text", server)
	}
	return fmt.Errorf("server URL %q: want http:// or https://", server)
}

// IsLoopback reports whether host (no port) is localhost or a loopback IP.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Roots is the system's roots plus the certificates of each PEM file that
// is not "": a CA, or a server's own certificate chain (a leaf trusted as
// a root verifies exactly that leaf).
func Roots(files ...string) (*x509.CertPool, error) {
	p, err := x509.SystemCertPool()
	if err != nil || p == nil {
		p = x509.NewCertPool()
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !p.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", f)
		}
	}
	return p, nil
}

// RootsTransport is an HTTP transport whose HTTPS connections verify the
// server against Roots(files...), read again at every new connection: a
// renewed CA or certificate file is trusted without a restart.
func RootsTransport(files ...string) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = nil
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		roots, err := Roots(files...)
		if err != nil {
			return nil, err
		}
		raw, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, RootCAs: roots})
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return c, nil
	}
	return tr
}

// FleetTransport is a clone of base whose HTTPS connections present the
// client key pair of certFile and keyFile when set, and verify servers
// against caFile's CA first: only a server that CA does not verify (a
// public registry) is verified against the system's roots plus the CA,
// which are loaded at the first such server. An agent that talks only to
// its fleet server never holds the system's roots (3.5 MiB of its idle
// memory). Without caFile it verifies against the system's roots.
func FleetTransport(base *http.Transport, caFile, certFile, keyFile string) (*http.Transport, error) {
	tc, err := Client("", certFile, keyFile)
	if err != nil {
		return nil, err
	}
	tr := base.Clone()
	tr.TLSClientConfig = tc
	if caFile == "" {
		return tr, nil
	}
	fleetCA, err := CertPool(caFile)
	if err != nil {
		return nil, err
	}
	var (
		once     sync.Once
		wide     *x509.CertPool
		wideErr  error
		public   sync.Map // host → true: not of the fleet's CA
		dialer   = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		dialWith = func(ctx context.Context, network, addr, host string, roots *x509.CertPool) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := tr.TLSClientConfig.Clone() // with the transport's ALPN protocols
			cfg.ServerName, cfg.RootCAs = host, roots
			c := tls.Client(raw, cfg)
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		}
	)
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		if _, ok := public.Load(host); !ok {
			c, err := dialWith(ctx, network, addr, host, fleetCA)
			var uae x509.UnknownAuthorityError
			if err == nil || !errors.As(err, &uae) {
				return c, err
			}
			public.Store(host, true)
		}
		once.Do(func() { wide, wideErr = Roots(caFile) })
		if wideErr != nil {
			return nil, wideErr
		}
		return dialWith(ctx, network, addr, host, wide)
	}
	return tr, nil
}
