package cairn.require_evaluation_test

import data.cairn.require_evaluation

model(evals) := {"model": {"name": "m", "spec": {"trainedOn": ["train"], "evaluatedOn": evals}}}

test_held_out_allowed if {
	count(require_evaluation.deny) == 0 with input as model([{"dataset": "holdout", "metrics": {"auc": 0.94}}])
		with data.minimum_metrics as {"auc": 0.9}
}

test_no_minimums_allowed if {
	count(require_evaluation.deny) == 0 with input as model([{"dataset": "holdout"}])
}

test_training_only_denied if {
	some msg in require_evaluation.deny with input as model([{"dataset": "train", "metrics": {"auc": 0.99}}])
	contains(msg, "not evaluated on any dataset other than its training data")
}

test_no_evaluation_denied if {
	count(require_evaluation.deny) == 1 with input as model([])
}

test_below_minimum_denied if {
	some msg in require_evaluation.deny with input as model([{"dataset": "holdout", "metrics": {"auc": 0.81}}])
		with data.minimum_metrics as {"auc": 0.9}
	contains(msg, "below the minimum")
}

test_training_metrics_do_not_count if {
	count(require_evaluation.deny) == 1 with input as model([
		{"dataset": "train", "metrics": {"auc": 0.99}},
		{"dataset": "holdout", "metrics": {"auc": 0.5}},
	])
		with data.minimum_metrics as {"auc": 0.9}
}

test_missing_metric_denied if {
	some msg in require_evaluation.deny with input as model([{"dataset": "holdout", "metrics": {"f1": 0.9}}])
		with data.minimum_metrics as {"auc": 0.9}
	contains(msg, "not reported")
}
