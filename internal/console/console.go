// Package console serves the broker's web console under /ui/: pages
// rendered on the server with html/template from embedded templates and
// static files, for the people who run tokenkeeper. It answers what is
// broken, what will break next and how to fix it.
//
// The console is a consumer of the same services as the HTTP API, not a
// second implementation: every action (and every read that has an API
// counterpart) is an in-process call of the API's handler with the signed-in
// user's access token, so that the API's validation, roles, freshness rules
// and audit records apply unchanged. Lists and the overview read the
// tokenkeeper.ConsoleStore, which opens no secret.
//
// Sessions are the broker's own accounts: signing in is a login (a fresh
// access token and a refresh-token family), kept in HttpOnly, SameSite=Strict
// cookies; an expired access token is renewed with the refresh token (not
// fresh); signing out revokes the family on every replica. Every form
// carries a CSRF token bound to the session. Live updates arrive by
// Server-Sent Events, fed by one watcher of the store for all pages.
//
// A Console is safe for concurrent use.
package console

import (
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/ui/"

// Config holds the console's dependencies. Store and Auth are required.
type Config struct {
	// Store lists credentials and counts them for the overview.
	Store tokenkeeper.ConsoleStore
	// Auth verifies access tokens (from memory).
	Auth *auth.Service
	// Changes, if set, tells the console about changes at once
	// (PostgreSQL's LISTEN/NOTIFY); without it, one poller per console
	// reads Store.ChangeCursor every PollInterval while a page listens.
	Changes tokenkeeper.ChangeNotifier
	// PollInterval is how often the change cursor is read; default 1s.
	PollInterval time.Duration
	// PublicURL is the broker's public base URL: an https URL makes the
	// cookies Secure, and the snippets name it. Empty: the request's host
	// (snippets) and no Secure flag.
	PublicURL string
	// RedirectURI is the connect flow's redirect URI, shown on the
	// providers pages; empty: the connect flow is off.
	RedirectURI string
	// Logger receives the console's own messages; default none.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// PageSize is the number of rows a list shows; default 50.
	PageSize int
	// Heartbeat is how often an event stream is kept alive and its session
	// checked; default 15s.
	Heartbeat time.Duration
}

// Console is the web console. Mount its Handler in the HTTP server; Close
// ends the event streams (on shutdown).
type Console struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	pages  map[string]*pageTemplate
	hub    *hub
	static http.Handler
	secure bool

	// refreshMu guards refreshes: concurrent requests presenting the same
	// refresh token share one renewal, so that the rotation never looks
	// like a reuse.
	refreshMu sync.Mutex
	refreshes map[[32]byte]*renewal
}

// New checks cfg and returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil || cfg.Auth == nil {
		return nil, errors.New("console: Store and Auth are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 50
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	c := &Console{cfg: cfg, log: cfg.Logger.With("component", "console"), now: cfg.Now,
		refreshes: map[[32]byte]*renewal{}}
	if _, err := url.Parse(cfg.PublicURL); err != nil {
		return nil, errors.New("console: bad public URL")
	}
	c.secure = isHTTPS(cfg.PublicURL)
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(staticFS, "static") // a constant, valid path
	c.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	c.hub = newHub(cfg.Store, cfg.Changes, cfg.PollInterval, c.log)
	return c, nil
}

// Close ends every event stream and the watcher of the store. Pages still
// render; a new stream is refused.
func (c *Console) Close() { c.hub.close() }

// Handler returns the console's handler, calling api (the HTTP API's
// handler) for every action. It serves paths under Prefix.
func (c *Console) Handler(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	c.routes(mux, &apiClient{h: api})
	return c.headers(mux)
}

// headers sets what every console response carries: no caching, a strict
// Content-Security-Policy (scripts and styles from the console's own
// files only), no framing, no sniffing, no referrer.
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// routes registers every page and action. Reads need a session; actions
// a session and the form's CSRF token; the API decides what the role may
// do and whether the session must be fresh.
func (c *Console) routes(mux *http.ServeMux, api *apiClient) {
	mux.Handle("GET "+Prefix+"static/", c.static)
	mux.Handle("GET "+Prefix+"login", c.handleLoginPage())
	mux.Handle("POST "+Prefix+"login", c.handleLogin(api))
	mux.Handle("POST "+Prefix+"logout", c.action(api, c.handleLogout))
	mux.Handle("GET "+Prefix+"events", c.handleEvents())

	page := func(pattern string, f pageFunc) { mux.Handle("GET "+Prefix+pattern, c.page(api, f)) }
	act := func(pattern string, f actionFunc) { mux.Handle("POST "+Prefix+pattern, c.action(api, f)) }

	page("{$}", c.overviewPage)
	page("credentials", c.credentialsPage)
	page("credentials/{name}", c.credentialPage)
	act("credentials/{name}/refresh", c.refreshAction)
	act("credentials/{name}/status", c.statusAction)
	act("credentials/{name}/reconnect", c.reconnectAction)
	act("credentials/{name}/delete", c.deleteCredentialAction)

	page("providers", c.providersPage)
	act("providers", c.createProviderAction)
	page("providers/{name}", c.providerPage)
	act("providers/{name}/connect", c.connectAction)
	act("providers/{name}/delete", c.deleteProviderAction)

	page("apikeys", c.apiKeysPage)
	act("apikeys", c.createAPIKeyAction)
	act("apikeys/{id}/revoke", c.revokeAPIKeyAction)
	page("clients", c.clientsPage)
	act("clients", c.createClientAction)
	act("clients/{id}/delete", c.deleteClientAction)
	page("users", c.usersPage)
	act("users", c.createUserAction)
	act("users/{name}/delete", c.deleteUserAction)
	page("audit", c.auditPage)
	page("keys", c.keysPage)
	act("keys/rotate", c.rotateKeysAction)

	mux.Handle(Prefix, c.page(api, func(p *request) error {
		return notFound("no such page")
	}))
}

// isHTTPS reports whether the public URL is an https URL.
func isHTTPS(publicURL string) bool {
	u, err := url.Parse(publicURL)
	return err == nil && u.Scheme == "https"
}

// localPath reports whether s is a path of the console to return to after
// signing in: under Prefix, no scheme or host, no backslash.
func localPath(s string) bool {
	return strings.HasPrefix(s, Prefix) && !strings.HasPrefix(s, "//") && !strings.ContainsAny(s, "\\\r\n") &&
		!strings.HasPrefix(s, Prefix+"events") && !strings.HasPrefix(s, Prefix+"static/") && len(s) <= 1024
}
