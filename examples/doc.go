// Package examples holds cairn's worked example — the bearing dataset and
// model (examples/bearing), the demo runtime (examples/runtime), the example
// GitOps repository (examples/gitops) — and the test that runs `make demo`'s
// script end to end.
package examples
