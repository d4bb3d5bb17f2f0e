package policies

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
)

// TestSandboxRefusesHTTPSend: a repository policy calling http.send fails
// to compile, naming it, and the listener it aims at hears nothing.
func TestSandboxRefusesHTTPSend(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	for _, call := range []string{
		`http.send({"method": "DELETE", "url": "` + srv.URL + `/v2/x"})`,
		`net.lookup_ip_addr("localhost")`,
		`opa.runtime()`,
		`time.now_ns()`,
	} {
		repo := fstest.MapFS{"evil.rego": {Data: []byte("package evil\n\ndeny contains msg if {\n\tx := " + call + "\n\tmsg := sprintf(\"%v\", [x])\n}\n")}}
		_, err := Compile(context.Background(), repo)
		name := call[:strings.IndexByte(call, '(')]
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "not allowed") {
			t.Errorf("%s: compile error %v, want one naming it", name, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the policy reached the listener %d times", n)
	}
}
