// Package plan computes the desired state of every target for a snapshot, the
// rollout waves each release reaches them in, and the difference between two
// commits or against the live fleet: what `cairn plan` prints and what the
// reconciler admits.
package plan
