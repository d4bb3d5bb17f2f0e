package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// TestDescribeTargetEscapesDeviceStrings: facts and messages a device
// reports reach the terminal with their control characters escaped.
func TestDescribeTargetEscapesDeviceStrings(t *testing.T) {
	ti := &fleet.TargetInfo{Name: "dev-1", EnrolledAt: time.Now()}
	ti.Facts.OS = "linux"
	ti.Facts.OSVersion = "6.1\x1b[2J\x1b]0;pwned\a"
	ti.Releases = []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseFailed, Message: "boom\x1b[31m"}}
	ti.Log = []fleet.LogEntry{{Time: time.Now(), Release: "r", Phase: "Failed", Message: "log\x1b[1A"}}
	var b strings.Builder
	if err := describeTarget(&b, ti); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\a") {
		t.Fatalf("raw control characters reached the terminal:\n%q", out)
	}
	for _, want := range []string{`6.1\x1b[2J\x1b]0;pwned\a`, `boom\x1b[31m`, `log\x1b[1A`} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
}
