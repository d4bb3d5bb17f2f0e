# digest-pinned: every model artifact, variant and dataset is pinned by a
# sha256 digest, so what was reviewed is exactly what runs.
package cairn.digest_pinned

pinned_ref := `^[^@\s]+@sha256:[a-f0-9]{64}$`

pinned_digest := `^sha256:[a-f0-9]{64}$`

deny contains msg if {
	not regex.match(pinned_ref, input.model.artifact)
	msg := sprintf("model %s: artifact %q is not pinned by a sha256 digest (want host/repo@sha256:<64 hex>)", [input.model.name, input.model.artifact])
}

deny contains msg if {
	some v in object.get(input.model.spec, "variants", [])
	not regex.match(pinned_ref, v.artifact)
	msg := sprintf("model %s: variant %s artifact %q is not pinned by a sha256 digest", [input.model.name, v.platform, v.artifact])
}

deny contains msg if {
	some d in input.datasets
	not d.missing
	not regex.match(pinned_digest, d.digest)
	msg := sprintf("dataset %s: digest %q is not a sha256 digest", [d.name, d.digest])
}
