# dataset-license: every dataset the model was trained or evaluated on has a
# license in data.license_allowlist (SPDX identifiers, compared exactly).
package cairn.dataset_license

default allowlist := []

allowlist := data.license_allowlist

deny contains msg if {
	some d in input.datasets
	not d.missing
	object.get(d, "license", "") == ""
	msg := sprintf("dataset %s: no license declared (allowed: %v)", [d.name, allowlist])
}

deny contains msg if {
	some d in input.datasets
	l := object.get(d, "license", "")
	l != ""
	not l in allowlist
	msg := sprintf("dataset %s: license %q is not in the allowlist %v", [d.name, l, allowlist])
}

deny contains msg if {
	some d in input.datasets
	d.missing
	msg := sprintf("dataset %s: referenced by the model but not declared in the repository", [d.name])
}
