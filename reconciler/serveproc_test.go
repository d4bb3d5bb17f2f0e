package reconciler

// The processes of the failover and crash tests: `cairn serve` replicas run
// as re-executed test binaries (so they can be SIGKILLed and SIGSTOPped),
// and simulated targets that poll and report to them.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
)

// keepLogsEnv names a folder the logs of a failed test's replicas are
// copied to (their own are in the test's temporary folder, removed after).
const keepLogsEnv = "CAIRN_TEST_KEEP_LOGS"

// serveChildEnv names the config file of a re-executed test binary that runs
// `cairn serve` (Serve) as its own process, so tests can SIGKILL and SIGSTOP it.
const serveChildEnv = "CAIRN_TEST_SERVE_CHILD"

// agentChildEnv names the config file (agentChildConfig) of a re-executed
// test binary that runs a target's agent (fleet/agent) as its own process.
const agentChildEnv = "CAIRN_TEST_AGENT_CHILD"

func TestMain(m *testing.M) {
	if file := os.Getenv(serveChildEnv); file != "" {
		os.Exit(serveChild(file))
	}
	if file := os.Getenv(agentChildEnv); file != "" {
		os.Exit(agentChild(file))
	}
	os.Exit(m.Run())
}

// serveChild runs Serve on the config in file until SIGTERM and writes the
// listening address to DATA/addr.
func serveChild(file string) int {
	var cfg Config
	b, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.SkipArtifactCheck = true // the artifacts of these tests were never pushed
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err = Serve(ctx, cfg, log, func(addr string) {
		os.WriteFile(filepath.Join(cfg.Data, "addr.tmp"), []byte(addr), 0o644)
		os.Rename(filepath.Join(cfg.Data, "addr.tmp"), filepath.Join(cfg.Data, "addr"))
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// replica is one `cairn serve` process.
type replica struct {
	name, base, log string
	cmd             *exec.Cmd
	done            chan struct{}
}

func startReplica(t *testing.T, name string, cfg Config) *replica {
	t.Helper()
	if cfg.Data == "" {
		cfg.Data = t.TempDir()
	}
	os.Remove(filepath.Join(cfg.Data, "addr")) // a restart's, not its predecessor's
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, _ := json.Marshal(cfg)
	file := filepath.Join(cfg.Data, "config.json")
	os.WriteFile(file, b, 0o600)
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveChildEnv+"="+file)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(r.done) }()
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGCONT)
		r.cmd.Process.Kill()
		<-r.done
		if dir := os.Getenv(keepLogsEnv); dir != "" && t.Failed() {
			b, _ := os.ReadFile(logPath)
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", strings.ReplaceAll(t.Name(), "/", "-"), name, r.pid())), b, 0o644)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, tail(string(b), 40))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(cfg.Data, "addr")); err == nil {
			r.base = "http://" + string(b)
			return r
		}
		select {
		case <-r.done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited: %s", name, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitUntil(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func (r *replica) pid() int { return r.cmd.Process.Pid }

func (r *replica) logText() string { b, _ := os.ReadFile(r.log); return string(b) }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// simTarget is one enrolled target that long-polls its desired state from
// base(n) (n counts its polls) and reports every model it is told, as
// phase says (healthy when nil). told sees each change of the digest, with
// the replica that told it and the desired state's ETag.
type simTarget struct {
	er    *fleet.EnrollResponse
	base  func(n int) string
	phase func(digest string) string
	told  func(base, digest, etag string)
	// wait is the long-poll wait, timeout each request's.
	wait, timeout time.Duration
}

func (s simTarget) run(ctx context.Context) {
	etag, last := "", ""
	var cur *fleet.DesiredState
	for n := 0; ctx.Err() == nil; n++ {
		base := s.base(n)
		c := fleet.NewClient(base)
		pctx, cancel := context.WithTimeout(ctx, s.timeout)
		ds, changed, err := c.Desired(pctx, s.er.ID, s.er.Credential, etag, s.wait)
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if changed {
			etag, cur = ds.ETag, ds
		}
		if cur == nil || len(cur.Models) != 1 {
			continue
		}
		d := cur.Models[0].Digest
		if d != last && s.told != nil {
			s.told(base, d, etag)
		}
		last = d
		phase := fleet.PhaseHealthy
		if s.phase != nil {
			phase = s.phase(d)
		}
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		c.ReportStatus(rctx, s.er.ID, s.er.Credential, fleet.StatusReport{Releases: []fleet.ReleaseStatus{{Release: "r", Phase: phase, Digest: d, Desired: d}}})
		cancel()
	}
}

// agentChildConfig configures an agent child: the agent of target Name
// with its state under Root, enrolled on Server. Its downloads are stubbed:
// a model is one file, and a digest listed in the file Bad downloads as
// another digest (a digest mismatch: the install fails for good).
type agentChildConfig struct {
	Server, Name, Root, Bad string
}

// agentChild runs the agent of an agentChildConfig until SIGTERM.
func agentChild(file string) int {
	var cfg agentChildConfig
	b, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a, err := agent.New(agent.Config{Root: cfg.Root, Name: cfg.Name, Labels: map[string]string{"env": "prod"},
		Facts: fleet.Facts{Arch: "amd64", OS: "linux"}, EnrollToken: "enroll-secret", API: fleet.NewClient(cfg.Server),
		Fetcher: stubFetcher{bad: cfg.Bad}, RuntimeRoot: filepath.Join(cfg.Root, "runtime"),
		PollWait: 500 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := a.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// stubFetcher "downloads" a model as one file naming its digest.
type stubFetcher struct{ bad string }

func (f stubFetcher) Fetch(_ context.Context, ref, dir string, _ bool) (string, error) {
	_, d, _ := strings.Cut(ref, "@")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "model.bin"), []byte(d), 0o644); err != nil {
		return "", err
	}
	if b, _ := os.ReadFile(f.bad); slices.Contains(strings.Fields(string(b)), d) {
		return "sha256:" + strings.Repeat("0", 64), nil
	}
	return d, nil
}

// startAgent runs an agent child until the test ends.
func startAgent(t *testing.T, cfg agentChildConfig) {
	t.Helper()
	b, _ := json.Marshal(cfg)
	file := filepath.Join(t.TempDir(), "agent.json")
	os.WriteFile(file, b, 0o600)
	logPath := filepath.Join(t.TempDir(), cfg.Name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentChildEnv+"="+file)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", cfg.Name, tail(string(b), 30))
		}
	})
}
