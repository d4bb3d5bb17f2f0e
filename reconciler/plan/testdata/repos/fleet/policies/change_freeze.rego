# A repository policy: always applied, with its own tests.
package cairn.change_freeze

warn contains msg if {
	input.targets.count > 10
	msg := sprintf("release %s reaches %d targets: tell the on-call", [input.release.name, input.targets.count])
}
