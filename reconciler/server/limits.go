package server

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Bounds of every request but the desired-state long-poll and the
// registry's streams, which set their own deadlines per request
// (http.ResponseController): ReadTimeout covers reading a whole request,
// WriteTimeout writing its answer.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 64 << 10
	// StreamTimeout bounds one registry upload or download.
	StreamTimeout = time.Hour
)

// extendDeadlines gives the request d more to read and write than the
// server's defaults allow (long-polls, registry streams).
func extendDeadlines(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	at := time.Now().Add(d)
	rc.SetReadDeadline(at)
	rc.SetWriteDeadline(at)
}

// streaming lets the registry's uploads and downloads run for StreamTimeout.
func streaming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		extendDeadlines(w, StreamTimeout)
		next.ServeHTTP(w, r)
	})
}

// limitRate answers 429 to a source address sending more than RequestRate
// requests a second (burst RequestBurst).
func (s *Server) limitRate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && !s.addrLimiter(s.reqLim, r, s.cfg.RequestRate, s.cfg.RequestBurst).Allow() {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too many requests from %s", peerIP(r))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// countAuthFailures wraps a handler that authenticates on its own (the
// webhook): its 401 and 403 answers count as failed attempts of the
// address, and an address over the limit gets 429 before the handler runs.
func (s *Server) countAuthFailures(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authBlocked(r) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too many failed attempts from %s", peerIP(r))
			return
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		if sw.code == http.StatusUnauthorized || sw.code == http.StatusForbidden {
			s.authFailed(r)
		}
	})
}

// LimitListener caps the connections a listener holds open: at most total,
// and at most perAddr from one source address. A connection over a cap is
// closed at once, so a flood from one address never starves the others
// (nor the process of file descriptors).
func LimitListener(ln net.Listener, total, perAddr int) net.Listener {
	return &limitListener{Listener: ln, total: total, perAddr: perAddr, byAddr: map[string]int{}}
}

type limitListener struct {
	net.Listener
	total, perAddr int

	mu     sync.Mutex
	open   int
	byAddr map[string]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open >= l.total || l.byAddr[host] >= l.perAddr {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open++
		l.byAddr[host]++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l, host: host}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	host string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		if c.l.byAddr[c.host]--; c.l.byAddr[c.host] <= 0 {
			delete(c.l.byAddr, c.host)
		}
		c.l.mu.Unlock()
	})
	return err
}
