package cairn.digest_pinned_test

import data.cairn.digest_pinned

good := "registry.example:5000/models/a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

test_pinned_allowed if {
	count(digest_pinned.deny) == 0 with input as {
		"model": {"name": "a", "artifact": good, "spec": {}},
		"datasets": [{"name": "d", "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],
	}
}

test_tag_denied if {
	some msg in digest_pinned.deny with input as {
		"model": {"name": "a", "artifact": "registry.example:5000/models/a:latest", "spec": {}},
		"datasets": [],
	}
	contains(msg, "not pinned")
}

test_variant_tag_denied if {
	count(digest_pinned.deny) == 1 with input as {
		"model": {"name": "a", "artifact": good, "spec": {"variants": [{"platform": "linux/arm64", "artifact": "r/a:int8"}]}},
		"datasets": [],
	}
}

test_dataset_digest_denied if {
	count(digest_pinned.deny) == 1 with input as {
		"model": {"name": "a", "artifact": good, "spec": {}},
		"datasets": [{"name": "d", "digest": "md5:abc"}],
	}
}
