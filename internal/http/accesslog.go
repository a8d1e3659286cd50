package http

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// reqInfoKey carries the *reqInfo of a request, set by the access log.
const reqInfoKey ctxKey = 100

// reqInfo is what the access log learns about a request while it is
// handled: the route pattern (from the mux) and the caller (from
// authentication). Only the request's own goroutine touches it.
type reqInfo struct {
	pattern          string
	callerKind, name string
}

// noteCaller tells the access log who the caller is.
func noteCaller(r *http.Request, kind, name string) {
	if ri, _ := r.Context().Value(reqInfoKey).(*reqInfo); ri != nil {
		ri.callerKind, ri.name = kind, name
	}
}

// notePattern records the route the mux chose (the mux sets r.Pattern on
// the request it was given).
func notePattern(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		notePatternOf(r, r.Pattern)
	})
}

// notePatternOf records the route of r for the access log, if it is on.
func notePatternOf(r *http.Request, pattern string) {
	if ri, _ := r.Context().Value(reqInfoKey).(*reqInfo); ri != nil {
		ri.pattern = pattern
	}
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessLog writes one line per request to log: method, route pattern
// (never the path, which may name things, nor the query, which may carry
// a secret), status, duration, caller kind and name, and a request id,
// also sent back as X-Request-Id.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID()
		w.Header().Set("X-Request-Id", id)
		ri := &reqInfo{}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), reqInfoKey, ri)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := ri.pattern
		if route == "" {
			route = "unmatched"
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("route", route), slog.Int("status", sw.status),
			slog.Duration("duration", time.Since(start)), slog.String("caller_kind", ri.callerKind),
			slog.String("caller", ri.name), slog.String("request_id", id))
	})
}
