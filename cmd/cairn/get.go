package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/reconciler/history"
)

// serverFlags are the connection flags of get, describe and friends.
type serverFlags struct {
	server, token, output string
}

func (f *serverFlags) add(cmd *cobra.Command) {
	def := os.Getenv("CAIRN_SERVER")
	if def == "" {
		def = "http://127.0.0.1:7480"
	}
	cmd.Flags().StringVar(&f.server, "server", def, "cairn server URL (env CAIRN_SERVER)")
	cmd.Flags().StringVar(&f.token, "token", "", "admin or read-only token (env CAIRN_TOKEN; default .cairn/admin-token for a local server)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "table", "output format: table, json or yaml")
}

// client returns the status API client, finding the token as documented.
func (f *serverFlags) client() *fleet.AdminClient {
	return fleet.NewAdminClient(f.server, serverToken(f.server, f.token))
}

// serverToken is the API token for server: tok when given, else
// $CAIRN_TOKEN, else a local server's .cairn/admin-token.
func serverToken(server, tok string) string {
	if tok == "" {
		tok = os.Getenv("CAIRN_TOKEN")
	}
	if tok == "" {
		if u, err := url.Parse(server); err == nil {
			h := u.Hostname()
			if h == "127.0.0.1" || h == "localhost" || h == "::1" {
				if b, err := os.ReadFile(filepath.Join(".cairn", "admin-token")); err == nil {
					tok = strings.TrimSpace(string(b))
				}
			}
		}
	}
	return tok
}

func newGetCmd() *cobra.Command {
	var sf serverFlags
	var ef fleet.EventFilter
	var window string
	var allAlerts bool
	cmd := &cobra.Command{
		Use:       "get targets|releases|rollouts|events|drift|alerts|feedback|evaluations|uptime",
		Short:     "List targets, releases, rollouts, events, live drift, alert deliveries, feedback uploads, evaluation runs or uptime from a cairn server",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"targets", "releases", "rollouts", "events", "drift", "alerts", "feedback", "evaluations", "uptime"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c := sf.client()
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			switch args[0] {
			case "targets", "target":
				ts, err := c.Targets(ctx)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, targetList(ts))
			case "releases", "release":
				rs, err := c.Releases(ctx)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, releaseList(rs))
			case "rollouts", "rollout":
				rs, err := c.Releases(ctx)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, rolloutList(rs))
			case "events", "event":
				evs, err := c.Events(ctx, ef)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, eventList(evs))
			case "drift":
				rs, err := c.Releases(ctx)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, driftRows(rs, ef.Release, ef.Target))
			case "alerts", "alert":
				states := []string{"pending", "failed"}
				if allAlerts {
					states = nil
				}
				ds, err := c.Alerts(ctx, states...)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, alertList(ds))
			case "feedback":
				bs, err := c.Feedback(ctx, ef.Target, ef.Release)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, feedbackList(bs))
			case "evaluations", "evaluation":
				rs, err := c.Evaluations(ctx, ef.Release)
				if err != nil {
					return err
				}
				return output.Print(out, sf.output, evaluationList(rs))
			case "uptime":
				rep, err := history.NewClient(sf.server, serverToken(sf.server, sf.token)).Uptime(ctx, window, ef.Target)
				if err != nil {
					return err
				}
				if sf.output == output.Table || sf.output == "" {
					return output.Print(out, sf.output, uptimeList{rep})
				}
				return output.Print(out, sf.output, rep)
			}
			return fmt.Errorf("get %s: want targets, releases, rollouts, events, drift, alerts, feedback, evaluations or uptime", args[0])
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&ef.Release, "release", "", "events, drift, feedback, evaluations: only of this release")
	cmd.Flags().StringVar(&ef.Target, "target", "", "events, drift, feedback, uptime: only of this target")
	cmd.Flags().StringVar(&window, "window", "30d", "uptime: over this window (90m, 24h, 30d)")
	cmd.Flags().StringVar(&ef.Type, "type", "", "events: only of this type")
	cmd.Flags().IntVar(&ef.Limit, "limit", 100, "events: newest N")
	cmd.Flags().BoolVar(&allAlerts, "all", false, "alerts: delivered ones too (default: pending and failed)")
	return cmd
}

func newDescribeCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "describe target|release NAME",
		Short: "Show one target or release in detail: conditions, status, deployment log",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := sf.client()
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			switch args[0] {
			case "target", "targets":
				t, err := c.Target(ctx, args[1])
				if err != nil {
					return err
				}
				if sf.output == output.Table || sf.output == "" {
					rs, err := c.Releases(ctx)
					if err != nil {
						return err
					}
					if err := describeTarget(out, t); err != nil {
						return err
					}
					describeDrift(out, driftRows(rs, "", t.Name))
					return nil
				}
				return output.Print(out, sf.output, t)
			case "release", "releases", "rollout":
				r, err := c.Release(ctx, args[1])
				if err != nil {
					return err
				}
				if sf.output == output.Table || sf.output == "" {
					evs, err := c.Events(ctx, fleet.EventFilter{Release: args[1], Limit: 10})
					if err != nil {
						return err
					}
					return describeRelease(out, r, evs)
				}
				return output.Print(out, sf.output, r)
			}
			return fmt.Errorf("describe %s: want target or release", args[0])
		},
	}
	sf.add(cmd)
	return cmd
}

func age(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

func shortDigest(d string) string {
	if d == "" {
		return "-"
	}
	return digest.Digest(d).ShortHex()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ready(cs []fleet.Condition) string {
	for _, c := range cs {
		if c.Type == "Ready" {
			if c.Status == "True" {
				return "True"
			}
			return c.Status + " (" + c.Reason + ")"
		}
	}
	return "-"
}

type targetList []fleet.TargetInfo

func (l targetList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, t := range l {
		seen := time.Time{}
		if t.LastSeen != nil {
			seen = *t.LastSeen
		}
		online := "offline"
		if t.Online {
			online = "online"
		}
		var rels []string
		for _, r := range t.Releases {
			rels = append(rels, r.Release+"="+shortDigest(r.Digest))
		}
		mem := "-"
		if v, ok := t.Metrics["memory_bytes"]; ok {
			mem = strconv.FormatInt(int64(v)>>20, 10) + "Mi"
		}
		cpu, temp := "-", "-"
		if v, ok := t.Metrics["cpu_percent"]; ok {
			cpu = strconv.FormatFloat(v, 'f', 0, 64) + "%"
		}
		if v, ok := t.Metrics["temperature_c"]; ok {
			temp = strconv.FormatFloat(v, 'f', 0, 64) + "C"
		}
		kind, arch := "device", t.Facts.Arch
		if t.Facts.Kind == fleet.KindCluster {
			kind = "cluster"
			if arch == "" {
				arch = strings.Join(t.Facts.Architectures, "+")
			}
		}
		rows = append(rows, []string{t.Name, kind, dash(t.Phase), online, age(seen), dash(arch), cpu, mem, temp, dash(strings.Join(rels, ","))})
	}
	return []string{"name", "kind", "phase", "status", "last seen", "arch", "cpu", "memory", "temp", "releases"}, rows
}

type releaseList []fleet.ReleaseInfo

func (l releaseList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, r := range l {
		rows = append(rows, []string{r.Name, dash(r.Model), dash(r.Version), shortDigest(r.Digest), dash(r.Phase),
			fmt.Sprintf("%d/%d", r.Healthy, r.Targets), ready(r.Conditions)})
	}
	return []string{"name", "model", "version", "digest", "phase", "healthy", "ready"}, rows
}

type rolloutList []fleet.ReleaseInfo

func (l rolloutList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, r := range l {
		wave := "-"
		if r.Waves > 0 {
			wave = fmt.Sprintf("%d/%d", r.Wave+1, r.Waves)
		}
		rows = append(rows, []string{r.Name, dash(r.Phase), wave, fmt.Sprintf("%d/%d", r.Updated, r.Targets),
			strconv.Itoa(r.Healthy), strconv.Itoa(r.Failed), shortDigest(r.LastGood), dash(r.Message)})
	}
	return []string{"release", "phase", "wave", "updated", "healthy", "failed", "last good", "message"}, rows
}

type alertList []fleet.AlertDelivery

func (l alertList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, d := range l {
		next := "-"
		if !d.NextAt.IsZero() {
			next = d.NextAt.Local().Format("2006-01-02 15:04:05")
		}
		rows = append(rows, []string{d.ID, d.Alert, d.State, fmt.Sprint(d.Attempts), fmt.Sprint(d.Events), d.Created.Local().Format("2006-01-02 15:04:05"), next, dash(d.LastError)})
	}
	return []string{"delivery", "alert", "state", "attempts", "events", "created", "next attempt", "last error"}, rows
}

type feedbackList []fleet.FeedbackBatch

func (l feedbackList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, b := range l {
		rows = append(rows, []string{b.Time.Local().Format("2006-01-02 15:04:05"), b.Target, b.Release, shortDigest(b.ModelDigest),
			strconv.FormatInt(b.Records, 10), strconv.FormatInt(b.Bytes, 10), b.Store, b.Dataset})
	}
	return []string{"time", "target", "release", "model", "records", "bytes", "store", "dataset"}, rows
}

type evaluationList []fleet.EvaluationRecord

func (l evaluationList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, e := range l {
		models := map[string]string{}
		for _, m := range e.Models {
			models[m.Role] = shortDigest(m.Digest)
		}
		state, verdict := "pending", "-"
		if e.Done != nil {
			state = "done"
		}
		if v := e.Verdict; v != nil {
			verdict = "pass: " + v.Summary
			if !v.Pass {
				verdict = "FAIL: " + strings.Join(v.Reasons, "; ")
			}
		}
		rows = append(rows, []string{e.Requested.Local().Format("2006-01-02 15:04:05"), e.ID, e.Release, e.Reason, dash(models[fleet.RoleCandidate]),
			dash(models[fleet.RoleChampion]), e.Evaluator, state, verdict})
	}
	return []string{"requested", "run", "release", "reason", "candidate", "champion", "evaluator", "state", "verdict"}, rows
}

type eventList []fleet.Event

func (l eventList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, e := range l {
		rows = append(rows, []string{e.Time.Local().Format("2006-01-02 15:04:05"), e.Type, dash(e.Release), dash(e.Target), e.Message})
	}
	return []string{"time", "type", "release", "target", "message"}, rows
}

func describeTarget(w io.Writer, t *fleet.TargetInfo) error {
	p := func(k, v string) { fmt.Fprintf(w, "%-14s %s\n", k+":", output.Escape(v)) }
	p("Name", t.Name)
	p("Phase", dash(t.Phase))
	seen := time.Time{}
	if t.LastSeen != nil {
		seen = *t.LastSeen
	}
	p("Online", fmt.Sprintf("%v (last seen %s ago)", t.Online, age(seen)))
	p("Enrolled", t.EnrolledAt.Local().Format(time.RFC3339))
	var labels []string
	for k, v := range t.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	p("Labels", dash(strings.Join(labels, ",")))
	f := t.Facts
	p("Facts", fmt.Sprintf("arch=%s os=%s %s memory=%dMi cpus=%d accelerators=%s", dash(f.Arch), dash(f.OS), f.OSVersion, f.Memory>>20, f.CPUs, dash(strings.Join(f.Accelerators, ","))))
	if f.Kind == fleet.KindCluster {
		var gpus []string
		for _, g := range slices.Sorted(maps.Keys(f.GPUs)) {
			gpus = append(gpus, g+"="+strconv.FormatInt(f.GPUs[g], 10))
		}
		p("Cluster", fmt.Sprintf("kubernetes %s, %d nodes (%s), largest node memory %dMi, gpus %s, kserve %v",
			dash(f.KubernetesVersion), f.Nodes, dash(strings.Join(f.Architectures, ",")), f.Memory>>20, dash(strings.Join(gpus, ",")), f.KServe))
	}
	if len(t.Metrics) > 0 {
		var ms []string
		for k, v := range t.Metrics {
			ms = append(ms, k+"="+strconv.FormatFloat(v, 'g', 4, 64))
		}
		sort.Strings(ms)
		p("Metrics", strings.Join(ms, " "))
	}
	fmt.Fprintln(w, "Desired:")
	if len(t.Desired) == 0 {
		fmt.Fprintln(w, "  (nothing)")
	}
	for _, d := range t.Desired {
		fmt.Fprintf(w, "  %s: %s %s %s\n", d.Release, d.Model, output.Escape(dash(d.Version)), d.Artifact)
	}
	fmt.Fprintln(w, "Releases:")
	if len(t.Releases) == 0 {
		fmt.Fprintln(w, "  (no report)")
	}
	for _, r := range t.Releases {
		fmt.Fprintf(w, "  %s: %s active=%s previous=%s %s\n", r.Release, r.Phase, shortDigest(r.Digest), shortDigest(r.Previous), output.Escape(r.Message))
	}
	fmt.Fprintln(w, "Deployment log:")
	for _, e := range t.Log {
		fmt.Fprintf(w, "  %s  %-11s %-20s %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), output.Escape(e.Phase), e.Release, output.Escape(e.Message))
	}
	return nil
}

func describeRelease(w io.Writer, r *fleet.ReleaseInfo, evs []fleet.Event) error {
	p := func(k, v string) { fmt.Fprintf(w, "%-14s %s\n", k+":", output.Escape(v)) }
	p("Name", r.Name)
	p("Model", fmt.Sprintf("%s %s", dash(r.Model), r.Version))
	p("Artifact", dash(r.Artifact))
	p("Commit", dash(r.Commit))
	p("Profiles", dash(strings.Join(r.Profiles, ",")))
	p("Policy", dash(r.RolloutPolicy))
	p("Phase", fmt.Sprintf("%s (wave %d of %d)", dash(r.Phase), r.Wave+1, max(r.Waves, 1)))
	p("Digest", dash(r.Digest))
	p("Last good", dash(r.LastGood))
	p("Targets", fmt.Sprintf("%d selected, %d updated, %d healthy, %d failed", r.Targets, r.Updated, r.Healthy, r.Failed))
	if r.Denied != "" {
		p("Denied", r.Denied)
	}
	if r.Suspended {
		p("Suspended", "true")
	}
	fmt.Fprintln(w, "Conditions:")
	for _, c := range r.Conditions {
		fmt.Fprintf(w, "  %-12s %-7s %-18s %s\n", c.Type, c.Status, c.Reason, output.Escape(c.Message))
	}
	fmt.Fprintln(w, "Events:")
	for _, e := range evs {
		fmt.Fprintf(w, "  %s  %-18s %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Type, output.Escape(e.Message))
	}
	return nil
}

// uptimeList is `cairn get uptime` as a table: each target, then the fleet.
type uptimeList struct{ r *history.UptimeReport }

func (l uptimeList) Rows() ([]string, [][]string) {
	row := func(name, online string, u history.Uptime) []string {
		return []string{name, online, strconv.FormatFloat(u.Percent, 'f', 2, 64) + "%",
			u.OnlineFor.Duration().Round(time.Second).String(), u.Observed.Duration().Round(time.Second).String(), strconv.Itoa(u.Outages)}
	}
	rows := make([][]string, 0, len(l.r.Targets)+1)
	for _, u := range l.r.Targets {
		online := "offline"
		if u.Online {
			online = "online"
		}
		rows = append(rows, row(u.Target, online, u))
	}
	rows = append(rows, row("(fleet)", "-", l.r.Fleet))
	return []string{"target", "status", "uptime", "online for", "observed", "outages"}, rows
}
