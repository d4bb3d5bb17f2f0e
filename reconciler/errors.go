package reconciler

import (
	"errors"
	"fmt"
	"time"
)

// Stalling is an error that retrying will not mend without a new commit or
// an operator: the release (or source) gets Stalled=True with Reason.
type Stalling struct {
	Reason string
	Err    error
}

func (e *Stalling) Error() string { return e.Err.Error() }
func (e *Stalling) Unwrap() error { return e.Err }

// Waiting is an error that the next pass may mend: Ready=False with Reason,
// not stalled, and a pass again within RequeueAfter (zero: the next
// interval).
type Waiting struct {
	Reason       string
	RequeueAfter time.Duration
	Err          error
}

func (e *Waiting) Error() string { return e.Err.Error() }
func (e *Waiting) Unwrap() error { return e.Err }

// stalling and waiting build the two with a formatted message.
func stalling(reason, format string, args ...any) error {
	return &Stalling{Reason: reason, Err: fmt.Errorf(format, args...)}
}

func waiting(reason string, after time.Duration, format string, args ...any) error {
	return &Waiting{Reason: reason, RequeueAfter: after, Err: fmt.Errorf(format, args...)}
}

// markError sets the conditions an error calls for: Stalled for Stalling,
// Ready=False for Waiting and for any other error (reason Failed).
func markError(s *Status, err error) {
	var st *Stalling
	var w *Waiting
	switch {
	case errors.As(err, &st):
		markFailed(s, true, st.Reason, "%s", err)
	case errors.As(err, &w):
		markFailed(s, false, w.Reason, "%s", err)
	default:
		markFailed(s, false, ReasonFailed, "%s", err)
	}
}

// requeueOf is the requeue an error asks for (0: none sooner than usual).
func requeueOf(err error) time.Duration {
	var w *Waiting
	if errors.As(err, &w) {
		return w.RequeueAfter
	}
	return 0
}
