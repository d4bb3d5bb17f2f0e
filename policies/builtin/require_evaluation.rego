# require-evaluation: the model is evaluated on at least one dataset it was
# not trained on, and on such datasets it meets every minimum of
# data.minimum_metrics (metric name → lowest acceptable value).
package cairn.require_evaluation

default minimums := {}

minimums := data.minimum_metrics

trained := {d | some d in object.get(input.model.spec, "trainedOn", [])}

independent := [e |
	some e in object.get(input.model.spec, "evaluatedOn", [])
	not e.dataset in trained
]

deny contains msg if {
	count(independent) == 0
	msg := sprintf("model %s: not evaluated on any dataset other than its training data %v", [input.model.name, sort([d | some d in trained])])
}

# best is the highest value of a metric over the independent evaluations.
best(metric) := max([v |
	some e in independent
	v := e.metrics[metric]
])

deny contains msg if {
	count(independent) > 0
	some metric, _ in minimums
	not best(metric)
	msg := sprintf("model %s: metric %s (minimum %v) is not reported on any held-out evaluation", [input.model.name, metric, minimums[metric]])
}

deny contains msg if {
	some metric, floor in minimums
	v := best(metric)
	v < floor
	msg := sprintf("model %s: %s %v on held-out data is below the minimum %v", [input.model.name, metric, v, floor])
}
