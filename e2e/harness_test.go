package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/testca"
	"github.com/cairn-dev/cairn/internal/tlsfiles"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// cairnBin builds bin/cairn and bin/cairn-agent once per test binary into a
// temporary folder and returns the path of cairn.
func cairnBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cairn")
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", dir+"/", "./cmd/cairn", "./cmd/cairn-agent")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// agentBin is the device agent binary built with cairnBin.
func agentBin(t *testing.T) string {
	t.Helper()
	return filepath.Join(filepath.Dir(cairnBin(t)), "cairn-agent")
}

// rssKiB is the resident memory of process pid, from /proc (0 off Linux).
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var n int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &n)
			return n
		}
	}
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// run runs cairn (or another program) to completion and returns stdout.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	return runEnv(t, dir, nil, name, args...)
}

// runEnv is run with more environment variables.
func runEnv(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com",
		"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com"), env...)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// proc is a background process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, logDir, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		if state != last {
			t.Logf("  waiting for %s: %s", what, state)
			last = state
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fleetView reads targets and releases from the status API.
type fleetView struct {
	admin *fleet.AdminClient
}

func (v fleetView) targets(t *testing.T) []fleet.TargetInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts, err := v.admin.Targets(ctx)
	if err != nil {
		t.Logf("  targets: %v", err)
		return nil
	}
	return ts
}

func (v fleetView) release(t *testing.T, name string) *fleet.ReleaseInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := v.admin.Release(ctx, name)
	if err != nil {
		return nil
	}
	return r
}

