# release-owner: every Release names the team that answers for it
# (metadata.labels.owner), and its model carries a semantic version, never
# "latest": what reaches devices must be traceable to people and versions.
package cairn.release_owner

semver := `^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`

labels := object.get(input.release, "labels", {})

deny contains msg if {
	v := object.get(input.model.spec, "version", "")
	not regex.match(semver, v)
	msg := sprintf("model %s: version %q is not a semantic version (MAJOR.MINOR.PATCH)", [input.model.name, v])
}

deny contains msg if {
	object.get(labels, "owner", "") == ""
	msg := sprintf("release %s: metadata.labels.owner is missing: name the team that answers for it", [input.release.name])
}

warn contains msg if {
	not input.model.spec.trainedOn
	msg := sprintf("model %s: spec.trainedOn is empty: lineage cannot say what data trained it", [input.model.name])
}
