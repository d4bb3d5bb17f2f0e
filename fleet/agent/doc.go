// Package agent is the device side of the fleet protocol: it enrolls once,
// long-polls its desired state, installs each release's model into an
// inactive slot, switches to it atomically, checks its health, rolls back to
// the previous slot on failure and reports phase, metrics and a log of the
// deployment steps. A journal makes every step crash-safe: after a SIGKILL or
// power loss the agent comes back to the previous model and resumes.
//
// The files driver (Files) installs into folders under the agent's root.
package agent