func releaseStatus(ti fleet.TargetInfo, rel string) fleet.ReleaseStatus {
	for _, r := range ti.Releases {
		if r.Release == rel {
			return r
		}
	}
	return fleet.ReleaseStatus{}
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// fleetServer is a real `cairn serve` of the e2e tests: HTTPS with a
// certificate of a CA made in the test (internal/testca), SQLite and the
// built-in registry under its data folder, following a local Git
// repository whose manifests/fleet.yaml the test commits. Its agents get
// --ca-file, and every cairn command the test runs gets CAIRN_CA_FILE.
type fleetServer struct {
	t    *testing.T
	bin  string
	work string // the test's folder
	logs string // where every process's log goes
	repo string
	data string
	// addr is host:port, the registry host of model references; URL the
	// base of the APIs (https://addr).
	addr, URL string
	// ca signs pki's key pairs: the server's (for 127.0.0.1, ::1,
	// localhost and serveOptions.hosts) and a client one.
	ca  *testca.CA
	pki testca.Files
	// admin is the admin token; enrollFile holds the enrollment token.
	admin, enrollFile string
	hc                *http.Client
	p                 *proc
	procs             []*proc // serve first
	serveCmd          []string
}

const (
	e2eAdmin  = "e2e-admin"
	e2eEnroll = "e2e-enroll"
	e2eRead   = "e2e-read"
)

// serveOptions change what newServer starts.
type serveOptions struct {
	// config overrides or adds keys of serve.yaml (values in YAML); a key
	// set to "" is left out.
	config map[string]string
	// args are extra command-line flags of cairn serve.
	args []string
	// manifests is the first commit's manifests/fleet.yaml.
	manifests string
	// clientCA makes serve verify client certificates against the CA.
	clientCA bool
	// hosts are more names of the server certificate.
	hosts []string
	// wrap runs serve under another program (prlimit).
	wrap []string
}

// newServer starts cairn serve and waits until it answers over HTTPS.
func newServer(t *testing.T, o serveOptions) *fleetServer {
	t.Helper()
	work := t.TempDir()
	s := &fleetServer{t: t, bin: cairnBin(t), work: work, logs: filepath.Join(work, "logs"), repo: filepath.Join(work, "repo"),
		data: filepath.Join(work, "data"), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: e2eAdmin,
		enrollFile: filepath.Join(work, "enroll-token")}
	s.URL = "https://" + s.addr
	os.MkdirAll(s.logs, 0o755)
	var err error
	if s.ca, err = testca.New("cairn e2e CA"); err != nil {
		t.Fatal(err)
	}
	if s.pki, err = s.ca.WriteFiles(filepath.Join(work, "pki")); err != nil {
		t.Fatal(err)
	}
	if len(o.hosts) > 0 {
		c, k, err := s.ca.Issue("cairn serve", append([]string{"127.0.0.1", "::1", "localhost"}, o.hosts...)...)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(s.pki.Cert, c, 0o644)
		os.WriteFile(s.pki.Key, k, 0o600)
	}
	tc, err := tlsfiles.Client(s.pki.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	s.hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	os.WriteFile(s.enrollFile, []byte(e2eEnroll+"\n"), 0o600)

	os.MkdirAll(filepath.Join(s.repo, "manifests"), 0o755)
	run(t, s.repo, "git", "init", "-q", "-b", "main")
	s.commit("first", o.manifests)

	cfg := map[string]string{"listen": s.addr, "data": s.data, "repo": s.repo, "interval": "1s", "pollInterval": "1s",
		"reconcileInterval": "500ms", "enrollToken": e2eEnroll, "adminToken": e2eAdmin, "readToken": e2eRead,
		// Agents are accepted at enrollment; reconciler's security_test
		// and the demo show cairn target accept.
		"enrollment": "auto", "tlsCert": s.pki.Cert, "tlsKey": s.pki.Key}
	if o.clientCA {
		cfg["clientCA"] = s.pki.CA
	}
	maps.Copy(cfg, o.config)
	var yaml strings.Builder
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		if cfg[k] != "" {
			fmt.Fprintf(&yaml, "%s: %s\n", k, cfg[k])
		}
	}
	cfgFile := filepath.Join(work, "serve.yaml")
	os.WriteFile(cfgFile, []byte(yaml.String()), 0o644)

	t.Cleanup(func() {
		if keep := os.Getenv("CAIRN_E2E_KEEP_LOGS"); keep != "" {
			_ = os.CopyFS(keep, os.DirFS(s.logs))
		}
		if t.Failed() {
			for i, p := range s.procs {
				n := 15
				if i == 0 {
					n = 40
				}
				t.Logf("last lines of %s.log:\n%s", p.name, p.tail(n))
			}
		}
	})
	name, argv := s.bin, append([]string{"serve", "--config", cfgFile}, o.args...)
	if len(o.wrap) > 0 {
		name, argv = o.wrap[0], append(append(o.wrap[1:], s.bin), argv...)
	}
	s.serveCmd = append([]string{name}, argv...)
	s.p = s.start("serve", name, argv...)
	s.waitReady()
	return s
}

// waitReady waits until serve answers /healthz over HTTPS.
func (s *fleetServer) waitReady() {
	s.t.Helper()
	eventually(s.t, 30*time.Second, "cairn serve to answer /healthz over HTTPS", func() (bool, string) {
		select {
		case <-s.p.done:
			s.t.Fatalf("cairn serve exited at start:\n%s", s.p.tail(20))
		default:
		}
		resp, err := s.hc.Get(s.URL + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// restart stops serve (SIGTERM) and starts it again on the same data.
func (s *fleetServer) restart() {
	s.t.Helper()
	s.p.stop()
	s.p = start(s.t, s.logs, "serve", s.serveCmd[0], s.serveCmd[1:]...)
	s.procs[0] = s.p
	s.waitReady()
}

// start starts a process of the test whose log is printed on failure.
func (s *fleetServer) start(name, bin string, args ...string) *proc {
	s.t.Helper()
	p := start(s.t, s.logs, name, bin, args...)
	s.procs = append(s.procs, p)
	return p
}

// commit writes manifests/fleet.yaml and commits it; it returns the
// commit's hash.
func (s *fleetServer) commit(msg, body string) string {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.repo, "manifests", "fleet.yaml"), []byte(body), 0o644); err != nil {
		s.t.Fatal(err)
	}
	run(s.t, s.repo, "git", "add", "-A")
	run(s.t, s.repo, "git", "commit", "-q", "--allow-empty", "-m", msg)
	rev := strings.TrimSpace(run(s.t, s.repo, "git", "rev-parse", "HEAD"))
	s.t.Logf("committed %s: %s", rev[:7], msg)
	return rev
}

// agentRoot is the folder of agent name.
func (s *fleetServer) agentRoot(name string) string { return filepath.Join(s.work, "agents", name) }

// agentArgs are the flags of agent name: this server with its CA, the
// enrollment token, its root, and extra (later flags win: --poll-wait 2s).
func (s *fleetServer) agentArgs(name string, extra ...string) []string {
	return append([]string{"--server", s.URL, "--ca-file", s.pki.CA, "--enroll-token-file", s.enrollFile, "--name", name,
		"--root", s.agentRoot(name), "--poll-wait", "1s", "--max-backoff", "1s"}, extra...)
}

// agent starts cairn-agent as target name.
func (s *fleetServer) agent(name string, extra ...string) *proc {
	s.t.Helper()
	return s.start(name, agentBin(s.t), s.agentArgs(name, extra...)...)
}

// cairn runs the cairn binary in the test's folder, trusting the CA
// (CAIRN_CA_FILE), and returns its output.
func (s *fleetServer) cairn(args ...string) string {
	s.t.Helper()
	return runEnv(s.t, s.work, []string{"CAIRN_CA_FILE=" + s.pki.CA}, s.bin, args...)
}

// api is cairn with --server and the admin token.
func (s *fleetServer) api(args ...string) string {
	s.t.Helper()
	return s.cairn(append(args, "--server", s.URL, "--token", s.admin)...)
}

// push is `cairn model push ADDR/REPO:TAG FILES… --token admin EXTRA…`
// (to the built-in registry over HTTPS); it returns the pushed reference
// (ADDR/REPO@sha256:…), the command's last line.
func (s *fleetServer) push(repoTag string, files []string, extra ...string) string {
	s.t.Helper()
	args := append(append([]string{"model", "push", s.addr + "/" + repoTag}, files...), "--token", s.admin)
	out := strings.TrimSpace(s.cairn(append(args, extra...)...))
	return out[strings.LastIndexByte(out, '\n')+1:]
}

// view reads the fleet with the admin token over HTTPS.
func (s *fleetServer) view() fleetView {
	return fleetView{admin: fleet.NewAdminClient(s.URL, s.admin, fleet.WithHTTPClient(s.hc))}
}

// lineage runs cairn lineage against the server.
func (s *fleetServer) lineage(label map[string]string) lineageCLI {
	return lineageCLI{s: s, label: label}
}

// writeFiles writes files (name → content) into dir and returns their
// paths, sorted.
func writeFiles(t *testing.T, dir string, files map[string][]byte) []string {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	var paths []string
	for n, b := range files {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}
