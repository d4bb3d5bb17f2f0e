// Command demowatch follows rollouts through cairn's status API for the demo:
// it prints each release's phase, wave and target counts whenever they
// change, and every new event, until each release named by --want reaches
// its wanted phase (and digest), a release ends in another final phase, or
// the timeout passes.
//
//	demowatch --server URL --token-file FILE --want bearing-staging=Succeeded@sha256:… [--want …] [--timeout 3m] [--ca-file ca.pem]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/tlsfiles"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

type want struct {
	release, phase, digest string
}

type wants []want

func (w *wants) String() string { return fmt.Sprint(*w) }

func (w *wants) Set(s string) error {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return fmt.Errorf("want RELEASE=PHASE[@DIGEST], got %q", s)
	}
	phase, digest, _ := strings.Cut(rest, "@")
	*w = append(*w, want{name, phase, digest})
	return nil
}

// final phases end a rollout; reaching one that is not wanted, on the wanted
// digest, fails the watch.
var final = map[string]bool{rollout.PhaseSucceeded: true, rollout.PhaseRolledBack: true, rollout.PhaseAborted: true}

func main() {
	server := flag.String("server", "", "cairn serve URL")
	tokenFile := flag.String("token-file", "", "file holding an admin or read-only token")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after this long")
	denied := flag.String("denied", "", "only check whether this release's newest commit was denied by a policy: exit 0 if so, 3 if not")
	allOn := flag.String("all-on", "", "also wait until every target reports this model digest active for all its releases")
	caFile := flag.String("ca-file", os.Getenv("CAIRN_CA_FILE"), "PEM file of the CA of cairn serve's certificate (default: env CAIRN_CA_FILE)")
	var ws wants
	flag.Var(&ws, "want", "RELEASE=PHASE[@DIGEST] to wait for (repeatable)")
	flag.Parse()
	tc, err := tlsfiles.Client(*caFile, "", "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "demowatch: %v\n", err)
		os.Exit(1)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	hc := &http.Client{Transport: tr}
	if *denied != "" {
		os.Exit(checkDenied(hc, *server, *tokenFile, *denied))
	}
	if err := run(hc, *server, *tokenFile, *timeout, ws, *allOn); err != nil {
		fmt.Fprintf(os.Stderr, "demowatch: %v\n", err)
		os.Exit(1)
	}
}

func short(d string) string {
	if d == "" {
		return "-"
	}
	return digest.Digest(d).ShortHex()
}

func run(hc *http.Client, server, tokenFile string, timeout time.Duration, ws wants, allOn string) error {
	if server == "" || (len(ws) == 0 && allOn == "") {
		return errors.New("--server and --want or --all-on are required")
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("read token: %w", err)
	}
	c := fleet.NewAdminClient(server, strings.TrimSpace(string(tok)), fleet.WithHTTPClient(hc))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	last := map[string]string{}
	var lastEvent int64 = -1
	// events prints the events recorded since the last call (none on the
	// first: the watch shows what happens from its start).
	events := func() {
		evs, err := c.Events(ctx, fleet.EventFilter{Limit: 200})
		if err != nil {
			return
		}
		for _, e := range evs {
			if lastEvent < 0 {
				continue
			}
			if e.ID > lastEvent {
				who := e.Release
				if e.Target != "" {
					who += " " + e.Target
				}
				fmt.Printf("  %5.1fs  event %-16s %s: %s\n", time.Since(start).Seconds(), e.Type, strings.TrimSpace(who), e.Message)
			}
		}
		for _, e := range evs {
			lastEvent = max(lastEvent, e.ID)
		}
		if lastEvent < 0 {
			lastEvent = 0
		}
	}
	for {
		events()
		rels, err := c.Releases(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("timed out after %s: %w", timeout, err)
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		byName := map[string]fleet.ReleaseInfo{}
		for _, r := range rels {
			byName[r.Name] = r
			line := fmt.Sprintf("%-16s %-11s wave %d/%d  updated %d/%d  healthy %d  failed %d  %s %s",
				r.Name, r.Phase, r.Wave+1, max(r.Waves, 1), r.Updated, r.Targets, r.Healthy, r.Failed, r.Version, short(r.Digest))
			if r.Denied != "" {
				line += "  denied: " + r.Denied
			}
			if line != last[r.Name] {
				fmt.Printf("  %5.1fs  %s\n", time.Since(start).Seconds(), line)
				last[r.Name] = line
			}
		}
		done := true
		for _, w := range ws {
			r, ok := byName[w.release]
			switch {
			case !ok:
				done = false
			case r.Phase == w.phase && (w.digest == "" || r.Digest == w.digest):
			case final[r.Phase] && w.digest != "" && r.Digest == w.digest:
				return fmt.Errorf("release %s ended %s (%s: %s), want %s", w.release, r.Phase, r.Reason, r.Message, w.phase)
			default:
				done = false
			}
		}
		if done && allOn != "" {
			done = allTargetsOn(ctx, c, allOn)
		}
		if done {
			// The events of the step that got it there may be stored just
			// after its state: give them a moment.
			time.Sleep(300 * time.Millisecond)
			events()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s waiting for %v", timeout, ws)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func checkDenied(hc *http.Client, server, tokenFile, release string) int {
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demowatch: read token: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := fleet.NewAdminClient(server, strings.TrimSpace(string(tok)), fleet.WithHTTPClient(hc)).Release(ctx, release)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demowatch: %v\n", err)
		return 1
	}
	if r.Denied != "" {
		fmt.Printf("%s is held: %s\n", release, r.Denied)
		return 0
	}
	return 3
}

// allTargetsOn reports whether every target runs digest for each release it
// reports, and prints the targets once they all do.
func allTargetsOn(ctx context.Context, c *fleet.AdminClient, digest string) bool {
	ts, err := c.Targets(ctx)
	if err != nil || len(ts) == 0 {
		return false
	}
	for _, t := range ts {
		if len(t.Releases) == 0 {
			return false
		}
		for _, r := range t.Releases {
			if r.Digest != digest {
				return false
			}
		}
	}
	fmt.Printf("  all %d targets run %s\n", len(ts), short(digest))
	return true
}
