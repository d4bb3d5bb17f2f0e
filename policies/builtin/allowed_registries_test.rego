package cairn.allowed_registries_test

import data.cairn.allowed_registries

model(ref) := {"model": {"name": "a", "artifact": ref, "spec": {}}}

test_allowed_host if {
	count(allowed_registries.deny) == 0 with input as model("registry.example:5000/models/a@sha256:00")
		with data.allowed_registries as ["registry.example:5000"]
}

test_allowed_prefix if {
	count(allowed_registries.deny) == 0 with input as model("ghcr.io/acme/models/a@sha256:00")
		with data.allowed_registries as ["ghcr.io/acme"]
}

test_other_registry_denied if {
	some msg in allowed_registries.deny with input as model("docker.io/evil/a@sha256:00")
		with data.allowed_registries as ["registry.example:5000", "ghcr.io/acme"]
	contains(msg, "not from an allowed registry")
}

test_prefix_is_not_substring if {
	count(allowed_registries.deny) == 1 with input as model("ghcr.io/acme-evil/a@sha256:00")
		with data.allowed_registries as ["ghcr.io/acme"]
}

test_no_data_denied if {
	count(allowed_registries.deny) == 1 with input as model("registry.example:5000/models/a@sha256:00")
}
