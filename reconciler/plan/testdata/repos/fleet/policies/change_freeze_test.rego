package cairn.change_freeze_test

import data.cairn.change_freeze

test_small_allowed if {
	count(change_freeze.warn) == 0 with input as {"release": {"name": "r"}, "targets": {"count": 3}}
}

test_large_warns if {
	count(change_freeze.warn) == 1 with input as {"release": {"name": "r"}, "targets": {"count": 30}}
}
