package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// cutProxy forwards TCP connections to a backend until cut: then it drops
// every open connection and closes new ones at once, as a broken link does.
type cutProxy struct {
	ln      net.Listener
	backend string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func newCutProxy(t *testing.T, listen, backend string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = true
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *cutProxy) pipe(c net.Conn) {
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[b] = true
	p.mu.Unlock()
	go func() { io.Copy(b, c); b.Close() }()
	io.Copy(c, b)
	c.Close()
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// TestRegistryOutage: agents pull through a TCP proxy in front of the
// built-in registry. The proxy drops every connection for 30 s during the
// rollout of a healthy v2: the agents report Downloading with the error,
// retry, resume, and the rollout succeeds with no rollback. Then v3, whose
// policy sets a downloadTimeout shorter than a second 30 s outage, fails
// with that reason and rolls back to v2.
func TestRegistryOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn, two 30 s outages")
	}
	// The proxy listens on 127.0.0.2 at serve's port: with TLS on, serve
	// tells agents that a loopback registry on its own port is its TLS
	// listener, and the server certificate names 127.0.0.2 too.
	// The server reaches the registry through the same cut link as the
	// agents: with its artifact check on, admission would wait out the
	// outage (a retry, as it should) and the agents would never see it.
	// This test is about the agents' download retries, so the server
	// admits without asking the registry.
	s := newServer(t, serveOptions{manifests: manifestsHead, hosts: []string{"127.0.0.2"}, config: map[string]string{
		"interval": "500ms", "offlineAfter": "1m", "reconcileInterval": "300ms", "skipArtifactCheck": "true"}})
	view := s.view()
	_, port, _ := net.SplitHostPort(s.addr)
	proxy := newCutProxy(t, "127.0.0.2:"+port, s.addr)

	// Models pushed to the registry directly, pulled through the proxy.
	push := func(version string, size int) string {
		t.Helper()
		paths := writeFiles(t, filepath.Join(s.work, "model-"+version), map[string][]byte{
			"model.onnx": []byte(strings.Repeat(version, size)), "ok": nil})
		ref := s.push("models/demo:"+version, paths, "--name", "demo", "--version", version)
		return strings.Replace(ref, s.addr, proxy.addr(), 1)
	}
	v1, v2, v3 := push("1", 1<<20), push("2", 1<<20), push("3", 1<<20)

	var agents []*proc
	for i := range 2 {
		agents = append(agents, s.agent(fmt.Sprintf("dev-%d", i), "--labels", "env=prod", "--poll-wait", "2s", "--max-backoff", "2s"))
	}
	on := func(d string, phases ...string) func() (bool, string) {
		if len(phases) == 0 {
			phases = []string{fleet.PhaseHealthy}
		}
		return func() (bool, string) {
			var got []string
			n := 0
			for _, ti := range view.targets(t) {
				s := releaseStatus(ti, "demo")
				got = append(got, ti.Name+"="+s.Phase+"@"+short(s.Digest))
				if s.Digest == d && slices.Contains(phases, s.Phase) {
					n++
				}
			}
			return n == 2, strings.Join(got, " ")
		}
	}
	rolloutEvents := func() []fleet.Event {
		var out []fleet.Event
		for _, e := range events(t, view) {
			if e.Type == manifests.EventRolledBack || e.Type == manifests.EventRolloutFailed {
				out = append(out, e)
			}
		}
		return out
	}
	s.commit("v1", manifestsHead+wavesRelease("1", v1))
	eventually(t, 60*time.Second, "v1 on both targets", on(digestOf(v1)))

	// 1. A 30 s outage during v2's rollout: no failure, no rollback.
	proxy.setCut(true)
	cutAt := time.Now()
	s.commit("v2", manifestsHead+wavesRelease("2", v2))
	sawDownloading := false
	for time.Since(cutAt) < 30*time.Second {
		for _, ti := range view.targets(t) {
			s := releaseStatus(ti, "demo")
			if s.Phase == fleet.PhaseFailed {
				t.Fatalf("%s failed during the outage: %s", ti.Name, s.Message)
			}
			if s.Phase == fleet.PhaseDownloading && strings.Contains(s.Message, "retrying") {
				if !sawDownloading {
					t.Logf("during the outage: %s %s: %s", ti.Name, s.Phase, s.Message)
				}
				sawDownloading = true
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	proxy.setCut(false)
	if !sawDownloading {
		t.Fatal("no target reported Downloading with the error during the outage")
	}
	eventually(t, 60*time.Second, "v2 on both targets after the outage", on(digestOf(v2)))
	t.Logf("v2 rolled out %s after the outage began", time.Since(cutAt).Round(time.Second))
	if evs := rolloutEvents(); len(evs) != 0 {
		t.Fatalf("rollout failed during the outage: %+v", evs)
	}

	// 2. downloadTimeout 5s, shorter than the outage: the rollout fails
	// with that reason and rolls back.
	short5 := strings.Replace(manifestsHead, "  onFailure: rollback\n", "  onFailure: rollback\n  downloadTimeout: 5s\n", 1)
	proxy.setCut(true)
	s.commit("v3", short5+wavesRelease("3", v3))
	eventually(t, 60*time.Second, "v3's rollout to fail on the download timeout", func() (bool, string) {
		evs := rolloutEvents()
		for _, e := range evs {
			if e.Type == manifests.EventRolloutFailed && strings.Contains(e.Message, "download timed out") {
				t.Logf("%s: %s", e.Type, e.Message)
				return true, ""
			}
		}
		var msgs []string
		for _, e := range evs {
			msgs = append(msgs, e.Type+": "+e.Message)
		}
		return false, strings.Join(msgs, " | ")
	})
	proxy.setCut(false)
	eventually(t, 60*time.Second, "both targets back on v2", on(digestOf(v2), fleet.PhaseHealthy, fleet.PhaseRolledBack))
	if r := view.release(t, "demo"); r == nil || r.Phase != "RolledBack" {
		t.Fatalf("release after the timeout: %+v", r)
	}
	for _, a := range agents {
		a.stop()
	}
}
