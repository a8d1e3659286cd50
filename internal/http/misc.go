package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func (s *server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.version})
	})
}

// handleReadyz answers 200 when the store is reachable, 503 otherwise.
func (s *server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			if s.unready.CompareAndSwap(false, true) {
				s.logger.Warn("not ready: the database is unreachable", "err", err)
			}
			writeProblem(w, &Problem{
				Type: ProblemTypePrefix + tokenkeeper.EUNAVAILABLE, Title: "Service Unavailable",
				Status: http.StatusServiceUnavailable, Code: tokenkeeper.EUNAVAILABLE,
				Detail: "the database is unreachable: refreshes are paused; cached tokens are still served",
			})
			return
		}
		if s.unready.CompareAndSwap(true, false) {
			s.logger.Info("ready again: the database answers")
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// recoverPanics turns a panic into a 500 problem without internals.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				id := requestID()
				s.logger.Error("panic in handler", "request_id", id, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				w.Header().Set("X-Request-Id", id)
				writeProblem(w, &Problem{Type: ProblemTypePrefix + tokenkeeper.EINTERNAL, Title: "Internal Server Error",
					Status: http.StatusInternalServerError, Code: tokenkeeper.EINTERNAL,
					Detail: "internal error; quote request id " + id + " to the operator"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *server) handleKeysRotate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := s.store.RotateKey(r.Context())
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := map[string]any{"resealed": n}
		if s.auth != nil {
			kid, err := s.auth.RotateSigningKey(r.Context())
			if err != nil {
				s.Error(w, r, err)
				return
			}
			out["signing_key"] = kid
		}
		s.logger.Info("keys rotated", "resealed", n, "actor", actor(r))
		s.audit(r, actor(r), "keys.rotate", "", "ok", fmt.Sprintf("%d %s re-sealed", n, plural(n, "secret", "secrets")))
		writeJSON(w, http.StatusOK, out)
	})
}

// requestID returns a random id that ties a 500 answer to its log line.
func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// plural returns one for n == 1, many otherwise: "1 read", "2 reads".
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
