// Package testenv tells tests where the real servers started by
// scripts/test.sh listen (registry, MinIO, PostgreSQL, git), skipping a test
// when one is absent on a developer's machine and failing it under CI, where
// every server must run.
package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-dev/cairn/internal/sqldb"
)

// Variables exported by scripts/services/*.sh.
const (
	Registry = "CAIRN_TEST_REGISTRY"     // host:port of Debian's docker-registry (plain HTTP)
	MinIO    = "CAIRN_TEST_MINIO"        // host:port of MinIO; credentials in MinIOUser/MinIOPass
	Postgres = "CAIRN_TEST_POSTGRES_URL" // postgres://… URL of a database the test may use
	Chromium = "CAIRN_TEST_CHROMIUM"     // path of Debian's chromium, for the dashboard's browser test
	// Kube and KubeKServe are admin kubeconfigs of two kube-apiservers
	// (scripts/services/kube.sh): the first never has KServe's CRD, tests
	// install a minimal InferenceService CRD on the second.
	Kube       = "CAIRN_TEST_KUBECONFIG"
	KubeKServe = "CAIRN_TEST_KUBECONFIG_KSERVE"
	// MinIOUser and MinIOPass are MinIO's root credentials.
	MinIOUser = "CAIRN_TEST_MINIO_USER"
	MinIOPass = "CAIRN_TEST_MINIO_PASSWORD"
)

// Require returns the value of the environment variable name. When it is not
// set the test is skipped, or fails when CI=true: CI must run every server.
func Require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: scripts/test.sh must start its server under CI", name)
		}
		t.Skipf("%s is not set: run `make test` to start the real server", name)
	}
	return v
}

// PostgresDatabase creates an empty database, named prefix_<random>, on the
// PostgreSQL server of Require(t, Postgres) and returns its URL.
func PostgresDatabase(t testing.TB, prefix string) string {
	t.Helper()
	u, _, err := sqldb.CreateDatabase(context.Background(), Require(t, Postgres), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Databases gives, for each kind of state database the contract tests
// cover, a function that makes a fresh one and returns its DSN: "sqlite" (a
// file in t.TempDir()) and "postgres" (PostgresDatabase(t, prefix), skipped
// when the server does not run).
func Databases(prefix string) map[string]func(t testing.TB) string {
	return map[string]func(t testing.TB) string{
		"sqlite":   func(t testing.TB) string { return filepath.Join(t.TempDir(), "cairn.db") },
		"postgres": func(t testing.TB) string { return PostgresDatabase(t, prefix) },
	}
}
