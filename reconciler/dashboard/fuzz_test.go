package dashboard

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzSession: a session cookie the dashboard did not sign carries no role,
// however it is formed.
func FuzzSession(f *testing.F) {
	d := &Dashboard{cfg: Config{AdminToken: "admin", ReadToken: "read", Now: time.Now}}
	good := d.newSession(roleAdmin, time.Now())
	f.Add(good)
	f.Add("admin.99999999999.AAAA.forged")
	f.Add(good + "x")
	f.Add("read." + good[6:])
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", cookieName+"="+v)
		c, err := r.Cookie(cookieName)
		role := d.role(r)
		if role == "" {
			return
		}
		// A role needs the dashboard's MAC over exactly the rest of the value,
		// which must start with that role.
		i := strings.LastIndexByte(c.Value, '.')
		if err != nil || i < 0 || d.sign(c.Value[:i]) != c.Value[i+1:] || !strings.HasPrefix(c.Value, role+".") {
			t.Fatalf("cookie %q not signed by the dashboard gives role %q", v, role)
		}
	})
}

func TestSessionRoundTrip(t *testing.T) {
	now := time.Now()
	d := &Dashboard{cfg: Config{AdminToken: "admin", ReadToken: "read", Now: func() time.Time { return now }}}
	for _, role := range []string{roleAdmin, roleRead} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", cookieName+"="+d.newSession(role, now))
		if got := d.role(r); got != role {
			t.Errorf("signed %s session reads as %q", role, got)
		}
		now = now.Add(sessionTTL + time.Second)
		if got := d.role(r); got != "" {
			t.Errorf("expired %s session reads as %q", role, got)
		}
		now = time.Now()
	}
	other := &Dashboard{cfg: Config{AdminToken: "rotated", ReadToken: "read", Now: time.Now}}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", cookieName+"="+d.newSession(roleAdmin, now))
	if got := other.role(r); got != "" {
		t.Errorf("a session signed before the admin token changed reads as %q", got)
	}
}
