package store

import (
	"context"
	"strconv"
	"time"
	"unsafe"

	"github.com/cairn-dev/cairn/errdef"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/record"
)

// ErrNotFound is returned when a record does not exist (errdef.ErrNotFound).
var ErrNotFound = errdef.ErrNotFound

// Target is one enrolled target with its last report.
type Target struct {
	ID     string
	Name   string
	Labels map[string]string
	Facts  fleet.Facts
	// CredHash is the hex SHA-256 of the target's credential.
	CredHash string
	// State is StateAccepted (the default), StatePending, StateRejected or
	// StateDeleted; only accepted targets are read and rolled out to.
	State string
	// PendingHash is a credential waiting for an admin's acceptance: a new
	// target's, or a second enrollment under an accepted target's name
	// (whose CredHash keeps working until then).
	PendingHash string
	EnrolledAt  time.Time
	LastSeen    time.Time // zero: never reported
	// Status is the last status report, nil before the first.
	Status    *fleet.StatusReport
	UpdatedAt time.Time
}

// TargetStamp is when a target last changed: UpdatedAt moves with every
// enrollment, change of state and status report (to the report's receive
// time).
type TargetStamp struct {
	ID        string
	State     string
	UpdatedAt time.Time
}

// Target states.
const (
	StateAccepted = "accepted"
	StatePending  = "pending"
	StateRejected = "rejected"
	StateDeleted  = "deleted"
)

// Desired is the desired state of one target: Body is the JSON of a
// fleet.DesiredState whose ETag field equals ETag. Rev orders writes.
//
// A state may leave Body nil and carry it in two parts instead: Head, its
// target's own, then Rest, the same string for every target desired the
// same state, so a fleet's states share one copy of it. The store keeps
// such a rest once (SQL.PutDesired); a state read by Desired has Body,
// one read by DesiredSince may come in two parts.
type Desired struct {
	Target string
	ETag   string
	Body   []byte
	Head   string
	Rest   string
	Rev    int64
}

// HeadOf is the head of target's desired state tagged etag, as the
// reconciler composes it and the fleet API serves it: {"target":"…",
// "etag":"…", and then the rest. The store keeps no copy of a head it can
// rebuild this way (SQL.PutDesired).
func HeadOf(target, etag string) string {
	b := AppendHead(make([]byte, 0, len(`{"target":"","etag":"",`)+len(target)+len(etag)), target, etag)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is not kept: one allocation, as strings.Builder
}

// AppendHead appends HeadOf(target, etag) to b.
func AppendHead(b []byte, target, etag string) []byte {
	b = append(b, `{"target":`...)
	b = strconv.AppendQuote(b, target)
	b = append(b, `,"etag":"`...)
	b = append(b, etag...)
	return append(b, `",`...)
}

// isHeadOf reports whether head is HeadOf(target, etag) for a target that
// needs no quoting (as every enrolled name does), without building it.
func isHeadOf(head, target, etag string) bool {
	const a, b, c = `{"target":"`, `","etag":"`, `",`
	if len(head) != len(a)+len(target)+len(b)+len(etag)+len(c) || !plain(target) || !plain(etag) {
		return false
	}
	return head[:len(a)] == a && head[len(a):len(a)+len(target)] == target &&
		head[len(a)+len(target):len(a)+len(target)+len(b)] == b &&
		head[len(a)+len(target)+len(b):len(head)-len(c)] == etag && head[len(head)-len(c):] == c
}

// plain reports whether s is printable ASCII with no quote or backslash,
// which strconv.Quote and JSON both leave as it is.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Text returns d's whole body.
func (d Desired) Text() string {
	if d.Body != nil {
		return string(d.Body)
	}
	return d.Head + d.Rest
}

// Release is the stored form of a release's record (record.Columns): Spec
// is the admitted snapshot, State the rollout engine's state and Status the
// conditions and counters shown by the status API, each JSON. Read and
// write records with PutRecord, Record and Records.
type Release struct {
	Name      string
	Commit    string
	Spec      []byte
	State     []byte
	Status    []byte
	UpdatedAt time.Time
}

