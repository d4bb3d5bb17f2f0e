# allowed-registries: model artifacts come only from registries (or
# registry/repository prefixes) listed in data.allowed_registries.
package cairn.allowed_registries

default allowed := []

allowed := data.allowed_registries

refs contains input.model.artifact

refs contains v.artifact if some v in object.get(input.model.spec, "variants", [])

# repo is the reference without its digest or tag: host/path.
repo(ref) := split(ref, "@")[0]

permitted(ref) if {
	some a in allowed
	r := repo(ref)
	r == a
}

permitted(ref) if {
	some a in allowed
	startswith(repo(ref), concat("", [trim_suffix(a, "/"), "/"]))
}

deny contains msg if {
	count(allowed) == 0
	msg := "no allowed_registries in the policy data (policies/*.yaml or *.json): every registry is refused"
}

deny contains msg if {
	count(allowed) > 0
	some ref in refs
	not permitted(ref)
	msg := sprintf("model %s: artifact %q is not from an allowed registry %v", [input.model.name, ref, allowed])
}
