package source

import (
	"net/http"
	"testing"
)

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	good := Sign(body, "s3cret")
	cases := []struct {
		name   string
		header http.Header
		secret string
		want   bool
	}{
		{"github", http.Header{"X-Hub-Signature-256": {good}}, "s3cret", true},
		{"generic", http.Header{"X-Cairn-Signature": {good}}, "s3cret", true},
		{"gitlab", http.Header{"X-Gitlab-Token": {"s3cret"}}, "s3cret", true},
		{"gitlab wrong", http.Header{"X-Gitlab-Token": {"nope"}}, "s3cret", false},
		{"wrong secret", http.Header{"X-Hub-Signature-256": {good}}, "other", false},
		{"no prefix", http.Header{"X-Hub-Signature-256": {good[7:]}}, "s3cret", false},
		{"not hex", http.Header{"X-Hub-Signature-256": {"sha256=zz"}}, "s3cret", false},
		{"unsigned", http.Header{}, "s3cret", false},
		{"no secret configured", http.Header{"X-Hub-Signature-256": {Sign(body, "")}}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := VerifySignature(c.header, body, c.secret); got != c.want {
				t.Fatalf("VerifySignature = %v, want %v", got, c.want)
			}
		})
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte("{}"), "sha256=00", "k")
	f.Fuzz(func(t *testing.T, body []byte, sig, secret string) {
		h := http.Header{"X-Hub-Signature-256": {sig}}
		if VerifySignature(h, body, secret) && sig != Sign(body, secret) && secret != "" {
			// Only the exact HMAC (any hex case) may pass.
			if len(sig) != len(Sign(body, secret)) {
				t.Fatalf("accepted %q", sig)
			}
		}
	})
}
