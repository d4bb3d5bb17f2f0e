# evaluation: a Release with spec.evaluation (its own or its Model's) is
# admitted only when the server scored its candidate digest on the holdout
# within maxAge (default 24h) and the verdict against the champion (the
# digest it runs live) passes: every metric within its min/max and no worse
# than the champion by more than maxDrop or maxRelativeDrop. Without live
# state (cairn plan without --server) it warns that it could not check.
package cairn.evaluation

ev := input.evaluation

name := input.release.name

warn contains msg if {
	ev
	not ev.available
	msg := sprintf("release %s: evaluation on %s not checked: no live state (use --server)", [name, ev.dataset])
}

deny contains msg if {
	ev.available
	ev.error
	msg := sprintf("release %s: evaluation results unavailable: %s", [name, ev.error])
}

deny contains msg if {
	ev.available
	not ev.error
	not ev.candidate.evaluated
	msg := sprintf("release %s: candidate %s not evaluated on %s yet (an evaluator agent runs it)", [name, ev.candidate.digest, ev.dataset])
}

deny contains msg if {
	ev.available
	ev.candidate.evaluated
	ev.candidate.error
	msg := sprintf("release %s: the evaluation of candidate %s on %s failed: %s", [name, ev.candidate.digest, ev.dataset, ev.candidate.error])
}

deny contains msg if {
	ev.available
	ev.candidate.evaluated
	age := input.now_ns - ev.candidate.timeNs
	age > ev.maxAgeNs
	msg := sprintf("release %s: candidate last evaluated on %s %s ago, needs within %s", [name, ev.dataset, duration(age), ev.maxAge])
}

deny contains msg if {
	ev.available
	not ev.error
	ev.champion
	not ev.champion.evaluated
	msg := sprintf("release %s: champion %s not evaluated on %s yet", [name, ev.champion.digest, ev.dataset])
}

deny contains msg if {
	ev.available
	ev.champion.evaluated
	ev.champion.error
	msg := sprintf("release %s: the evaluation of champion %s on %s failed: %s", [name, ev.champion.digest, ev.dataset, ev.champion.error])
}

deny contains msg if {
	some reason in ev.verdict.reasons
	msg := sprintf("release %s: evaluation on %s: %s", [name, ev.dataset, reason])
}

# duration renders nanoseconds as whole hours and minutes.
duration(ns) := sprintf("%dh%02dm", [floor(ns / 3600000000000), floor((ns % 3600000000000) / 60000000000)])
