// Package http serves the broker's HTTP API: credentials and their tokens,
// refreshes, events and API keys, under /v1, as JSON with RFC 9457 problem
// responses. NewServer takes every dependency and returns an http.Handler;
// every route is in routes.go; encoding and decoding live in encode.go.
package http

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// Config holds the server's dependencies. Store and Refresher are required.
type Config struct {
	Store     tokenkeeper.Store
	Refresher *refresh.Refresher
	Logger    *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Version is reported by /healthz.
	Version string
	// MaxBodyBytes limits request bodies; default 64 KiB.
	MaxBodyBytes int64
	// KeyCacheTTL is how long an authenticated API key is trusted without
	// asking the store again; default 5s. A revocation made on another
	// replica takes at most this long to apply here.
	KeyCacheTTL time.Duration
}

// server carries the dependencies of the handlers.
type server struct {
	store     tokenkeeper.Store
	refresher *refresh.Refresher
	logger    *slog.Logger
	now       func() time.Time
	version   string
	maxBody   int64
	keys      *keyCache
}

// NewServer returns the broker's HTTP handler.
func NewServer(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = 5 * time.Second
	}
	s := &server{
		store: cfg.Store, refresher: cfg.Refresher, logger: cfg.Logger.With("component", "http"),
		now: cfg.Now, version: cfg.Version, maxBody: cfg.MaxBodyBytes,
		keys: newKeyCache(cfg.KeyCacheTTL),
	}
	mux := http.NewServeMux()
	s.routes(mux)
	return s.recoverPanics(mux)
}
