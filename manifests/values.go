package manifests

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("30m",
// "1h30m") in manifests. Days are accepted as a suffix ("7d").
type Duration struct{ time.Duration }

// ParseDuration parses a manifest duration: a Go duration, or a whole number
// of days followed by "d".
func ParseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as 30m or 1h30m", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", s)
	}
	return d, nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as 30m")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// String renders the duration, "0s" when zero.
func (d Duration) String() string { return d.Duration.String() }

// Quantity is an amount of bytes written the Kubernetes way ("256Mi", "4G",
// "1024").
type Quantity struct {
	Bytes int64
	text  string
}

var quantitySuffixes = []struct {
	suffix string
	mult   float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15},
}

// ParseQuantity parses a byte quantity such as 256Mi, 1.5Gi, 4G or 1024.
func ParseQuantity(s string) (Quantity, error) {
	num, mult := s, 1.0
	for _, q := range quantitySuffixes {
		if strings.HasSuffix(s, q.suffix) {
			num, mult = strings.TrimSuffix(s, q.suffix), q.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || num == "" || strings.ContainsAny(num, "eE+xXpP_") {
		return Quantity{}, fmt.Errorf("invalid quantity %q: want a number of bytes with an optional suffix such as 256Mi or 4G", s)
	}
	b := f * mult
	if b > math.MaxInt64/2 {
		return Quantity{}, fmt.Errorf("invalid quantity %q: too large", s)
	}
	return Quantity{Bytes: int64(b), text: s}, nil
}

// MustQuantity is ParseQuantity for literals known to be valid.
func MustQuantity(s string) Quantity {
	q, err := ParseQuantity(s)
	if err != nil {
		panic(err)
	}
	return q
}

// IsZero reports whether no quantity was given.
func (q Quantity) IsZero() bool { return q.Bytes == 0 && q.text == "" }

// String renders the quantity as written, or in bytes.
func (q Quantity) String() string {
	if q.text != "" {
		return q.text
	}
	return strconv.FormatInt(q.Bytes, 10)
}

// MarshalJSON writes the quantity as written in the manifest.
func (q Quantity) MarshalJSON() ([]byte, error) { return json.Marshal(q.String()) }

// UnmarshalJSON reads a quantity string or a plain number of bytes.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("quantity must be a string such as 256Mi or a number of bytes")
		}
		s = n.String()
	}
	v, err := ParseQuantity(s)
	if err != nil {
		return err
	}
	*q = v
	return nil
}
