package server

import (
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestBucketAsLimiter: a bucket allows what rate.Limiter's Allow does, at
// the same times, for a few rates and bursts.
func TestBucketAsLimiter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		r     rate.Limit
		burst int
	}{{1, 10}, {5, 20}, {0.2, 1}, {1000, 1000}, {1, 0}, {rate.Inf, 0}} {
		t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
		lim := rate.NewLimiter(c.r, c.burst)
		var b bucket
		now := time.Duration(1)
		for i := range 2000 {
			now += time.Duration(rng.Int64N(int64(400 * time.Millisecond)))
			if i%100 == 0 {
				now += 30 * time.Second // a quiet spell: full again
			}
			want := lim.AllowN(t0.Add(now), 1)
			if got := b.take(int64(now), c.r, c.burst); got != want {
				t.Fatalf("rate %v burst %d, take %d at %s: %v, rate.Limiter %v", c.r, c.burst, i, now, got, want)
			}
		}
	}
}
