package cairn.release_owner_test

import data.cairn.release_owner

doc(version, labels) := {
	"release": {"name": "r", "labels": labels},
	"model": {"name": "m", "spec": {"version": version, "trainedOn": ["d"]}},
}

test_allowed if {
	count(release_owner.deny) == 0 with input as doc("1.4.0", {"owner": "reliability"})
	count(release_owner.warn) == 0 with input as doc("1.4.0", {"owner": "reliability"})
}

test_prerelease_allowed if {
	count(release_owner.deny) == 0 with input as doc("2.0.0-rc.1", {"owner": "reliability"})
}

test_latest_denied if {
	some msg in release_owner.deny with input as doc("latest", {"owner": "reliability"})
	contains(msg, "not a semantic version")
}

test_missing_owner_denied if {
	some msg in release_owner.deny with input as doc("1.0.0", {})
	contains(msg, "owner is missing")
}

test_no_training_data_warns if {
	doc2 := {"release": {"name": "r", "labels": {"owner": "x"}}, "model": {"name": "m", "spec": {"version": "1.0.0"}}}
	some msg in release_owner.warn with input as doc2
	contains(msg, "trainedOn is empty")
}
