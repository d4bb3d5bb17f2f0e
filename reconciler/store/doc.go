// Package store keeps the reconciler's state — targets and their hashed
// credentials, inventory facts, per-target status and deployment logs,
// desired state with ETags, admitted releases and their rollout state,
// events, operator commands and the leader lease — behind one interface,
// with SQLite (embedded default) and PostgreSQL through internal/sqldb.
package store
