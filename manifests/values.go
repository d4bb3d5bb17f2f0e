package manifests

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/cairn-dev/cairn/digest"
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

// Kinds returns the kinds of cairn.dev/v1alpha1 in the order they are usually declared.
func Kinds() []string {
	return []string{KindDataset, KindModel, KindDeviceProfile, KindRolloutPolicy, KindRelease, KindAlert}
}

var (
	// artifactRE is host[:port]/path[:tag]@sha256:<64 hex>, with the OCI
	// distribution grammar for path components.
	artifactRE = regexp.MustCompile(`^(` +
		`(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*` + // host
		`|\[[0-9a-fA-F:]+\])` + // or [IPv6]
		`(:[0-9]{1,5})?` + // port
		`((?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)` + // path
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` + // tag
		`@(sha256:[0-9a-f]{64})$`)
)

// CheckDigest reports whether d is a sha256 digest: sha256:<64 lowercase hex>.
//
// Deprecated: use digest.Check.
func CheckDigest(d string) error { return digest.Check(d) }

// ShortDigest abbreviates a digest to its algorithm and the first 12 hex
// digits (sha256:2d711642b726) for messages; anything else is returned as is.
//
// Deprecated: use digest.Short.
func ShortDigest(d string) string { return digest.Digest(d).Short() }

// CheckArtifact reports whether ref is an OCI reference pinned by digest:
// host[:port]/path[:tag]@sha256:<64 hex>. The host must look like one (a dot,
// a port or localhost), so Docker Hub shorthands are refused.
func CheckArtifact(ref string) error {
	m := artifactRE.FindStringSubmatch(ref)
	if m == nil {
		if !strings.Contains(ref, "@") {
			return fmt.Errorf("artifact %q is not pinned by digest: want host[:port]/path@sha256:<64 hex>", ref)
		}
		return fmt.Errorf("invalid artifact %q: want host[:port]/path@sha256:<64 hex>", ref)
	}
	host, port := m[1], m[2]
	if port == "" && host != "localhost" && !strings.ContainsAny(host, ".:") {
		return fmt.Errorf("invalid artifact %q: the first path component must be a registry host (with a dot or a port, or localhost)", ref)
	}
	if port != "" {
		if p, _ := strconv.Atoi(port[1:]); p < 1 || p > 65535 {
			return fmt.Errorf("invalid artifact %q: port out of range", ref)
		}
	}
	return nil
}

// SplitArtifact splits a digest-pinned reference checked by CheckArtifact
// into its repository (host[:port]/path, without tag) and digest.
func SplitArtifact(ref string) (repository, digest string, err error) {
	if err := CheckArtifact(ref); err != nil {
		return "", "", err
	}
	m := artifactRE.FindStringSubmatch(ref)
	return m[1] + m[2] + m[3], m[4], nil
}

// ParseSchedule parses the five-field cron expression of an update window
// (minute hour day-of-month month day-of-week), the way the rollout engine
// reads it. Descriptors (@daily) and TZ= prefixes are refused: the zone is
// the window's timeZone.
func ParseSchedule(expr string) (cron.Schedule, error) {
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("invalid schedule %q: set timeZone instead of a TZ= prefix", expr)
	}
	s, err := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid schedule %q: want five cron fields (minute hour day month weekday): %v", expr, err)
	}
	return s, nil
}

// TimeZoneDevice is the window timeZone meaning each target's own zone.
const TimeZoneDevice = "device"

// CheckTimeZone reports whether tz is "device", "UTC" or an IANA zone name.
func CheckTimeZone(tz string) error {
	if tz == TimeZoneDevice || tz == "UTC" {
		return nil
	}
	if tz == "" || tz == "Local" || strings.HasPrefix(tz, "/") || strings.Contains(tz, "..") {
		return fmt.Errorf("invalid timeZone %q: want device, UTC or an IANA name such as Europe/Berlin", tz)
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return fmt.Errorf("invalid timeZone %q: want device, UTC or an IANA name such as Europe/Berlin", tz)
	}
	return nil
}

// ResolveMaxUnavailable turns a maxUnavailable value ("3" or "10%") into a
// count of targets out of total, rounding percents up and never below 1.
// An empty value means no bound beyond the wave: total.
func ResolveMaxUnavailable(v string, total int) (int, error) {
	if v == "" {
		return total, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 {
			return 0, fmt.Errorf("invalid maxUnavailable %q: want a count such as 3 or a percent between 1%% and 100%%", v)
		}
		return max(1, (total*n+99)/100), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("invalid maxUnavailable %q: want a count such as 3 or a percent between 1%% and 100%%", v)
	}
	return n, nil
}
