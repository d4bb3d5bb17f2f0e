package manifests_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/manifests"
)

const hex64 = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"

func TestCheckArtifact(t *testing.T) {
	for _, tc := range []struct {
		ref     string
		wantErr string // substring; "" means valid
		repo    string
	}{
		{"registry.example:5000/models/bearing-anomaly@sha256:" + hex64, "", "registry.example:5000/models/bearing-anomaly"},
		{"registry.example/m:1.4.0-int8@sha256:" + hex64, "", "registry.example/m"},
		{"localhost/m@sha256:" + hex64, "", "localhost/m"},
		{"127.0.0.1:5000/a/b/c_d__e.f-g@sha256:" + hex64, "", "127.0.0.1:5000/a/b/c_d__e.f-g"},
		{"[::1]:5000/m@sha256:" + hex64, "", "[::1]:5000/m"},
		{"registry.example/m:latest", "not pinned by digest", ""},
		{"registry.example/m@sha256:" + hex64[:63], "invalid artifact", ""},
		{"registry.example/m@sha256:" + strings.ToUpper(hex64), "invalid artifact", ""},
		{"registry.example/M@sha256:" + hex64, "invalid artifact", ""},
		{"m@sha256:" + hex64, "invalid artifact", ""},
		{"models/m@sha256:" + hex64, "registry host", ""},
		{"registry.example:99999/m@sha256:" + hex64, "port out of range", ""},
		{"https://registry.example/m@sha256:" + hex64, "invalid artifact", ""},
		{"registry.example/m@sha512:" + hex64 + hex64, "invalid artifact", ""},
		{"", "not pinned", ""},
	} {
		err := manifests.CheckArtifact(tc.ref)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("CheckArtifact(%q) = %v, want nil", tc.ref, err)
				continue
			}
			repo, dgst, err := manifests.SplitArtifact(tc.ref)
			if err != nil || repo != tc.repo || dgst != "sha256:"+hex64 {
				t.Errorf("SplitArtifact(%q) = %q, %q, %v", tc.ref, repo, dgst, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("CheckArtifact(%q) = %v, want error containing %q", tc.ref, err, tc.wantErr)
		}
	}
}

