// Package fleetsim runs many cairn agents in one process, each with its own
// root folder and identity, against a real fleet API, with faults injected
// per device: failing health checks, crashes (at a chosen install step or
// at once, then a restart that recovers) and network outages. Tests and the
// fleet benchmark use it to stand in for a fleet of devices.
package fleetsim
