// Command runtime is the demo model server: it serves the bearing anomaly
// model found in a model folder (the agent's active-slot symlink) and reloads
// it when the slot switches.
//
//	runtime --model-dir DIR --listen 127.0.0.1:8080
//
// POST /predict  {"rows": [[rms, kurtosis, …], …]} or {"instances": [{"rms": …}, …]}
// GET  /healthz  200 when the loaded model passes its self-test, else 503
// GET  /metrics  JSON (requests, error_rate, latency_p95_ms, live feature
//
//	statistics); Prometheus text with Accept: text/plain or ?format=prometheus
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	dir := flag.String("model-dir", os.Getenv("CAIRN_MODEL_DIR"), "model folder or active-slot symlink")
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	poll := flag.Duration("poll", 500*time.Millisecond, "how often to check the slot for a new model")
	feedback := flag.String("feedback-dir", os.Getenv("CAIRN_FEEDBACK_DIR"), "spool the scored inputs as JSON lines here for the agent's feedback upload (default $CAIRN_FEEDBACK_DIR; empty: none)")
	flush := flag.Duration("feedback-flush", 5*time.Second, "how often the spooled inputs are written out")
	flag.Parse()
	if *dir == "" {
		log.Fatal("runtime: --model-dir is required")
	}
	logf := log.New(os.Stderr, "runtime: ", log.LstdFlags).Printf
	s := newServer(*dir)
	if *feedback != "" {
		sp, err := newSpool(*feedback)
		if err != nil {
			log.Fatalf("runtime: %v", err)
		}
		s.spool = sp
		logf("spooling scored inputs into %s every %s", *feedback, *flush)
		go func() {
			for range time.Tick(*flush) {
				if err := sp.flush(); err != nil {
					logf("%v", err)
				}
			}
		}()
		defer sp.flush()
	}
	s.reload()
	s.logState(logf)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("runtime: listen: %v", err)
	}
	logf("listening on http://%s", ln.Addr())
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan struct{})
	go s.watch(*poll, stop, logf)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		<-ctx.Done()
		close(stop)
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("runtime: serve: %v", err)
	}
}
