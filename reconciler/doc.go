// Package reconciler is cairn serve's control loop: it admits each commit
// the source fetches (decode, policies, plan), steps every admitted
// release's rollout, writes the changed desired states to the store and
// publishes them to the fleet API, and keeps Flux-style conditions on the
// source and on each release. Serve wires it with the store, the server and
// the built-in registry.
package reconciler
