package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cairn-dev/cairn/internal/testenv"
)

const browserManifests = edgeProfile + `---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: browser-waves}
spec:
  waves: [{percent: 34, bake: 6s}, {percent: 67, bake: 6s}, {percent: 100, bake: 1s}]
  # The agents' health checks report no metrics: the gate shows on the
  # dashboard and lets the waves go on without data.
  gates: [{metric: error_rate, max: 0.5, onNoData: pass}]
  onFailure: rollback
`

// TestDashboardInBrowser drives Debian's Chromium (headless, through
// chromedp) against a real cairn serve with four agents: log in with the
// admin token, check the fleet's counts, open a target and its deployment
// log, watch a rollout's wave advance live, pause and resume it from the
// page, and open a target's lineage. Screenshots go to $CAIRN_ARTIFACTS
// (default: a folder under the system temp dir) and, when
// CAIRN_SCREENSHOTS is set, are copied there too (docs/screenshots for the
// README: CAIRN_SCREENSHOTS=$PWD/docs/screenshots).
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and runs a server, four agents and a browser")
	}
	chromium := testenv.Require(t, testenv.Chromium)
	artifacts := os.Getenv("CAIRN_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "cairn-browser-artifacts")
	}
	os.MkdirAll(artifacts, 0o755)
	s := newServer(t, serveOptions{manifests: browserManifests, config: map[string]string{"offlineAfter": "5s"}})

	push := func(version string, files map[string][]byte) string {
		t.Helper()
		paths := writeFiles(t, filepath.Join(s.work, "model-"+version), files)
		return s.push("models/demo:"+version, paths, "--name", "demo", "--version", version, "--lineage", s.URL)
	}
	v1 := push("1", map[string][]byte{"model.onnx": []byte("model one"), "ok": nil})
	v2 := push("2", map[string][]byte{"model.onnx": []byte("model two"), "ok": nil})

	for i, env := range []string{"prod", "prod", "prod", "lab"} {
		s.agent(fmt.Sprintf("dev-%d", i), "--labels", "env="+env+",site=s"+fmt.Sprint(i%2), "--poll-wait", "2s")
	}
	view := s.view()
	eventually(t, 30*time.Second, "4 agents to report", func() (bool, string) {
		n := 0
		for _, ti := range view.targets(t) {
			if ti.LastSeen != nil {
				n++
			}
		}
		return n == 4, fmt.Sprintf("%d reporting", n)
	})
	s.commit("release demo v1", browserManifests+demoRelease("1", v1, "edge", "  rolloutPolicy: browser-waves\n"))
	eventually(t, 90*time.Second, "demo v1 Succeeded", func() (bool, string) {
		r := view.release(t, "demo")
		if r == nil {
			return false, "not admitted"
		}
		return r.Phase == "Succeeded" && r.Digest == digestOf(v1), r.Phase + " " + r.Message
	})

	// The browser.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
		// Chromium trusts the server's key, of the test's CA, by its hash.
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, s.pki.Cert)),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	do := func(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, timeout)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return strings.TrimSpace(s)
	}
	waitText := func(what, sel string, timeout time.Duration, ok func(string) bool) string {
		t.Helper()
		var got string
		eventually(t, timeout, what, func() (bool, string) {
			got = text(sel)
			return ok(got), sel + ": " + got
		})
		return got
	}
	shot := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("browser: screenshot %s: %v", name, err)
		}
		p := filepath.Join(artifacts, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		if dir := os.Getenv("CAIRN_SCREENSHOTS"); dir != "" {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
		}
		t.Logf("screenshot %s (%d KiB)", p, len(png)>>10)
	}
	// The first run starts the browser and must have no deadline of its own.
	if err := chromedp.Do(bctx, chromedp.Navigate(s.URL+"/")); err != nil {
		t.Fatalf("browser: start chromium and open the dashboard: %v", err)
	}

	// 1. Log in: the login form, then the fleet with its counts.
	do("see the login form", 30*time.Second, chromedp.WaitVisible(id("token")))
	do("log in", 30*time.Second, chromedp.SendKeys(id("token"), e2eAdmin), chromedp.Submit(id("token")), chromedp.WaitVisible(id("count-total")))
	if loc, _ := chromedp.Run(bctx, chromedp.Evaluate[string]("location.href")); strings.Contains(loc, e2eAdmin) {
		t.Fatalf("the token is in the URL %s", loc)
	}
	waitText("fleet counts: 4 total", "#count-total", 20*time.Second, func(s string) bool { return s == "4" })
	waitText("fleet counts: 4 online", "#count-online", 20*time.Second, func(s string) bool { return s == "4" })
	if f := text("#count-failed"); f != "0" {
		t.Errorf("failed count %s, want 0", f)
	}
	shot("fleet")

	// 2. A target and its deployment log.
	do("open dev-0", 30*time.Second, chromedp.Click(chromedp.CSS(`a[href="/targets/dev-0"]`)), chromedp.WaitVisible(id("deploy-log")))
	waitText("dev-0's deployment log shows v1 healthy", "#deploy-log", 20*time.Second, func(s string) bool { return strings.Contains(s, "Healthy") && strings.Contains(s, "demo") })
	shot("target")

	// 3. Release v2 and watch the wave advance live on the release page.
	do("open the release", 30*time.Second, chromedp.Navigate(s.URL+"/releases/demo"), chromedp.WaitVisible(id("wavebar")))
	s.commit("release demo v2", browserManifests+demoRelease("2", v2, "edge", "  rolloutPolicy: browser-waves\n"))
	waitText("the rollout of v2 to start", "#rollout-phase", 60*time.Second, func(s string) bool { return s == "Progressing" })
	waitText("wave 1 of 3", "#wave", 30*time.Second, func(s string) bool { return s == "1 of 3" })
	waitText("the wave bar to advance to wave 2", "#wave", 60*time.Second, func(s string) bool { return s == "2 of 3" })
	if bar, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(`#wavebar svg`), "aria-label")); err == nil {
		t.Logf("wave bar in wave 2: %s", bar.Value)
	}

	// 4. Pause from the page (with its confirmation), then resume.
	do("pause", 30*time.Second, chromedp.Click(id("action-pause")), chromedp.WaitVisible(id("confirm")),
		chromedp.Click(id("confirm")), chromedp.WaitVisible(id("rollout-phase")))
	waitText("the rollout to pause", "#rollout-phase", 30*time.Second, func(s string) bool { return s == "Paused" })
	shot("rollout")
	do("resume", 30*time.Second, chromedp.Click(id("action-resume")), chromedp.WaitVisible(id("confirm")),
		chromedp.Click(id("confirm")), chromedp.WaitVisible(id("rollout-phase")))
	waitText("the rollout to resume and finish", "#rollout-phase", 90*time.Second, func(s string) bool { return s == "Succeeded" })

	// 5. The lineage of a target: its graph and what runs on it now.
	do("open dev-0's lineage", 30*time.Second, chromedp.Navigate(s.URL+"/lineage?node=target:dev-0"), chromedp.WaitVisible(chromedp.CSS(`#lineage-graph svg`)))
	waitText("what runs on dev-0", "#at-table", 10*time.Second, func(s string) bool { return strings.Contains(s, "demo") })
	shot("lineage")

	// A read-only session sees no actions.
	do("log out", 20*time.Second, chromedp.Navigate(s.URL+"/"), chromedp.Click(chromedp.CSS(`form.logout button`)), chromedp.WaitVisible(id("token")))
	do("log in read-only", 20*time.Second, chromedp.SendKeys(id("token"), e2eRead), chromedp.Submit(id("token")),
		chromedp.WaitVisible(id("count-total")), chromedp.Navigate(s.URL+"/releases/demo"), chromedp.WaitVisible(id("wavebar")))
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('.actions a').length`)); err != nil || n != 0 {
		t.Errorf("a read-only session sees %d rollout actions (%v)", n, err)
	}
}

func id(s string) chromedp.ID { return chromedp.ID("#" + s) }

// spkiHash is the base64 SHA-256 of the public key of the PEM certificate
// in file, as Chromium's --ignore-certificate-errors-spki-list wants it.
func spkiHash(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM certificate", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:])
}
