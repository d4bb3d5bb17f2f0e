# promotion: a Release with `after: {release, healthyFor}` is admitted only
# when that release has run the same model digest, healthy, for at least
# healthyFor. It needs the live state (cairn plan --server, or the
# reconciler); without it, it warns that it could not check.
package cairn.promotion

after := input.release.spec.after

state := input.lineage.releases[after.release]

need_ns := time.parse_duration_ns(after.healthyFor)

warn contains msg if {
	after
	not input.lineage.available
	msg := sprintf("release %s: promotion after %s for %s not checked: no live state (use --server)", [input.release.name, after.release, after.healthyFor])
}

deny contains msg if {
	after
	input.lineage.available
	not input.lineage.releases[after.release]
	msg := sprintf("release %s: promotion needs %s healthy for %s, but %s has no live state", [input.release.name, after.release, after.healthyFor, after.release])
}

deny contains msg if {
	after
	state.digest != input.model.digest
	msg := sprintf("release %s: %s runs %s, not %s: promote only what was proven there", [input.release.name, after.release, state.digest, input.model.digest])
}

deny contains msg if {
	after
	state.digest == input.model.digest
	object.get(state, "healthySinceNs", 0) == 0
	msg := sprintf("release %s: %s is not healthy on %s (phase %s)", [input.release.name, after.release, input.model.digest, object.get(state, "phase", "unknown")])
}

deny contains msg if {
	after
	state.digest == input.model.digest
	since := object.get(state, "healthySinceNs", 0)
	since > 0
	input.now_ns - since < need_ns
	msg := sprintf("release %s: %s healthy on this digest for %s, needs %s", [input.release.name, after.release, duration(input.now_ns - since), after.healthyFor])
}

# duration renders nanoseconds as whole hours and minutes.
duration(ns) := sprintf("%dh%02dm", [floor(ns / 3600000000000), floor((ns % 3600000000000) / 60000000000)])
