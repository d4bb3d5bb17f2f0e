package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// Health check defaults when the release leaves them out.
const (
	DefaultHealthTimeout = 10 * time.Second
	DefaultHealthPeriod  = time.Second
)

// CheckHealth runs a release's health check against the model in modelDir:
// an HTTP GET that must answer 2xx within the timeout, or a command (run
// with CAIRN_MODEL_DIR=modelDir) that must exit 0. It waits one period
// before the first attempt so the runtime can load the new slot, and tries
// 1+Retries times, a period apart. A nil check is healthy.
func CheckHealth(ctx context.Context, hc *fleet.HealthCheck, modelDir string, hclient *http.Client) error {
	if hc == nil || (hc.HTTP == "" && len(hc.Exec) == 0) {
		return nil
	}
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	period := hc.Period
	if period <= 0 {
		period = DefaultHealthPeriod
	}
	var err error
	for attempt := 0; attempt <= max(hc.Retries, 0); attempt++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(period):
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		if hc.HTTP != "" {
			err = checkHTTP(actx, hc.HTTP, hclient)
		} else {
			err = checkExec(actx, hc.Exec, modelDir)
		}
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("health check failed after %d attempts: %w", max(hc.Retries, 0)+1, err)
}

func checkHTTP(ctx context.Context, url string, hc *http.Client) error {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within the timeout", url)
		}
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func checkExec(ctx context.Context, argv []string, modelDir string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = childEnv(os.Environ(), modelDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: timed out", strings.Join(argv, " "))
	}
	msg := strings.TrimSpace(out.String())
	if len(msg) > 300 {
		msg = msg[len(msg)-300:]
	}
	if msg != "" {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
	}
	return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
}

// passEnv is the allow-list of the agent's environment variables that
// health checks and restart commands see; everything else (the enrollment
// token, cloud credentials, a proxy's password) stays in the agent.
var passEnv = map[string]bool{"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true,
	"LANG": true, "LC_ALL": true, "LC_CTYPE": true, "TZ": true, "TMPDIR": true}

// childEnv is the environment of a command the agent runs: the allowed
// variables of environ, CAIRN_MODEL_DIR and CAIRN_FEEDBACK_DIR (where the
// runtime spools the inputs it saw, see FeedbackDir).
func childEnv(environ []string, modelDir string) []string {
	var out []string
	for _, kv := range environ {
		if k, _, ok := strings.Cut(kv, "="); ok && passEnv[k] {
			out = append(out, kv)
		}
	}
	return append(out, "CAIRN_MODEL_DIR="+modelDir, "CAIRN_FEEDBACK_DIR="+feedbackDirOf(modelDir))
}

// runCommand runs one of the runtime's commands (restart, stop) with the
// model folder modelDir as CAIRN_MODEL_DIR, for at most a minute.
func runCommand(ctx context.Context, argv []string, modelDir string) error {
	if len(argv) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return checkExec(ctx, argv, modelDir)
}
