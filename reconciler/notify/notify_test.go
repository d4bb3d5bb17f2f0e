package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

func TestSendSignedJSON(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	}))
	defer srv.Close()
	n := New(Options{Secrets: map[string]string{"ops": "k"}})
	alert := manifests.Alert{Metadata: manifests.ObjectMeta{Name: "ops"}, Spec: manifests.AlertSpec{
		Events: []string{manifests.EventRolledBack}, Webhook: manifests.Webhook{URL: srv.URL, SecretRef: "ops"}}}
	n.Send([]manifests.Alert{alert}, []fleet.Event{
		{Type: manifests.EventRolloutStarted, Message: "not subscribed"},
		{Type: manifests.EventRolledBack, Release: "r", Message: "back to v1"},
	})
	select {
	case r := <-got:
		b := <-bodies
		m := hmac.New(sha256.New, []byte("k"))
		m.Write(b)
		if r.Header.Get("X-Cairn-Signature") != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			t.Fatal("bad signature")
		}
		var body Body
		if err := json.Unmarshal(b, &body); err != nil || len(body.Events) != 1 || body.Events[0].Type != manifests.EventRolledBack {
			t.Fatalf("body = %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
}

func TestSlackPayload(t *testing.T) {
	a := manifests.Alert{Spec: manifests.AlertSpec{Webhook: manifests.Webhook{Format: "slack"}}}
	b, err := Payload(a, []fleet.Event{{Type: "RolloutFailed", Release: "r", Message: "3 targets failed"}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	json.Unmarshal(b, &m)
	if m["text"] == "" {
		t.Fatalf("slack payload = %s", b)
	}
}
