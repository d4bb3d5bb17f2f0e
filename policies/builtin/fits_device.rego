# fits-device: every target the release selects meets the model's
# requirements: arch in requires.arch, memory at least requires.memory, and
# every accelerator of requires.accelerators. Targets come as classes of equal
# facts (see policies/README.md), so a message names one example and a count.
package cairn.fits_device

req := object.get(input.model, "requires", {})

who(c) := sprintf("target %s", [c.names[0]]) if c.count == 1

who(c) := sprintf("target %s and %d more", [c.names[0], c.count - 1]) if c.count > 1

# human renders bytes the way manifests write them: 512Mi, 8Gi.
human(b) := sprintf("%vGi", [b / 1073741824]) if {
	b % 1073741824 == 0
} else := sprintf("%vMi", [b / 1048576]) if {
	b % 1048576 == 0
} else := sprintf("%v bytes", [b])

deny contains msg if {
	arch := object.get(req, "arch", [])
	count(arch) > 0
	some c in input.targets.classes
	not c.facts.arch in arch
	msg := sprintf("%s: arch %q is not in the model's requires.arch %v", [who(c), object.get(c.facts, "arch", ""), arch])
}

deny contains msg if {
	need := object.get(req, "memoryBytes", 0)
	need > 0
	some c in input.targets.classes
	have := object.get(c.facts, "memory", 0)
	have > 0
	have < need
	msg := sprintf("%s: memory %s is below the model's requires.memory %s", [who(c), human(have), req.memory])
}

deny contains msg if {
	some acc in object.get(req, "accelerators", [])
	some c in input.targets.classes
	not acc in object.get(c.facts, "accelerators", [])
	msg := sprintf("%s: no accelerator %q (model requires %v)", [who(c), acc, req.accelerators])
}

warn contains msg if {
	object.get(req, "memoryBytes", 0) > 0
	some c in input.targets.classes
	object.get(c.facts, "memory", 0) == 0
	msg := sprintf("%s: memory unknown, cannot check requires.memory %s", [who(c), req.memory])
}
