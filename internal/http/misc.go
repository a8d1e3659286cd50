package http

import (
	"context"
	"fmt"
	"net/http"
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
			s.logger.Warn("readiness check failed", "err", err)
			writeProblem(w, &Problem{
				Type: ProblemTypePrefix + tokenkeeper.EUNAVAILABLE, Title: "Service Unavailable",
				Status: http.StatusServiceUnavailable, Code: tokenkeeper.EUNAVAILABLE,
				Detail: "the database is unreachable: refreshes are paused; cached tokens are still served",
			})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

func (s *server) handleNotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "no route for %s %s", r.Method, truncate(r.URL.Path, 200)))
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
				s.logger.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINTERNAL, "internal error"))
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
		s.logger.Info("data key rotated", "resealed", n, "actor", actor(r))
		writeJSON(w, http.StatusOK, map[string]int{"resealed": n})
	})
}
