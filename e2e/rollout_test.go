package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

const manifestsHead = edgeProfile + `---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: e2e-waves}
spec:
  waves: [{percent: 20, bake: 1s}, {percent: 50, bake: 1s}, {percent: 100, bake: 1s}]
  onFailure: rollback
`

// wavesRelease is demo's release in manifestsHead's waves; its runtime's
// stop command marks the agent's root when the release is pruned.
func wavesRelease(version, artifact string) string {
	return demoRelease(version, artifact, "edge", "    stop: [sh, -c, 'touch \"$CAIRN_MODEL_DIR/../../../../stopped-demo\"']\n  rolloutPolicy: e2e-waves\n")
}

var waves = []manifests.Wave{{Percent: 20}, {Percent: 50}, {Percent: 100}}

type agentProc struct {
	name, root string
	args       []string
	p          *proc
	id         string
}

// TestRolloutEndToEnd: a real cairn serve (SQLite, built-in registry) follows
// a local Git repository; seven agent processes enroll (six selected by the
// release's profile); v1 rolls out in waves while one agent is killed
// mid-download and resumes; v2, whose health check fails, rolls back
// automatically on its first wave; v3 rolls out while one target is offline,
// paused and resumed by the operator, and completes when the target returns.
func TestRolloutEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and runs a server and seven agents")
	}
	// cairn serve on embedded defaults, over HTTPS.
	s := newServer(t, serveOptions{manifests: manifestsHead, config: map[string]string{"offlineAfter": "5s"}})
	work := s.work
	t.Logf("cairn serve listening on %s (SQLite and built-in registry under %s)", s.addr, s.data)
	view := s.view()
	commit := s.commit

	// Training datasets, versioned with cairn data push: v1 is trained on
	// base, v2 on base and extra, v3 on base and fresh.
	dstore := "file://" + filepath.Join(work, "datasets")
	dataPush := func(name string, files map[string]string) string {
		t.Helper()
		dir := filepath.Join(work, "dataset-"+name)
		os.MkdirAll(dir, 0o755)
		for n, b := range files {
			os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644)
		}
		out := strings.TrimSpace(s.cairn("data", "push", dir, "--store", dstore, "--no-cache"))
		d := out[strings.LastIndexByte(out, '\n')+1:]
		if !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
			t.Fatalf("cairn data push %s: last line %q is no digest", dir, d)
		}
		t.Logf("cairn data push dataset-%s → %s", name, d)
		return d
	}
	dsBase := dataPush("base", map[string]string{"train.csv": "x,y\n1,0\n2,1\n", "README": "base\n"})
	dsExtra := dataPush("extra", map[string]string{"train.csv": "x,y\n3,1\n4,0\n"})
	dsFresh := dataPush("fresh", map[string]string{"train.csv": "x,y\n5,1\n6,1\n"})

	// Models v1 (16 MiB of weights), v2 (health check fails: no ok file), v3;
	// each push is recorded in the server's lineage (trainedOn its datasets).
	push := func(version string, files map[string][]byte, trainedOn map[string]string) string {
		t.Helper()
		paths := writeFiles(t, filepath.Join(work, "model-"+version), files)
		args := []string{"--name", "demo", "--version", version, "--lineage", s.URL}
		for _, n := range slices.Sorted(maps.Keys(trainedOn)) {
			args = append(args, "--trained-on", n+"="+trainedOn[n])
		}
		ref := s.push("models/demo:"+version, paths, args...)
		t.Logf("cairn model push demo:%s → %s", version, ref)
		return ref
	}
	big := make([]byte, 16<<20)
	rand.Read(big)
	v1 := push("1", map[string][]byte{"model.onnx": big, "ok": nil}, map[string]string{"base": dsBase})
	v2 := push("2", map[string][]byte{"model.onnx": []byte("a broken model")}, map[string]string{"base": dsBase, "extra": dsExtra})
	v3 := push("3", map[string][]byte{"model.onnx": []byte("a better model"), "ok": nil}, map[string]string{"base": dsBase, "fresh": dsFresh})
	d1, d2, d3 := digestOf(v1), digestOf(v2), digestOf(v3)

	// Seven agents with different labels; six match env=prod.
	hw := []string{"jetson-orin", "rpi5", "x86-gateway", "jetson-orin", "rpi5", "x86-gateway", "x86-lab"}
	var agents []*agentProc
	for i, h := range hw {
		env := "prod"
		if h == "x86-lab" {
			env = "lab"
		}
		a := &agentProc{name: fmt.Sprintf("dev-%d", i)}
		a.root = s.agentRoot(a.name)
		a.args = []string{"--labels", fmt.Sprintf("env=%s,hardware=%s,site=s%d", env, h, i%3), "--poll-wait", "2s"}
		a.p = s.agent(a.name, a.args...)
		agents = append(agents, a)
	}
	byName := map[string]*agentProc{}
	for _, a := range agents {
		byName[a.name] = a
	}
	eventually(t, 30*time.Second, "7 agents to enroll", func() (bool, string) {
		ts := view.targets(t)
		for _, ti := range ts {
			if a := byName[ti.Name]; a != nil {
				a.id = ti.ID
			}
		}
		return len(ts) == 7, fmt.Sprintf("%d enrolled", len(ts))
	})
	for _, ti := range view.targets(t) {
		if ti.Facts.AgentVersion != "e2e" {
			t.Errorf("%s reports agent version %q, want e2e (cairn-agent's)", ti.Name, ti.Facts.AgentVersion)
		}
	}
	// The device binary idles small once enrolled (its facts carry its version).
	time.Sleep(time.Second)
	for _, a := range agents {
		kib := rssKiB(a.p.cmd.Process.Pid)
		t.Logf("%s (cairn-agent): %.1f MiB RSS idle after enrolling", a.name, float64(kib)/1024)
		if kib > 16<<10 {
			t.Errorf("%s: cairn-agent idles at %d KiB RSS, over 16 MiB", a.name, kib)
		}
	}
	var prodIDs []string
	idToName := map[string]string{}
	for _, a := range agents[:6] {
		prodIDs = append(prodIDs, a.id)
		idToName[a.id] = a.name
	}
	wv := rollout.AssignWaves("demo", waves, prodIDs)
	for i, w := range wv {
		var ns []string
		for _, id := range w {
			ns = append(ns, idToName[id])
		}
		t.Logf("wave %d: %v", i+1, ns)
	}
	first, last := byName[idToName[wv[0][0]]], byName[idToName[wv[2][len(wv[2])-1]]]

	onDigest := func(d string, names ...string) func() (bool, string) {
		return func() (bool, string) {
			var on []string
			for _, ti := range view.targets(t) {
				if s := releaseStatus(ti, "demo"); s.Digest == d && (s.Phase == fleet.PhaseHealthy || s.Phase == fleet.PhaseRolledBack) {
					on = append(on, ti.Name)
				}
			}
			slices.Sort(on)
			for _, n := range names {
				if !slices.Contains(on, n) {
					return false, fmt.Sprintf("on %s: %v", short(d), on)
				}
			}
			return true, ""
		}
	}
	phase := func(want string) func() (bool, string) {
		return func() (bool, string) {
			r := view.release(t, "demo")
			if r == nil {
				return false, "release not known yet"
			}
			return r.Phase == want && r.Digest != "", fmt.Sprintf("%s wave %d %s: %s", r.Phase, r.Wave+1, r.Reason, r.Message)
		}
	}
	prodNames := []string{"dev-0", "dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}

	// 1. v1 to all in waves; the first target is killed mid-download and resumes.
	t.Log("STEP 1: release v1; kill a wave-1 agent in the middle of its download")
	tBeforeV1 := time.Now().UTC()
	commitV1 := commit("release demo v1", manifestsHead+wavesRelease("1", v1))
	// Kill it once its download has bytes on disk (or, on a very fast
	// machine, as soon as the download starts).
	partialSeen := false
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m, _ := filepath.Glob(filepath.Join(first.root, "models/demo/slots/*.partial")); len(m) > 0 {
			partialSeen = true
		}
		if partialSeen && (partialBytes(first.root) > 0 || activeDigest(first.root) != "") {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !partialSeen {
		t.Fatalf("%s never started downloading:\n%s", first.name, first.p.tail(20))
	}
	first.p.kill()
	have := partialBytes(first.root)
	t.Logf("SIGKILLed %s during its download (%d of %d bytes in its cache); current model: %q", first.name, have, len(big), activeDigest(first.root))
	if activeDigest(first.root) != "" {
		t.Fatalf("%s has an active model after a killed first download", first.name)
	}
	first.p = s.agent(first.name, first.args...)
	t.Logf("restarted %s", first.name)
	eventually(t, 90*time.Second, "v1 healthy on all six prod targets", onDigest(d1, prodNames...))
	eventually(t, 30*time.Second, "release demo Succeeded on v1", phase("Succeeded"))
	logWaveEvents(t, view, idToName)
	t.Logf("%s resumed (from %d bytes kept in its cache) and runs v1", first.name, have)
	if d := activeDigest(agents[6].root); d != "" {
		t.Fatalf("the lab agent (not selected) runs %s", d)
	}
	t.Logf("v1 active on all six prod targets; the lab target got nothing")

	// 2. A target goes offline.
	t.Logf("STEP 2: %s (last wave) goes offline", last.name)
	last.p.kill()
	eventually(t, 30*time.Second, last.name+" offline", func() (bool, string) {
		for _, ti := range view.targets(t) {
			if ti.Name == last.name {
				return !ti.Online, fmt.Sprintf("online=%v", ti.Online)
			}
		}
		return false, "not listed"
	})

	// 3. v2 fails its health check on the first wave → automatic rollback.
	t.Log("STEP 3: release v2, whose health check fails")
	tBeforeV2 := time.Now().UTC()
	commit("release demo v2 (broken)", manifestsHead+wavesRelease("2", v2))
	eventually(t, 60*time.Second, "release demo RolledBack", phase("RolledBack"))
	r := view.release(t, "demo")
	t.Logf("release demo: phase %s, reason %s: %s (lastGood %s)", r.Phase, r.Reason, r.Message, short(r.LastGood))
	if r.LastGood != d1 || r.Digest != d2 {
		t.Fatalf("release digest %s lastGood %s; want %s and %s", short(r.Digest), short(r.LastGood), short(d2), short(d1))
	}
	online := slices.DeleteFunc(slices.Clone(prodNames), func(n string) bool { return n == last.name })
	eventually(t, 60*time.Second, "every online target back on v1", onDigest(d1, online...))
	for _, ti := range view.targets(t) {
		if s := releaseStatus(ti, "demo"); s.Digest == d2 {
			t.Fatalf("%s still on v2: %+v", ti.Name, s)
		}
	}
	evs := events(t, view)
	for _, want := range []string{manifests.EventRolloutFailed, manifests.EventRolledBack} {
		if !slices.ContainsFunc(evs, func(e fleet.Event) bool { return e.Type == want }) {
			t.Fatalf("no %s event recorded", want)
		}
	}
	for _, e := range evs {
		if e.Type == manifests.EventRolledBack || e.Type == manifests.EventRolloutFailed {
			t.Logf("event %s (%s): %s", e.Type, e.Reason, e.Message)
		}
	}
	for _, w := range wv[1:] {
		for _, id := range w {
			if strings.Contains(readFile(byName[idToName[id]].p.log), short(d2)[7:]) {
				t.Fatalf("%s (a later wave) was told to install v2", idToName[id])
			}
		}
	}
	t.Log("v2 reached only the first wave; all targets back on v1")
	tAfterRollback := time.Now().UTC()

	// 4. v3 rolls out while the target is offline; the operator pauses and resumes.
	t.Log("STEP 4: release v3 while one target is offline; pause and resume it")
	tBeforeV3 := time.Now().UTC()
	commitV3 := commit("release demo v3", manifestsHead+wavesRelease("3", v3))
	eventually(t, 30*time.Second, "v3 rollout progressing", phase("Progressing"))
	rollout := func(action string) {
		out := s.api("rollout", action, "demo")
		t.Logf("cairn rollout %s demo → %s", action, strings.TrimSpace(out))
	}
	rollout("pause")
	eventually(t, 30*time.Second, "rollout paused", phase("Paused"))
	rollout("resume")
	eventually(t, 60*time.Second, "v3 on every online target", onDigest(d3, online...))
	eventually(t, 30*time.Second, "rollout waiting for the offline target", func() (bool, string) {
		r := view.release(t, "demo")
		return r != nil && r.Phase == "Progressing" && r.Wave == 2, fmt.Sprintf("%s wave %d %s", r.Phase, r.Wave+1, r.Message)
	})
	t.Logf("%s comes back", last.name)
	last.p = s.agent(last.name, last.args...)
	eventually(t, 60*time.Second, "v3 on all six", onDigest(d3, prodNames...))
	eventually(t, 30*time.Second, "release demo Succeeded on v3", phase("Succeeded"))
	r = view.release(t, "demo")
	t.Logf("release demo: %s on %s, lastGood %s", r.Phase, short(r.Digest), short(r.LastGood))

	// 5. What operators see: cairn get targets -o json.
	out := s.api("get", "targets", "-o", "json")
	var listed []fleet.TargetInfo
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("cairn get targets -o json: %v\n%s", err, out)
	}
	if len(listed) != 7 {
		t.Fatalf("cairn get targets lists %d targets, want 7", len(listed))
	}
	t.Log("cairn get targets -o json:")
	for _, ti := range listed {
		s := releaseStatus(ti, "demo")
		seen := "never"
		if ti.LastSeen != nil {
			seen = time.Since(*ti.LastSeen).Round(time.Second).String() + " ago"
		}
		t.Logf("  %-6s online=%-5v phase=%-8s digest=%s previous=%s last seen %s, metrics %v", ti.Name, ti.Online, s.Phase, short(s.Digest), short(s.Previous), seen, metricNames(ti.Metrics))
		if ti.LastSeen == nil || len(ti.Metrics) == 0 {
			t.Errorf("%s: no last seen or metrics", ti.Name)
		}
		if ti.Name != "dev-6" && (s.Phase != fleet.PhaseHealthy || s.Digest != d3) {
			t.Errorf("%s: phase %s digest %s, want Healthy on v3", ti.Name, s.Phase, short(s.Digest))
		}
	}

	// 6. Lineage: which model each target ran before v2 was committed, during
	// its failed rollout and after the rollback (no target ever ran v2
	// healthily: its health check fails everywhere, so lineage answers v1
	// throughout), and now (v3); which targets run a model trained on each
	// dataset at those times.
	t.Log("STEP 6: lineage answers (cairn lineage at / where -o json)")
	lin := s.lineage(map[string]string{
		d1: "v1", d2: "v2", d3: "v3", dsBase: "D_base", dsExtra: "D_extra", dsFresh: "D_fresh"})
	var allIDs []string
	for _, a := range agents {
		allIDs = append(allIDs, a.id)
		lin.label[a.id] = a.name
	}
	onAll := func(w atWant) map[string]atWant {
		m := map[string]atWant{}
		for _, id := range prodIDs {
			m[id] = w
		}
		return m
	}
	runAll := func(model string) map[string]string {
		m := map[string]string{}
		for _, id := range prodIDs {
			m[id] = model
		}
		return m
	}
	onV1 := onAll(atWant{model: d1, commit: commitV1, datasets: slices.Sorted(slices.Values([]string{dsBase}))})
	onV3 := onAll(atWant{model: d3, commit: commitV3, datasets: slices.Sorted(slices.Values([]string{dsBase, dsFresh}))})
	none := map[string]string{}

	// When v2 reached targets, and was rolled back, as lineage recorded it.
	sg := lin.downstream(t, "model:"+d2)
	var during []time.Time
	var v2Targets []string
	rolledBack := false
	for _, l := range sg.Links {
		switch {
		case l.Type == lineage.EdgeDeployedTo && l.From == "model:"+d2:
			id := strings.TrimPrefix(l.To, lineage.NodeTarget+":")
			v2Targets = append(v2Targets, id)
			t.Logf("  lineage downstream v2: deployedTo %s %d event(s) %s … %s, last outcome %s", lin.name(id), l.Count,
				l.First.Format(time.RFC3339Nano), l.Last.Format(time.RFC3339Nano), l.Outcome)
			if !slices.Contains(wv[0], id) {
				t.Errorf("lineage: v2 deployed to %s, which is not in the first wave", lin.name(id))
			}
			during = append(during, l.First, l.First.Add(l.Last.Sub(l.First)/2), l.Last)
		case l.Type == lineage.EdgeRolledBack:
			rolledBack = true
			t.Logf("  lineage downstream v2: %s rolledBack v2 at %s", l.From, l.First.Format(time.RFC3339Nano))
			during = append(during, l.First)
		}
	}
	if len(v2Targets) == 0 || !rolledBack {
		t.Errorf("lineage downstream v2: deployed to %v, rolled back %v; want the first wave and a rollback", lin.names(v2Targets), rolledBack)
	}
	during = append(during, tBeforeV2.Add(tAfterRollback.Sub(tBeforeV2)/2))
	slices.SortFunc(during, func(a, b time.Time) int { return a.Compare(b) })
	during = slices.Compact(during)
	for _, at := range during {
		if at.Before(tBeforeV2) || at.After(tAfterRollback) {
			t.Errorf("lineage: a v2 event at %s, outside its rollout (%s … %s)", at.Format(time.RFC3339Nano), tBeforeV2.Format(time.RFC3339Nano), tAfterRollback.Format(time.RFC3339Nano))
		}
	}

	lin.checkAt(t, "before v1 was committed", tBeforeV1, allIDs, nil)
	lin.checkWhere(t, "before v1", dsBase, tBeforeV1, none)
	lin.checkAt(t, "before v2 was committed", tBeforeV2, allIDs, onV1)
	lin.checkWhere(t, "before v2", dsBase, tBeforeV2, runAll(d1))
	lin.checkWhere(t, "before v2", dsExtra, tBeforeV2, none)
	for _, at := range during {
		lin.checkAt(t, "during the v2 rollout", at, allIDs, onV1)
		lin.checkWhere(t, "during the v2 rollout", dsBase, at, runAll(d1))
		lin.checkWhere(t, "during the v2 rollout", dsExtra, at, none)
	}
	for _, at := range []time.Time{tAfterRollback, tBeforeV3} {
		lin.checkAt(t, "after the rollback", at, allIDs, onV1)
		lin.checkWhere(t, "after the rollback", dsBase, at, runAll(d1))
		lin.checkWhere(t, "after the rollback", dsExtra, at, none)
		lin.checkWhere(t, "after the rollback", dsFresh, at, none)
		lin.checkWhere(t, "after the rollback", d1, at, runAll(d1))
		lin.checkWhere(t, "after the rollback", d2, at, none)
	}
	lin.checkAt(t, "now, after v3", time.Now(), allIDs, onV3)
	lin.checkWhere(t, "now, after v3", dsBase, time.Time{}, runAll(d3))
	lin.checkWhere(t, "now, after v3", dsExtra, time.Time{}, none)
	lin.checkWhere(t, "now, after v3", dsFresh, time.Time{}, runAll(d3))
	lin.checkWhere(t, "now, after v3", d1, time.Time{}, none)

	// 7. The Release is removed from Git: every agent uninstalls it (slot
	// folder gone), the server stops listing it, lineage ends the deployment.
	t.Log("STEP 7: remove the Release; agents prune it")
	tBeforeRemove := time.Now()
	commit("remove release demo", manifestsHead)
	eventually(t, 90*time.Second, "demo pruned from every agent", func() (bool, string) {
		var left []string
		for _, a := range agents {
			if _, err := os.Stat(filepath.Join(a.root, "models", "demo")); err == nil {
				left = append(left, a.name+":files")
			}
		}
		for _, ti := range view.targets(t) {
			if releaseStatus(ti, "demo").Release != "" {
				left = append(left, ti.Name+":status")
			}
		}
		return len(left) == 0, fmt.Sprintf("left %v", left)
	})
	pruned := 0
	for _, e := range events(t, view) {
		if e.Type == manifests.EventReleasePruned {
			pruned++
		}
	}
	if pruned != 1 {
		t.Errorf("%d ReleasePruned events, want 1", pruned)
	}
	lin.checkAt(t, "before the removal", tBeforeRemove, allIDs, onV3)
	lin.checkAt(t, "after the removal", time.Now(), allIDs, nil)
	// The runtime's stop command ran before each uninstall (it writes
	// ROOT/stopped-demo, from the slot it was given).
	for _, a := range agents[:6] {
		if _, err := os.Stat(filepath.Join(a.root, "stopped-demo")); err != nil {
			t.Errorf("%s: the runtime's stop command did not run before the uninstall: %v", a.name, err)
		}
	}

	// 8. prune: false: demo comes back saying so, then is removed again:
	// every agent keeps it installed and reports it.
	t.Log("STEP 8: add demo back with prune: false, remove it; agents keep it")
	commit("release demo v3 again, prune: false", manifestsHead+wavesRelease("3", v3)+"  prune: false\n")
	eventually(t, 90*time.Second, "v3 on all six again", onDigest(d3, prodNames...))
	commit("remove release demo (prune: false)", manifestsHead)
	eventually(t, 30*time.Second, "demo removed and kept", func() (bool, string) {
		for _, e := range events(t, view) {
			if e.Type == manifests.EventReleaseRemoved && strings.Contains(e.Message, "kept installed") {
				return true, ""
			}
		}
		return false, "no ReleaseRemoved event saying kept"
	})
	time.Sleep(4 * time.Second) // agents long-poll: a prune would have happened by now
	for _, a := range agents[:6] {
		if d := activeDigest(a.root); d != d3 {
			t.Errorf("%s: demo with prune: false runs %q after its removal, want it kept on %s", a.name, d, short(d3))
		}
	}
	if ok, msg := onDigest(d3, prodNames...)(); !ok {
		t.Errorf("kept release no longer reported Healthy everywhere: %s", msg)
	}
	pruned = 0
	for _, e := range events(t, view) {
		if e.Type == manifests.EventReleasePruned {
			pruned++
		}
	}
	if pruned != 1 {
		t.Errorf("%d ReleasePruned events after a removal with prune: false, want still 1", pruned)
	}
}

