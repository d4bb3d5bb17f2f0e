package cairn.evaluation_test

import data.cairn.evaluation

hour := 3600000000000

now := 100 * hour

base := {
	"available": true, "dataset": "bearing-holdout", "maxAge": "24h0m0s", "maxAgeNs": 24 * hour,
	"candidate": {"digest": "sha256:cand", "evaluated": true, "metrics": {"auc": 0.97}, "timeNs": now - hour},
	"champion": {"digest": "sha256:champ", "evaluated": true, "metrics": {"auc": 0.95}, "timeNs": now - hour},
	"verdict": {"pass": true, "metrics": []},
}

input_with(ev) := {"release": {"name": "prod"}, "now_ns": now, "evaluation": ev}

test_no_evaluation_allowed if {
	count(evaluation.deny) == 0 with input as {"release": {"name": "prod"}, "now_ns": now}
	count(evaluation.warn) == 0 with input as {"release": {"name": "prod"}, "now_ns": now}
}

test_recent_and_no_worse_allowed if {
	count(evaluation.deny) == 0 with input as input_with(base)
	count(evaluation.warn) == 0 with input as input_with(base)
}

test_first_release_without_champion_allowed if {
	count(evaluation.deny) == 0 with input as input_with(object.remove(base, ["champion"]))
}

test_worse_candidate_denied_naming_the_metric if {
	ev := object.union(base, {"verdict": {"pass": false, "reasons": ["auc 0.81 is 0.14 below the champion's 0.95 (maxDrop 0.02)"]}})
	some msg in evaluation.deny with input as input_with(ev)
	msg == "release prod: evaluation on bearing-holdout: auc 0.81 is 0.14 below the champion's 0.95 (maxDrop 0.02)"
}

test_not_evaluated_denied if {
	ev := object.union(base, {"candidate": {"digest": "sha256:cand", "evaluated": false}})
	some msg in evaluation.deny with input as input_with(ev)
	contains(msg, "candidate sha256:cand not evaluated on bearing-holdout yet")
}

test_too_old_denied if {
	ev := object.union(base, {"candidate": {"digest": "sha256:cand", "evaluated": true, "metrics": {"auc": 0.97}, "timeNs": now - 30 * hour}})
	some msg in evaluation.deny with input as input_with(ev)
	contains(msg, "last evaluated on bearing-holdout 30h00m ago, needs within 24h0m0s")
}

test_failed_run_denied if {
	ev := object.union(base, {"candidate": {"digest": "sha256:cand", "evaluated": true, "error": "evaluate command output: nothing printed", "timeNs": now - hour}})
	some msg in evaluation.deny with input as input_with(ev)
	contains(msg, "failed: evaluate command output: nothing printed")
}

test_champion_not_evaluated_denied if {
	ev := object.union(base, {"champion": {"digest": "sha256:champ", "evaluated": false}})
	some msg in evaluation.deny with input as input_with(ev)
	contains(msg, "champion sha256:champ not evaluated")
}

test_results_unavailable_denied if {
	ev := object.union(base, {"error": "database is down", "candidate": {"digest": "sha256:cand", "evaluated": false}})
	count(evaluation.deny) == 1 with input as input_with(ev)
}

test_no_live_state_warns if {
	ev := {"available": false, "dataset": "bearing-holdout", "candidate": {"digest": "sha256:cand", "evaluated": false}}
	count(evaluation.deny) == 0 with input as input_with(ev)
	count(evaluation.warn) == 1 with input as input_with(ev)
}
