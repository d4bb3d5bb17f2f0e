// Command plan-bench times `cairn plan`'s computation on a synthetic fleet:
// 1,000 releases × 100,000 targets, with the digest-pinned,
// require-evaluation and fits-device policies. Run it with GOMAXPROCS=1
// (bench/plan/run.sh) for the one-core figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/plan/plantest"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs f n times and returns the best wall and CPU time of one run.
func measure(n int, f func() error) (wall, cpu time.Duration, err error) {
	wall, cpu = time.Hour, time.Hour
	for range n {
		runtime.GC()
		w0, c0 := time.Now(), cpuTime()
		if err := f(); err != nil {
			return 0, 0, err
		}
		wall, cpu = min(wall, time.Since(w0)), min(cpu, cpuTime()-c0)
	}
	return wall, cpu, nil
}

func main() {
	targets := flag.Int("targets", 100_000, "targets in the fleet")
	releases := flag.Int("releases", 1000, "releases in the repository")
	runs := flag.Int("runs", 3, "runs of each measurement (the best is printed)")
	flag.Parse()
	if err := run(*targets, *releases, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "plan-bench:", err)
		os.Exit(1)
	}
}

func run(targets, releases, runs int) error {
	ctx := context.Background()
	inv := plantest.Fleet(targets, releases)
	snap := plantest.Repo(releases, "digest-pinned", "require-evaluation", "fits-device")
	eng, err := policies.Compile(ctx, nil)
	if err != nil {
		return err
	}
	now := time.Now()
	var p *plan.Plan
	noPolicyWall, noPolicyCPU, err := measure(runs, func() (err error) {
		p, err = plan.Compute(ctx, snap, inv, plan.Options{Now: now})
		return err
	})
	if err != nil {
		return err
	}
	wall, cpu, err := measure(runs, func() (err error) {
		p, err = plan.Compute(ctx, snap, inv, plan.Options{Policies: eng, Now: now})
		return err
	})
	if err != nil {
		return err
	}

	// The alternative not taken: every selected target in the policy input.
	// Converting the targets of a sample of releases to Rego values alone,
	// extrapolated to all releases.
	sample := min(20, len(p.Releases))
	byName := make(map[string]*fleet.Target, len(inv.Targets))
	for i := range inv.Targets {
		byName[inv.Targets[i].Name] = &inv.Targets[i]
	}
	var full time.Duration
	for _, r := range p.Releases[:sample] {
		var list []fleet.Target
		for _, w := range r.Waves {
			for _, n := range w.Targets {
				list = append(list, *byName[n])
			}
		}
		for _, u := range r.Unfit {
			list = append(list, *byName[u.Target])
		}
		c0 := cpuTime()
		if _, err := ast.InterfaceToValue(list); err != nil {
			return err
		}
		full += cpuTime() - c0
	}
	fullEst := full * time.Duration(len(p.Releases)) / time.Duration(max(sample, 1))

	fmt.Printf("plan: %d releases × %d targets, GOMAXPROCS=%d, best of %d\n", releases, targets, runtime.GOMAXPROCS(0), runs)
	fmt.Printf("  assignments %d, unfit %d, denied releases %d\n", p.Summary.Assignments, p.Summary.Unfit, p.Summary.Denied)
	fmt.Printf("  plan without policies: %6.3f s wall, %6.3f s CPU\n", noPolicyWall.Seconds(), noPolicyCPU.Seconds())
	fmt.Printf("  plan with 3 policies:  %6.3f s wall, %6.3f s CPU (goal ≤ 1 s on one core: %s)\n", wall.Seconds(), cpu.Seconds(), verdict(cpu))
	fmt.Printf("  policy input with every target instead of fact classes: +%.3f s CPU for the conversion alone (estimated from %d releases)\n", fullEst.Seconds(), sample)
	return nil
}

func verdict(d time.Duration) string {
	if d <= time.Second {
		return "met"
	}
	return "missed"
}
