// Package rollout owns the rollout engine: for each admitted release whose
// model changed, it moves the release's targets through the waves of its
// RolloutPolicy, gated on bake time, health metrics, update windows and
// maxUnavailable, and aborts, pauses or rolls back on failure. Step is a pure
// function of its input, so the reconciler persists State and replays it.
package rollout
