package oauthtest

import "net/http"

const metadataPath = "/.well-known/oauth-authorization-server"

// routes returns the handler serving every endpoint.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /token", s.handleToken())
	mux.Handle("GET /authorize", s.handleAuthorize())
	mux.Handle("POST /revoke", s.handleRevoke())
	mux.Handle("GET "+metadataPath, s.handleMetadata())
	mux.Handle("/resource", s.handleResource()) // any method, so that clients can replay bodies
	return mux
}
