package schematest_test

import (
	"testing"

	"github.com/cairn-dev/cairn/internal/schematest"
)

func TestPathSkipsWhenAbsent(t *testing.T) {
	var sub *testing.T
	t.Run("absent", func(t *testing.T) {
		sub = t
		schematest.Path(t, "no-such/schema.json")
		t.Error("Path returned for a missing schema")
	})
	if !sub.Skipped() {
		t.Error("a missing schema did not skip the test")
	}
}
