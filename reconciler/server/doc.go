// Package server is cairn serve's HTTP side: the fleet API (enrollment,
// desired-state long-poll, status reports), the status API behind cairn get
// and describe, the Git webhook and built-in registry mounts, Prometheus
// metrics and health endpoints. It keeps no per-request state: desired states
// are cached from the store and refreshed from it, so replicas can share one
// database.
package server
