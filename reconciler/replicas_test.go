package reconciler

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/testenv"
)

// freshPostgres creates an empty database on the test server.
func freshPostgres(t *testing.T) string { return testenv.PostgresDatabase(t, "serve") }

// Two replicas on one PostgreSQL: one leads the reconcile loop, both serve
// the fleet API, and a target enrolled through one reads its desired state
// from the other.
func TestServeTwoReplicasOnPostgres(t *testing.T) {
	dsn := freshPostgres(t)
	repo, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	cfg := Config{Repo: repo, Interval: Duration(300 * time.Millisecond), Database: dsn, EnrollToken: "enroll-secret",
		AdminToken: "admin-secret", ReconcileInterval: Duration(200 * time.Millisecond)}
	a := startServe(t, cfg)
	b := startServe(t, cfg)
	ca, cb := fleet.NewClient(a), fleet.NewClient(b)
	er := enroll(t, ca, "dev-a")
	waitDigest(t, cb, er, digestOf(1), 15*time.Second)
	commitPush(t, work, manifestsFor(2), "v2")
	waitDigest(t, cb, er, digestOf(2), 15*time.Second)
	waitDigest(t, ca, er, digestOf(2), 15*time.Second)
	for _, base := range []string{a, b} {
		rs, err := fleet.NewAdminClient(base, "admin-secret").Releases(context.Background())
		if err != nil || len(rs) != 1 || rs[0].Digest != digestOf(2) {
			t.Fatalf("%s releases = %+v, %v", base, rs, err)
		}
	}
}
