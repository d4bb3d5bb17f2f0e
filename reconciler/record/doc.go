// Package record is the one typed record the reconciler keeps per release
// (the admitted snapshot, the rollout state and the status with its
// conditions, counters and healthy-since) and its codec, the only code that
// reads or writes a release's stored form.
package record