// Store is the reconciler's state. Every implementation passes the contract
// suite of storetest.
type Store interface {
	// EnrollTarget creates the target or, when its ID exists, replaces its
	// name, labels, facts and credential hash.
	EnrollTarget(ctx context.Context, t Target) error
	// SetTargetAuth sets a target's state and credential hashes (accept,
	// reject, delete, rotate); ErrNotFound when it does not exist.
	SetTargetAuth(ctx context.Context, id, state, credHash, pendingHash string) error
	// PutPreauth keeps a one-time enrollment token hash for name (replacing
	// any); TakePreauth consumes it, reporting whether it matched.
	PutPreauth(ctx context.Context, name, tokenHash string) error
	TakePreauth(ctx context.Context, name, tokenHash string) (bool, error)
	Target(ctx context.Context, id string) (Target, error)
	Targets(ctx context.Context) ([]Target, error)
	// TargetsUpdatedSince returns targets enrolled or reporting at or after since.
	TargetsUpdatedSince(ctx context.Context, since time.Time) ([]Target, error)
	// TargetStampsSince returns the id, state and UpdatedAt of targets enrolled,
	// changed or reporting at or after since, without their contents;
	// TargetsByID reads those of ids (unknown ids are left out).
	TargetStampsSince(ctx context.Context, since time.Time) ([]TargetStamp, error)
	TargetsByID(ctx context.Context, ids []string) ([]Target, error)
	// PutStatus records a status report received at: last seen, the report,
	// facts when it carries them, and its log entries.
	PutStatus(ctx context.Context, id string, r fleet.StatusReport, at time.Time) error
	// Log returns the newest limit deployment log entries of a target, oldest first.
	Log(ctx context.Context, id string, limit int) ([]fleet.LogEntry, error)

	// PutDesired writes desired states in one transaction, giving them the
	// next revision, which it returns.
	PutDesired(ctx context.Context, ds []Desired) (int64, error)
	Desired(ctx context.Context, id string) (Desired, error)
	// DesiredSince returns desired states written after revision rev,
	// in no set order (a target's newest state only).
	DesiredSince(ctx context.Context, rev int64) ([]Desired, error)

	// PutRecord, Record and Records read and write a release's typed
	// record through its one codec (package record); the reconciler and
	// the status API use only these. A record that does not decode is
	// returned with Err set, and PutRecord refuses to overwrite with one.
	PutRecord(ctx context.Context, r record.Release) error
	Record(ctx context.Context, name string) (record.Release, error)
	Records(ctx context.Context) ([]record.Release, error)
	// PutRelease, Release and Releases move a record's stored columns as
	// they are (tests, fixtures and migrations).
	PutRelease(ctx context.Context, r Release) error
	Release(ctx context.Context, name string) (Release, error)
	Releases(ctx context.Context) ([]Release, error)
	DeleteRelease(ctx context.Context, name string) error

	// AddEvents appends events; their ID and, when zero, Time are set.
	AddEvents(ctx context.Context, evs []fleet.Event) error
	// Events returns the newest events matching f, oldest first.
	Events(ctx context.Context, f fleet.EventFilter) ([]fleet.Event, error)

	// PushCommand queues an operator command for a release.
	PushCommand(ctx context.Context, release, command string) error
	// TakeCommands removes and returns the pending commands, oldest first.
	TakeCommands(ctx context.Context) ([]Command, error)
	// Commands returns the pending commands, oldest first, leaving them
	// queued; ConsumeCommands removes those of ids, in the transaction of
	// the step that ran them (Atomic), so a command is run or stays queued.
	Commands(ctx context.Context) ([]Command, error)
	ConsumeCommands(ctx context.Context, ids []int64) error

	// Atomic runs fn in one write transaction: every write made with fn's
	// ctx — of the store, and of the lineage graph and the alert outbox,
	// which keep their tables in the same database — commits when fn
	// returns nil, and none does otherwise. A fenced ctx's lease term is
	// checked inside that transaction, before fn runs.
	Atomic(ctx context.Context, fn func(ctx context.Context) error) error

	// PutMeta and Meta keep small named values (source status, admitted commit).
	PutMeta(ctx context.Context, key string, value []byte) error
	Meta(ctx context.Context, key string) ([]byte, error)

	// Lead takes or renews the leader lease (a row with a holder, an expiry
	// and a fencing term) and returns it; see SQL.Lead.
	Lead(ctx context.Context) (Lease, error)
	// Fenced returns ctx under which the store's writes are refused with
	// ErrFenced once lease l has passed to another holder.
	Fenced(ctx context.Context, l Lease) context.Context
	Close() error
}

// Command is a pending operator command.
type Command struct {
	ID      int64
	Release string
	Command string
	Time    time.Time
}
