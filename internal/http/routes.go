package http

import (
	"net/http"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/connect"
)

// routes registers every route of the API with who may call it.
//
//	anyone           healthz, readyz, login, refresh, OAuth2 token endpoint, metadata,
//	                 connect links and the connect callback (pages for end users)
//	any caller       whoami, logout (users)
//	admin, viewer    list and show credentials, events, providers, connect sessions
//	admin, consumer  read a granted credential's token, force its refresh,
//	                 call its API through the proxy (service clients too)
//	admin            everything else; fresh callers only for creating or
//	                 deleting credentials and providers, changing their secrets or where
//	                 and how the secrets are sent (token URL, client id,
//	                 auth style, params, scopes), and for managing users,
//	                 API keys, service clients and keys
//
// The web console, when configured, is served under /ui/ (NewServer
// mounts it); it calls these routes in-process as the signed-in user.
func (s *server) routes(mux *http.ServeMux) {
	admin := tokenkeeper.RoleAdmin
	viewer := tokenkeeper.RoleViewer
	consumer := tokenkeeper.RoleConsumer
	// as chains authentication, a role check and optionally freshness.
	as := func(h http.Handler, fresh bool, roles ...tokenkeeper.Role) http.Handler {
		if fresh {
			h = s.requireFresh(h)
		}
		return s.authenticate(s.requireRole(roles...)(h))
	}

	mux.Handle("GET /healthz", s.handleHealthz())
	mux.Handle("GET /readyz", s.handleReadyz())

	mux.Handle("POST /v1/credentials", as(s.handleCredentialCreate(), true, admin))
	mux.Handle("GET /v1/credentials", as(s.handleCredentialList(), false, admin, viewer))
	mux.Handle("GET /v1/credentials/{name}", as(s.handleCredentialGet(), false, admin, viewer))
	mux.Handle("PATCH /v1/credentials/{name}", as(s.handleCredentialUpdate(), false, admin)) // fresh when secrets or their destination change
	mux.Handle("DELETE /v1/credentials/{name}", as(s.handleCredentialDelete(), true, admin))
	mux.Handle("GET /v1/credentials/{name}/events", as(s.handleCredentialEvents(), false, admin, viewer))
	// The token read, the hot path, is answered before the mux
	// (tokenReads); the route serves what that leaves to the mux (HEAD,
	// escaped or uncleaned paths) and makes 405 work.
	mux.Handle(tokenReadPattern, as(s.requireGrant(s.handleToken()), false, tokenReadRoles...))
	mux.Handle("POST /v1/credentials/{name}/refresh", as(s.requireGrant(s.handleRefresh()), false, admin, consumer, viewer))

	// Any method; the path below the credential is the API's, cleaned by
	// the handler itself (notFoundOrMethod sends it there uncleaned).
	s.proxyRoute = s.authenticateProxy(s.requireRole(admin, consumer)(s.handleProxy()))
	mux.Handle(ProxyPrefix+"{credential}/{path...}", s.proxyRoute)

	mux.Handle("POST /v1/providers", as(s.handleProviderCreate(), true, admin))
	mux.Handle("GET /v1/providers", as(s.handleProviderList(), false, admin, viewer))
	mux.Handle("GET /v1/providers/{name}", as(s.handleProviderGet(), false, admin, viewer))
	mux.Handle("PATCH /v1/providers/{name}", as(s.handleProviderUpdate(), false, admin)) // fresh when secrets or their destination change
	mux.Handle("DELETE /v1/providers/{name}", as(s.handleProviderDelete(), true, admin))

	mux.Handle("POST /v1/connect/sessions", as(s.handleConnectCreate(), true, admin))
	mux.Handle("POST /v1/connect/device", as(s.handleConnectDevice(), true, admin))
	mux.Handle("GET /v1/connect/sessions/{id}", as(s.handleConnectGet(), false, admin, viewer))
	mux.Handle("GET /connect/callback", s.handleConnectPage((*connect.Service).HandleCallback))
	mux.Handle("GET /connect/{token}", s.handleConnectPage((*connect.Service).HandleLink))

	mux.Handle("POST /v1/apikeys", as(s.handleAPIKeyCreate(), true, admin))
	mux.Handle("GET /v1/apikeys", as(s.handleAPIKeyList(), false, admin))
	mux.Handle("DELETE /v1/apikeys/{id}", as(s.handleAPIKeyRevoke(), true, admin))

	mux.Handle("POST /v1/keys/rotate", as(s.handleKeysRotate(), true, admin))

	if s.webhooks != nil {
		mux.Handle("POST /v1/webhooks", as(s.handleWebhookCreate(), true, admin))
		mux.Handle("GET /v1/webhooks", as(s.handleWebhookList(), false, admin))
		mux.Handle("DELETE /v1/webhooks/{id}", as(s.handleWebhookDelete(), true, admin))
		mux.Handle("POST /v1/webhooks/{id}/test", as(s.handleWebhookTest(), false, admin))
		mux.Handle("GET /v1/webhooks/{id}/deliveries", as(s.handleWebhookDeliveries(), false, admin))
	}

	if s.auth != nil {
		mux.Handle("POST /v1/auth/login", s.handleLogin())
		mux.Handle("POST /v1/auth/refresh", s.handleAuthRefresh())
		mux.Handle("POST /v1/auth/logout", as(s.handleLogout(), false, admin, viewer, consumer))
		mux.Handle("GET /v1/auth/whoami", as(s.handleWhoami(), false, admin, viewer, consumer))

		mux.Handle("POST /v1/users", as(s.handleUserCreate(), true, admin))
		mux.Handle("GET /v1/users", as(s.handleUserList(), false, admin))
		mux.Handle("DELETE /v1/users/{name}", as(s.handleUserDelete(), true, admin))
		mux.Handle("PUT /v1/users/{name}/password", as(s.handleUserPassword(), true, admin))
		mux.Handle("POST /v1/users/{name}/revoke-sessions", as(s.handleUserRevokeSessions(), true, admin))

		mux.Handle("POST /v1/clients", as(s.handleClientCreate(), true, admin))
		mux.Handle("GET /v1/clients", as(s.handleClientList(), false, admin))
		mux.Handle("DELETE /v1/clients/{id}", as(s.handleClientDelete(), true, admin))
		mux.Handle("POST /v1/clients/{id}/rotate-secret", as(s.handleClientRotate(), true, admin))

		mux.Handle("GET /v1/audit", as(s.handleAudit(), false, admin))

		s.oauth2Token = s.handleOAuth2Token() // also answered before the mux: tokenReads
		mux.Handle(oauth2TokenPattern, s.oauth2Token)
		mux.Handle("GET /.well-known/oauth-authorization-server", s.handleMetadata())
	}

}

// notFoundOrMethod answers the requests mux has no handler for with a
// problem document: 405 with the Allow header ServeMux computed when the
// path exists with other methods, 404 otherwise. It replaces catch-all
// patterns, which would match every method and hide the 405.
func (s *server) notFoundOrMethod(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ProxyPrefix) {
			// Not through the mux, which would redirect a path with dot
			// segments: the proxy answers 400 to one leaving the base.
			s.proxyRoute.ServeHTTP(w, r)
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// ServeMux's own answer (404, 405 or a redirect), captured.
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			s.Error(w, r, tokenkeeper.Errorf(EMETHOD, "%s is not allowed on %s; allowed: %s", r.Method, truncate(r.URL.Path, 200), rec.header.Get("Allow")))
		case http.StatusNotFound:
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "no route for %s %s", r.Method, truncate(r.URL.Path, 200)))
		default: // a redirect to the cleaned path
			mux.ServeHTTP(w, r)
		}
	})
}

// EMETHOD is the error code of a request whose method the route does not
// allow (405).
const EMETHOD = "method_not_allowed"

// headerRecorder keeps the status and headers a handler writes, discarding
// the body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}
func (h *headerRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}
