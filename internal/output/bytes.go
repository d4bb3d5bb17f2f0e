package output

import "fmt"

// Bytes renders a byte count in binary (IEC) units with one decimal:
// 1.5 MiB, 340.0 KiB, 12 B.
func Bytes(n int64) string { return humanBytes(n, 1024, "KMGTPE", "iB") }

// BytesSI renders a byte count in decimal (SI) units with one decimal:
// 1.2 GB, 340.0 kB, 12 B.
func BytesSI(n int64) string { return humanBytes(n, 1000, "kMGTPE", "B") }

// humanBytes renders n in the largest power of unit it reaches, naming the
// powers by prefixes (the first is unit itself) followed by suffix.
func humanBytes(n, unit int64, prefixes, suffix string) string {
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := unit, 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %c%s", float64(n)/float64(div), prefixes[exp], suffix)
}
