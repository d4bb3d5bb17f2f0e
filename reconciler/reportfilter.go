package reconciler

import (
	"encoding/json"
	"hash/maphash"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// reportSig is what the report filter keeps of a target's last report:
// the hash of what a settled pass reads of it (reportSum) and when it was
// received (UnixNano).
type reportSig struct {
	sum    uint64
	at     int64
	inputs bool // the report carries input windows
	// busy: a release of the report is not healthy, or installs a model
	busy bool
}

// reportFilter decides which status reports trigger a pass (Observe). Every
// report reaches the next pass through the inbox; only those that may
// change what a pass does ask for one at once. While every release is
// settled (noteSettled), a report that repeats the target's last one in
// what a pass reads (its releases' phases, digests and messages, its facts
// but disk free), or a target's first healthy one, triggers none: the next
// interval's pass takes it (reportMatters). It has the inbox's lock.
type reportFilter struct {
	seed maphash.Seed
	// sigs are the last reports by hash of the target's id: a collision
	// only costs a pass asked for or one not asked for sooner than the
	// interval.
	sigs map[uint64]reportSig
}

// sign returns the filter's key of target id and the signature of its
// report rep received at; it reads only the seed (no lock).
func (f *reportFilter) sign(id string, rep fleet.StatusReport, at time.Time) (uint64, reportSig) {
	sig := reportSig{sum: reportSum(f.seed, rep), at: at.UnixNano()}
	for _, s := range rep.Releases {
		sig.inputs = sig.inputs || s.Inputs != nil
		sig.busy = sig.busy || s.Phase != fleet.PhaseHealthy || s.Desired != ""
	}
	return maphash.String(f.seed, id), sig
}

// swap keeps sig as the last report of key unless an older one, and
// returns the one kept before; targets is the fleet's size (the filter
// starts over when it holds many more, of targets that left). Called with
// the inbox's lock held.
func (f *reportFilter) swap(key uint64, sig reportSig, targets int64) (reportSig, bool) {
	if f.sigs == nil || int64(len(f.sigs)) > 2*targets+1024 {
		f.sigs = map[uint64]reportSig{}
	}
	prev, seen := f.sigs[key]
	if !seen || sig.at > prev.at {
		f.sigs[key] = sig
	}
	return prev, seen
}

// reportMatters reports whether a report with signature sig, after the
// target's previous prev (seen: there is one since start), should trigger
// a pass: always unless the fleet is settled; when settled, one carrying
// input windows (drift), a target's first report since start that is not
// all healthy (a failure, a model being installed), and one that differs
// from the previous in what a pass reads or comes after a silence of half
// OfflineAfter (the target may have been offline). A settled pass only
// counts a healthy target and stamps when the fleet became healthy: those
// reports wait for the interval's pass, as reports another replica took
// always do.
func (r *Reconciler) reportMatters(sig, prev reportSig, seen bool) bool {
	switch {
	case !r.settled.Load() || sig.inputs:
		return true
	case !seen:
		return sig.busy
	}
	return prev.sum != sig.sum || time.Duration(sig.at-prev.at) > r.opts.OfflineAfter/2
}

// reportSum hashes what a pass reads of a report besides its metrics: each
// release's name, phase, digests and message, and the facts without disk
// free (which no pass reads).
func reportSum(seed maphash.Seed, rep fleet.StatusReport) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	for _, s := range rep.Releases {
		for _, v := range []string{s.Release, s.Phase, s.Digest, s.Desired, s.Previous, s.Message} {
			h.WriteString(v)
			h.WriteByte(0)
		}
		h.WriteByte(1)
	}
	if rep.Facts != nil {
		f := *rep.Facts
		f.DiskFree = 0
		b, err := json.Marshal(f)
		if err != nil {
			return 0 // never: the sum of a report that always triggers
		}
		h.WriteByte(2)
		h.Write(b)
	}
	return h.Sum64()
}

// noteSettled records, after a pass that committed, whether the fleet is
// settled: no release a report can move on sooner than the interval. A
// release is settled when it is not admitted (the pass does not step it;
// admission's inputs are phases and digests, which every changed report
// triggers on), suspended, or done rolling out (succeeded, rolled back,
// aborted) with no monitor and no evaluation. A rollout in progress or
// paused samples its gates' metrics on every report, a monitor watches
// every report's inputs: while one is, every report triggers a pass (at
// most one each MinGap, Run). Called with r.mu held.
func (r *Reconciler) noteSettled() {
	r.fleetSize.Store(int64(len(r.fleet.targets)))
	settled := !r.reload
	for _, rs := range r.releases {
		a := rs.admitted()
		if !settled || rs.rec.Err != nil || a == nil {
			continue
		}
		if a.Release.Spec.Monitor != nil || rs.candidate != nil {
			settled = false
			continue
		}
		if a.Release.Spec.Suspend {
			continue
		}
		switch rs.rec.Rollout.Phase {
		case rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhaseAborted:
		default:
			settled = false
		}
	}
	r.settled.Store(settled)
}
