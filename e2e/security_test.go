package e2e

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// peakRSS is the process's high-water resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// zeroReader is an endless reader of zero bytes.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestWebhookBodiesKeepMemoryFlat is issue 14's memory probe: 32 concurrent
// unsigned 25 MiB webhook bodies, with 8 more carrying a well-formed but
// wrong signature (which the server must hash to refuse), keep cairn
// serve's peak RSS under 200 MiB (it reached 1.68 GB when bodies were read
// whole first).
// A signed delivery is honoured once and its replay ignored.
func TestWebhookBodiesKeepMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cairn and runs a server")
	}
	const secret = "hook-secret"
	srv := newServer(t, serveOptions{args: []string{"--webhook-secret", secret}, config: map[string]string{"interval": "1h"}})
	p, base := srv.p, srv.URL
	const size = 25 << 20
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, base+"/hooks/git", io.LimitReader(zeroReader{}, size))
			req.ContentLength = size
			if i >= 32 {
				req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("ab", 32))
			}
			resp, err := srv.hc.Do(req)
			if err != nil {
				codes <- 0 // the server may close an unsigned request's connection mid-body
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 0 && c != http.StatusUnauthorized && c != http.StatusTooManyRequests {
			t.Errorf("a bad webhook got %d", c)
		}
	}
	rss := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("peak RSS after 40 concurrent 25 MiB bad webhooks: %d MiB", rss>>20)
	if rss > 200<<20 {
		t.Fatalf("peak RSS %d MiB, want < 200 MiB", rss>>20)
	}

	// A signed delivery triggers a fetch; the same delivery again does not.
	// (From another loopback address: the bad ones above used up this
	// address's failed-attempt budget.)
	tr := srv.hc.Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}).DialContext
	c := &http.Client{Transport: tr}
	body := []byte(`{"ref":"refs/heads/main"}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	for i, want := range []int{http.StatusAccepted, http.StatusOK} {
		req, _ := http.NewRequest(http.MethodPost, base+"/hooks/git", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		req.Header.Set("X-GitHub-Delivery", "d6f1a2b0-0000-4000-8000-000000000001")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("delivery %d: %d %s, want %d", i+1, resp.StatusCode, b, want)
		}
	}
}

// TestTricklingConnectionsLeaveHealthz is issue 14's descriptor probe:
// cairn serve runs with 400 file descriptors; 500 connections from one
// address trickle a request one byte at a time, and /healthz (from another
// address) still answers within 1 s.
func TestTricklingConnectionsLeaveHealthz(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cairn and runs a server")
	}
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	srv := newServer(t, serveOptions{wrap: []string{"prlimit", "--nofile=400:400"}, config: map[string]string{"interval": "1h"}})
	base := srv.URL
	// Each connection finishes its TLS handshake, then trickles: what an
	// attacker holding connections open past the handshake does.
	d := &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second},
		Config: srv.hc.Transport.(*http.Transport).TLSClientConfig}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 500 {
		c, err := d.Dial("tcp", srv.addr)
		if err != nil {
			continue // refused or over the backlog: the attacker's problem
		}
		conns = append(conns, c)
		c.Write([]byte("POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"))
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every second on every connection
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				for _, c := range conns {
					c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
					c.Write([]byte("X"))
				}
			}
		}
	}()
	time.Sleep(2 * time.Second)
	hc := &http.Client{Transport: srv.hc.Transport.(*http.Transport).Clone(), Timeout: time.Second}
	for i := range 5 {
		start := time.Now()
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			t.Fatalf("healthz %d with 500 trickling connections: %v", i, err)
		}
		b, _ := bufio.NewReader(resp.Body).ReadString('\n')
		resp.Body.Close()
		if resp.StatusCode != 200 || b != "ok\n" {
			t.Fatalf("healthz: %d %q", resp.StatusCode, b)
		}
		t.Logf("healthz answered in %s", time.Since(start).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
}
