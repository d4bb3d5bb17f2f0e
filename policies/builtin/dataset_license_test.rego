package cairn.dataset_license_test

import data.cairn.dataset_license

test_allowed_license if {
	count(dataset_license.deny) == 0 with input as {"datasets": [
		{"name": "a", "license": "CC-BY-4.0"},
		{"name": "b", "license": "MIT"},
	]}
		with data.license_allowlist as ["CC-BY-4.0", "MIT"]
}

test_other_license_denied if {
	some msg in dataset_license.deny with input as {"datasets": [{"name": "a", "license": "CC-BY-NC-4.0"}]}
		with data.license_allowlist as ["CC-BY-4.0"]
	contains(msg, "not in the allowlist")
}

test_missing_license_denied if {
	some msg in dataset_license.deny with input as {"datasets": [{"name": "a"}]}
		with data.license_allowlist as ["CC-BY-4.0"]
	contains(msg, "no license declared")
}

test_empty_allowlist_denies if {
	count(dataset_license.deny) == 1 with input as {"datasets": [{"name": "a", "license": "MIT"}]}
}

test_undeclared_dataset_denied if {
	count(dataset_license.deny) == 1 with input as {"datasets": [{"name": "a", "missing": true}]}
		with data.license_allowlist as ["MIT"]
}
