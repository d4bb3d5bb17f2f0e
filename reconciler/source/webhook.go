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
	"sync"
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
// a fetch at once (202). The body streams through the HMAC and nothing of it
// is kept; a request without a signature is refused before its body is
// read. Without a configured secret, only requests from loopback are
// accepted. A delivery ID (X-GitHub-Delivery, X-Gitlab-Event-UUID) seen
// before is answered 200 and ignored.
func (s *Source) Webhook() http.Handler {
	seen := newDeliveries(4096)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.WebhookSecret == "" {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				http.Error(w, `{"error":"no webhook secret configured: only loopback may trigger"}`, http.StatusForbidden)
				return
			}
		} else {
			ok, err := verifyStream(r.Header, http.MaxBytesReader(w, r.Body, maxHookBody), s.cfg.WebhookSecret)
			if err != nil {
				http.Error(w, `{"error":"body too large or cut short"}`, http.StatusRequestEntityTooLarge)
				return
			}
			if !ok {
				s.log.Warn("webhook with a bad signature", "remote", r.RemoteAddr)
				http.Error(w, `{"error":"bad or missing signature"}`, http.StatusUnauthorized)
				return
			}
		}
		id := r.Header.Get("X-GitHub-Delivery")
		if id == "" {
			id = r.Header.Get("X-Gitlab-Event-UUID")
		}
		if id != "" && !seen.add(id) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(`{"status":"delivery already seen: ignored"}` + "\n"))
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

// verifyStream is VerifySignature over a streamed body: the HMAC reads it
// in small buffers, so memory stays flat whatever its size. Without a
// signature header the body is not read at all.
func verifyStream(h http.Header, body io.Reader, secret string) (bool, error) {
	if secret == "" {
		return false, nil
	}
	for _, name := range []string{"X-Hub-Signature-256", "X-Cairn-Signature"} {
		if v := h.Get(name); v != "" {
			hexsig, ok := strings.CutPrefix(v, "sha256=")
			if !ok {
				return false, nil
			}
			got, err := hex.DecodeString(hexsig)
			if err != nil || len(got) != sha256.Size {
				return false, nil
			}
			m := hmac.New(sha256.New, []byte(secret))
			if _, err := io.Copy(m, body); err != nil {
				return false, err
			}
			return hmac.Equal(got, m.Sum(nil)), nil
		}
	}
	if v := h.Get("X-Gitlab-Token"); v != "" {
		a, b := sha256.Sum256([]byte(v)), sha256.Sum256([]byte(secret))
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1, nil
	}
	return false, nil
}

// deliveries remembers the newest n delivery IDs.
type deliveries struct {
	mu   sync.Mutex
	set  map[string]bool
	ring []string
	next int
}

func newDeliveries(n int) *deliveries {
	return &deliveries{set: make(map[string]bool, n), ring: make([]string, n)}
}

// add records id, reporting false when it was seen before.
func (d *deliveries) add(id string) bool {
	if len(id) > 200 {
		id = id[:200]
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.set[id] {
		return false
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.set, old)
	}
	d.ring[d.next] = id
	d.next = (d.next + 1) % len(d.ring)
	d.set[id] = true
	return true
}
