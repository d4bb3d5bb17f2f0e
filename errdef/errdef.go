package errdef

import "errors"

// Sentinel errors. Packages wrap them with what was being done and the input
// (`read release demo: not found`); callers test them with errors.Is.
var (
	// ErrNotFound: no object under that name, key or digest.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch: bytes do not hash to the expected digest (or size).
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrPolicyDenied: a policy denied a Release (`cairn plan` exits 2).
	ErrPolicyDenied = errors.New("policy denied")
)
