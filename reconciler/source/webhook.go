package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
)

// maxHookBody bounds a webhook body (GitHub sends up to 25 MB; cairn reads
// nothing of it but the signature).
const maxHookBody = 25 << 20

// VerifySignature checks a webhook's signature over body with secret:
// GitHub's X-Hub-Signature-256 or cairn's X-Cairn-Signature
// ("sha256=<hex HMAC-SHA256>"), or GitLab's X-Gitlab-Token shared secret.
func VerifySignature(h http.Header, body []byte, secret string) bool {
	if secret == "" {
		return false
	}
	for _, name := range []string{"X-Hub-Signature-256", "X-Cairn-Signature"} {
		if v := h.Get(name); v != "" {
			hexsig, ok := strings.CutPrefix(v, "sha256=")
			if !ok {
				return false
			}
			got, err := hex.DecodeString(hexsig)
			if err != nil {
				return false
			}
			m := hmac.New(sha256.New, []byte(secret))
			m.Write(body)
			return hmac.Equal(got, m.Sum(nil))
		}
	}
	if v := h.Get("X-Gitlab-Token"); v != "" {
		a, b := sha256.Sum256([]byte(v)), sha256.Sum256([]byte(secret))
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1
	}
	return false
}

// Sign returns the X-Cairn-Signature value of body.
func Sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Webhook returns the POST /hooks/git handler: a valid signature triggers
// a fetch at once (202). Without a configured secret, only requests from
// loopback are accepted.
func (s *Source) Webhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
		if err != nil {
			http.Error(w, `{"error":"body too large"}`, http.StatusRequestEntityTooLarge)
			return
		}
		if s.cfg.WebhookSecret == "" {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				http.Error(w, `{"error":"no webhook secret configured: only loopback may trigger"}`, http.StatusForbidden)
				return
			}
		} else if !VerifySignature(r.Header, body, s.cfg.WebhookSecret) {
			s.log.Warn("webhook with a bad signature", "remote", r.RemoteAddr)
			http.Error(w, `{"error":"bad or missing signature"}`, http.StatusUnauthorized)
			return
		}
		if r.Header.Get("X-GitHub-Event") == "ping" {
			w.WriteHeader(http.StatusOK)
			return
		}
		s.Trigger()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{"status":"fetch triggered"}` + "\n"))
	})
}
