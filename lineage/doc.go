// Package lineage owns cairn's lineage graph: commits, releases, model and
// dataset digests, targets and rollouts joined by typed, timestamped,
// append-only edges (declaredIn, trainedOn, evaluatedOn, packagedFrom,
// deployedTo, rolledBack) kept in the state database; the queries auditors
// ask (upstream, downstream, what ran on a target at a time, where anything
// derived from a digest runs), their HTTP API and client, and the export of
// every recorded step as an OpenLineage RunEvent.
package lineage