func metricNames(m map[string]float64) []string {
	var ns []string
	for k := range m {
		ns = append(ns, k)
	}
	slices.Sort(ns)
	return ns
}

func digestOf(ref string) string { return ref[strings.LastIndexByte(ref, '@')+1:] }

func activeDigest(root string) string {
	l, err := os.Readlink(filepath.Join(root, "models/demo/current"))
	if err != nil {
		return ""
	}
	return "sha256:" + filepath.Base(l)
}

// partialBytes is how much of an interrupted download the agent's layer
// cache holds.
func partialBytes(root string) int64 {
	var n int64
	m, _ := filepath.Glob(filepath.Join(root, "cache/blobs/sha256/*.partial"))
	for _, p := range m {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func events(t *testing.T, v fleetView) []fleet.Event {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := v.admin.Events(ctx, fleet.EventFilter{Release: "demo", Limit: 500})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	return evs
}

func logWaveEvents(t *testing.T, v fleetView, names map[string]string) {
	for _, e := range events(t, v) {
		if e.Type == "WaveStarted" || e.Type == manifests.EventRolloutDone || e.Type == manifests.EventRolloutStarted {
			var ns []string
			for _, id := range e.Targets {
				ns = append(ns, names[id])
			}
			t.Logf("event %s %s %v", e.Type, e.Message, ns)
		}
	}
}
