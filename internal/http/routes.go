package http

import "net/http"

// routes registers every route of the API.
func (s *server) routes(mux *http.ServeMux) {
	mux.Handle("GET /healthz", s.handleHealthz())
	mux.Handle("GET /readyz", s.handleReadyz())

	admin := func(h http.Handler) http.Handler { return s.authenticate(s.requireAdmin(h)) }
	mux.Handle("POST /v1/credentials", admin(s.handleCredentialCreate()))
	mux.Handle("GET /v1/credentials", admin(s.handleCredentialList()))
	mux.Handle("GET /v1/credentials/{name}", admin(s.handleCredentialGet()))
	mux.Handle("PATCH /v1/credentials/{name}", admin(s.handleCredentialUpdate()))
	mux.Handle("DELETE /v1/credentials/{name}", admin(s.handleCredentialDelete()))
	mux.Handle("GET /v1/credentials/{name}/events", admin(s.handleCredentialEvents()))
	mux.Handle("GET /v1/credentials/{name}/token", s.authenticate(s.requireGrant(s.handleToken())))
	mux.Handle("POST /v1/credentials/{name}/refresh", s.authenticate(s.requireGrant(s.handleRefresh())))

	mux.Handle("POST /v1/apikeys", admin(s.handleAPIKeyCreate()))
	mux.Handle("GET /v1/apikeys", admin(s.handleAPIKeyList()))
	mux.Handle("DELETE /v1/apikeys/{id}", admin(s.handleAPIKeyRevoke()))

	mux.Handle("POST /v1/keys/rotate", admin(s.handleKeysRotate()))

	mux.Handle("/v1/", s.handleNotFound())
	mux.Handle("/", s.handleNotFound())
}