func TestCheckDigest(t *testing.T) {
	for _, tc := range []struct {
		d  string
		ok bool
	}{
		{"sha256:" + hex64, true},
		{hex64, false},
		{"sha256:" + hex64 + "0", false},
		{"sha256:" + strings.ToUpper(hex64), false},
		{"sha512:" + hex64, false},
		{"", false},
	} {
		if err := manifests.CheckDigest(tc.d); (err == nil) != tc.ok {
			t.Errorf("CheckDigest(%q) = %v, want ok=%v", tc.d, err, tc.ok)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want time.Duration
		ok   bool
	}{
		{"30m", 30 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"7d", 7 * 24 * time.Hour, true},
		{"0s", 0, true},
		{"-1h", 0, false},
		{"-1d", 0, false},
		{"1w", 0, false},
		{"30", 0, false},
		{"d", 0, false},
		{"", 0, false},
	} {
		got, err := manifests.ParseDuration(tc.s)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", tc.s, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseQuantity(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want int64
		ok   bool
	}{
		{"256Mi", 256 << 20, true},
		{"1.5Gi", 3 << 29, true},
		{"4G", 4e9, true},
		{"1024", 1024, true},
		{"0", 0, true},
		{"256MB", 0, false},
		{"-1Gi", 0, false},
		{"1e3", 0, false},
		{"Mi", 0, false},
		{"", 0, false},
		{"99999999Pi", 0, false},
	} {
		got, err := manifests.ParseQuantity(tc.s)
		if (err == nil) != tc.ok || got.Bytes != tc.want {
			t.Errorf("ParseQuantity(%q) = %v, %v; want %d, ok=%v", tc.s, got.Bytes, err, tc.want, tc.ok)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	from := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		expr string
		next time.Time // zero when invalid
	}{
		{"0 2 * * *", time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)},
		{"30 1 * * 1-5", time.Date(2026, 11, 26, 1, 30, 0, 0, time.UTC)},
		{"*/15 * * * *", time.Date(2026, 11, 25, 12, 15, 0, 0, time.UTC)},
		{"0 0 2 * * *", time.Time{}},
		{"@daily", time.Time{}},
		{"TZ=UTC 0 2 * * *", time.Time{}},
		{"0 25 * * *", time.Time{}},
		{"", time.Time{}},
	} {
		s, err := manifests.ParseSchedule(tc.expr)
		switch {
		case tc.next.IsZero() && err == nil:
			t.Errorf("ParseSchedule(%q) accepted", tc.expr)
		case !tc.next.IsZero() && err != nil:
			t.Errorf("ParseSchedule(%q) = %v", tc.expr, err)
		case !tc.next.IsZero() && !s.Next(from).Equal(tc.next):
			t.Errorf("ParseSchedule(%q).Next = %v, want %v", tc.expr, s.Next(from), tc.next)
		}
	}
}

func TestCheckTimeZone(t *testing.T) {
	for _, tc := range []struct {
		tz string
		ok bool
	}{
		{"device", true}, {"UTC", true}, {"Europe/Berlin", true}, {"America/Argentina/Buenos_Aires", true},
		{"", false}, {"Local", false}, {"utc", false}, {"Mars/Base", false}, {"../../etc/passwd", false}, {"/etc/localtime", false},
	} {
		if err := manifests.CheckTimeZone(tc.tz); (err == nil) != tc.ok {
			t.Errorf("CheckTimeZone(%q) = %v, want ok=%v", tc.tz, err, tc.ok)
		}
	}
}

func TestResolveMaxUnavailable(t *testing.T) {
	for _, tc := range []struct {
		v     string
		total int
		want  int
		ok    bool
	}{
		{"", 40, 40, true},
		{"3", 40, 3, true},
		{"10%", 40, 4, true},
		{"10%", 41, 5, true},
		{"1%", 3, 1, true},
		{"100%", 7, 7, true},
		{"0", 10, 0, false},
		{"0%", 10, 0, false},
		{"101%", 10, 0, false},
		{"-1", 10, 0, false},
		{"ten", 10, 0, false},
		{"2.5", 10, 0, false},
	} {
		got, err := manifests.ResolveMaxUnavailable(tc.v, tc.total)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ResolveMaxUnavailable(%q, %d) = %d, %v; want %d, ok=%v", tc.v, tc.total, got, err, tc.want, tc.ok)
		}
	}
}

func TestCheckPlatform(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"linux/arm64", true}, {"linux/amd64+cuda", true}, {"linux/arm/v7", true}, {"linux/arm64+jetson-orin", true},
		{"arm64", false}, {"linux/aarch64", false}, {"Linux/arm64", false}, {"linux/arm64+", false}, {"", false},
	} {
		if err := manifests.CheckPlatform(tc.p); (err == nil) != tc.ok {
			t.Errorf("CheckPlatform(%q) = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func TestSelectorMatches(t *testing.T) {
	sel := manifests.LabelSelector{
		MatchLabels: map[string]string{"env": "prod"},
		MatchExpressions: []manifests.LabelSelectorRequirement{
			{Key: "os.version", Operator: manifests.OpIn, Values: []string{"5.1", "5.2"}},
			{Key: "quarantined", Operator: manifests.OpDoesNotExist},
		},
	}
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"env": "prod", "os.version": "5.1"}, true},
		{map[string]string{"env": "prod", "os.version": "5.3"}, false},
		{map[string]string{"env": "staging", "os.version": "5.1"}, false},
		{map[string]string{"env": "prod", "os.version": "5.1", "quarantined": "yes"}, false},
		{nil, false},
	} {
		if got := sel.Matches(tc.labels); got != tc.want {
			t.Errorf("Matches(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}

func TestShortDigest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sha256:" + hex64, "sha256:2d711642b726"},
		{"sha256:2d711642b726", "sha256:2d711642b726"},
		{"sha256:2d711642b726b", "sha256:2d711642b726"},
		{"", ""},
		{hex64, hex64},
	} {
		if got := manifests.ShortDigest(tc.in); got != tc.want {
			t.Errorf("ShortDigest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
