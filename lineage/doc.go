// Package lineage owns cairn's lineage graph: commits, releases, model and
// dataset digests, targets and rollouts joined by typed, timestamped,
// append-only edges (declaredIn, trainedOn, evaluatedOn, packagedFrom,
// deployedTo, rolledBack) kept in the state database; the queries auditors
// ask (upstream, downstream, what ran on a target at a time, where anything
// derived from a digest runs), their HTTP API and client, and the export of
// every recorded step as an OpenLineage RunEvent.
//
// Nothing is ever updated: a deployment is a deployedTo start event and,
// when it ends explicitly (rollback, target leaving the release), a
// separate end event; a later start on the same target and release ends
// the previous one implicitly. At walks a target's events backwards from
// the asked time. Replays insert nothing: edges are unique over (type,
// nodes, time, phase, outcome, release) and steps over a UUIDv5 of their
// facts.
package lineage
