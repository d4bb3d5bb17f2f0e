package server

import (
	"encoding/json"
	"sync"

	"github.com/cairn-dev/cairn/fleet"
)

// digestKey names one (release, digest) pair as checkDigests compares them.
func digestKey(release, digest string) string { return release + "\x00" + digest }

// interner keeps one copy of each string it was given: the (release,
// digest) pairs of a fleet are few, the targets naming them many.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

func (in *interner) get(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if in.m == nil {
		in.m = map[string]string{}
	}
	in.m[s] = s
	return s
}

// reportedKeys returns the (release, digest) pairs a report names, active,
// being installed or kept for rollback: what the next report of the same
// target may name without a new desired state.
func (s *Server) reportedKeys(rep fleet.StatusReport) []string {
	var out []string
	for _, rs := range rep.Releases {
		for _, d := range []string{rs.Digest, rs.Desired, rs.Previous} {
			if d != "" {
				out = append(out, s.keys.get(digestKey(rs.Release, d)))
			}
		}
	}
	return out
}

// desiredKeys returns the (release, digest) pairs of a desired state's body.
func (s *Server) desiredKeys(body []byte) []string {
	var d fleet.DesiredState
	if len(body) == 0 || json.Unmarshal(body, &d) != nil {
		return nil
	}
	out := make([]string, 0, len(d.Models))
	for _, m := range d.Models {
		out = append(out, s.keys.get(digestKey(m.Release, m.Digest)))
	}
	return out
}
