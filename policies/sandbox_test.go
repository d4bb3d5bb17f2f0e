package policies

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"
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

// TestEvalTimeout: the evaluation of a Release's policies is bounded, 5s by
// default, and a slow policy is stopped there with ErrEvalTimeout.
func TestEvalTimeout(t *testing.T) {
	repo := fstest.MapFS{"slow.rego": {Data: []byte("package slow\n\ndeny contains msg if {\n\tn := count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000); i == j + 100000])\n\tn >= 0\n\tmsg := \"slow\"\n}\n")}}
	if e, err := Compile(context.Background(), nil); err != nil || e.Timeout() != 5*time.Second {
		t.Fatalf("default timeout %v, %v; want 5s", e.Timeout(), err)
	}
	e, err := Compile(context.Background(), repo, WithEvalTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Evaluate(context.Background(), nil, &Input{Release: ReleaseInput{Name: "r"}})
	if !errors.Is(err, ErrEvalTimeout) || !strings.Contains(err.Error(), "release r: not done within 300ms") {
		t.Fatalf("err = %v, want ErrEvalTimeout naming the release", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stopped after %s, want about 300ms", took)
	}
}
