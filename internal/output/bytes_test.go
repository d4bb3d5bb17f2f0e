package output_test

import (
	"fmt"
	"testing"

	"github.com/cairn-dev/cairn/internal/output"
)

func TestBytes(t *testing.T) {
	for _, c := range []struct {
		n       int64
		iec, si string
	}{
		{0, "0 B", "0 B"},
		{999, "999 B", "999 B"},
		{1000, "1000 B", "1.0 kB"},
		{1023, "1023 B", "1.0 kB"},
		{1024, "1.0 KiB", "1.0 kB"},
		{1536, "1.5 KiB", "1.5 kB"},
		{3 << 19, "1.5 MiB", "1.6 MB"},
		{1_200_000_000, "1.1 GiB", "1.2 GB"},
		{1 << 62, "4.0 EiB", "4.6 EB"},
	} {
		if got := output.Bytes(c.n); got != c.iec {
			t.Errorf("Bytes(%d) = %q, want %q", c.n, got, c.iec)
		}
		if got := output.BytesSI(c.n); got != c.si {
			t.Errorf("BytesSI(%d) = %q, want %q", c.n, got, c.si)
		}
	}
}

func ExampleBytes() {
	fmt.Println(output.Bytes(3 << 19))
	fmt.Println(output.BytesSI(1_200_000_000))
	// Output:
	// 1.5 MiB
	// 1.2 GB
}
