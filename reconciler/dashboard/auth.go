package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Roles a session carries.
const (
	roleRead  = "read"
	roleAdmin = "admin"
)

const (
	cookieName = "cairn_session"
	sessionTTL = 12 * time.Hour
)

// sessionKey is the HMAC key of session cookies: derived from both tokens,
// so changing either signs every session out, and shared by replicas that
// share the tokens.
func (d *Dashboard) sessionKey() []byte {
	h := sha256.New()
	h.Write([]byte("cairn dashboard session\x00" + d.cfg.AdminToken + "\x00" + d.cfg.ReadToken))
	return h.Sum(nil)
}

func tokenEqual(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// newSession returns a cookie value: role, expiry and a nonce, signed.
func (d *Dashboard) newSession(role string, now time.Time) string {
	nonce := make([]byte, 12)
	rand.Read(nonce)
	body := role + "." + strconv.FormatInt(now.Add(sessionTTL).Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString(nonce)
	return body + "." + d.sign(body)
}

func (d *Dashboard) sign(body string) string {
	m := hmac.New(sha256.New, d.sessionKey())
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// role returns the role of the request's session, "" without a valid one.
func (d *Dashboard) role(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 {
		return ""
	}
	body, sig := c.Value[:i], c.Value[i+1:]
	if !hmac.Equal([]byte(sig), []byte(d.sign(body))) {
		return ""
	}
	parts := strings.Split(body, ".")
	if len(parts) != 3 {
		return ""
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || d.now().Unix() > exp {
		return ""
	}
	switch parts[0] {
	case roleAdmin:
		if d.cfg.AdminToken != "" {
			return roleAdmin
		}
	case roleRead:
		if d.cfg.ReadToken != "" {
			return roleRead
		}
	}
	return ""
}

// sameOrigin reports whether a state-changing request comes from the
// dashboard's own pages: Sec-Fetch-Site same-origin when the browser sends
// it, else an Origin equal to the request's own. Neither: refused. Where the
// request comes from (loopback or not) is no reason to trust it.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host)
}

func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: maxAge})
}

// safeNext keeps a post-login redirect on this site: a path, never a URL.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.HasPrefix(next, "/login") {
		return "/"
	}
	return next
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, http.StatusOK, "login", map[string]any{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	next := safeNext(r.PostForm.Get("next"))
	role := ""
	switch {
	case tokenEqual(tok, d.cfg.AdminToken):
		role = roleAdmin
	case tokenEqual(tok, d.cfg.ReadToken):
		role = roleRead
	}
	if role == "" {
		d.log.Info("dashboard login refused", "remote", r.RemoteAddr)
		d.render(w, r, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "That token is neither the admin nor the read-only token."})
		return
	}
	d.setCookie(w, r, d.newSession(role, d.now()), int(sessionTTL/time.Second))
	d.log.Info("dashboard login", "role", role, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	d.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// authed wraps a page: a session of any role, else the login form.
func (d *Dashboard) authed(f func(w http.ResponseWriter, r *http.Request, role string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		role := d.role(r)
		if role == "" {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.URL.Path != "/live" {
			d.watched(r.Context())
		}
		f(w, r, role)
	}
}
