package http

import (
	"log"
	"net/http"
	"time"
)

// Timeouts bound how long one connection may hold the server. Every field
// must be positive.
type Timeouts struct {
	// Header: a request's line and headers (a request without a body: all
	// of it, and a service client's POST /oauth2/token, whose form is at
	// most 16 KiB) must arrive within this of its first byte.
	Header time.Duration
	// Body: any other request with a body must arrive whole within this.
	Body time.Duration
	// Write: a response must be written within this of its request's end.
	Write time.Duration
	// Idle: a keep-alive connection waits this long for its next request.
	Idle time.Duration
}

// HTTPServer returns the http.Server that serves h with the limits t (log:
// net/http's own errors). Use it, not a bare http.Server: t.Body is
// applied by the handler it wraps h in (bodyDeadline), not by net/http.
// Serve it on CoarseDeadlines(listener), as serve does, so that the
// deadlines net/http sets on every request cost no timer.
func (h *Server) HTTPServer(t Timeouts, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler: h.s.bodyDeadline(h.Handler, t.Body),
		// ReadTimeout equal to ReadHeaderTimeout: net/http then sets the
		// read deadline once a request, not a second time after the
		// headers (the token reads are the hot path, and have no body).
		ReadHeaderTimeout: t.Header, ReadTimeout: t.Header,
		WriteTimeout: t.Write, IdleTimeout: t.Idle,
		ErrorLog: errorLog,
	}
}

// bodyDeadline gives a request with a body (but a service client's POST
// /oauth2/token) the read deadline body from now on: the time to send it.
func (s *server) bodyDeadline(next http.Handler, body time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && !s.oauth2TokenPost(r) { // -1: chunked
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(body))
		}
		next.ServeHTTP(w, r)
	})
}

// oauth2TokenPost reports whether r is a POST /oauth2/token that
// tokenReads answers (accounts are on).
func (s *server) oauth2TokenPost(r *http.Request) bool {
	return s.oauth2Token != nil && r.Method == http.MethodPost && r.URL.Path == "/oauth2/token" && r.URL.RawPath == ""
}
