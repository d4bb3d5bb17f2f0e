package cairn.promotion_test

import data.cairn.promotion

digest := "sha256:aaaa"

hour := 3600000000000

now := 100 * hour

release := {"name": "prod", "spec": {"after": {"release": "staging", "healthyFor": "24h0m0s"}}}

input_with(state) := {
	"release": release,
	"model": {"digest": digest},
	"now_ns": now,
	"lineage": {"available": true, "releases": {"staging": state}},
}

test_healthy_long_enough_allowed if {
	count(promotion.deny) == 0 with input as input_with({"digest": digest, "phase": "Succeeded", "healthySinceNs": now - 30 * hour})
	count(promotion.warn) == 0 with input as input_with({"digest": digest, "phase": "Succeeded", "healthySinceNs": now - 30 * hour})
}

test_no_after_allowed if {
	count(promotion.deny) == 0 with input as {"release": {"name": "x", "spec": {}}, "model": {"digest": digest}, "lineage": {"available": false}}
	count(promotion.warn) == 0 with input as {"release": {"name": "x", "spec": {}}, "model": {"digest": digest}, "lineage": {"available": false}}
}

test_too_recent_denied if {
	some msg in promotion.deny with input as input_with({"digest": digest, "phase": "Succeeded", "healthySinceNs": now - 2 * hour})
	contains(msg, "healthy on this digest for 2h00m, needs 24h0m0s")
}

test_other_digest_denied if {
	some msg in promotion.deny with input as input_with({"digest": "sha256:bbbb", "healthySinceNs": now - 30 * hour})
	contains(msg, "runs sha256:bbbb")
}

test_unhealthy_denied if {
	count(promotion.deny) == 1 with input as input_with({"digest": digest, "phase": "Progressing"})
}

test_unknown_release_denied if {
	count(promotion.deny) == 1 with input as {
		"release": release, "model": {"digest": digest}, "now_ns": now,
		"lineage": {"available": true, "releases": {}},
	}
}

test_no_live_state_warns if {
	count(promotion.deny) == 0 with input as {"release": release, "model": {"digest": digest}, "lineage": {"available": false}}
	count(promotion.warn) == 1 with input as {"release": release, "model": {"digest": digest}, "lineage": {"available": false}}
}
