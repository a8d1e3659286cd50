package oauthtest

import "net/http"

const metadataPath = "/.well-known/oauth-authorization-server"

// routes returns the handler serving every endpoint.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /token", s.handleToken())
	mux.Handle("GET /authorize", s.handleAuthorize())
	mux.Handle("POST /authorize", s.handleConsent(false))
	mux.Handle("POST "+deviceAuthorizationPath, s.handleDeviceAuthorization())
	mux.Handle("GET "+devicePath, s.handleDevicePage())
	mux.Handle("POST "+devicePath, s.handleConsent(true))
	mux.HandleFunc("GET "+cssPath, handleCSS)
	mux.Handle("GET "+oidcPath, s.handleOIDCDiscovery())
	mux.Handle("GET "+jwksPath, s.handleJWKS())
	mux.Handle("POST /revoke", s.handleRevoke())
	mux.Handle("GET "+metadataPath, s.handleMetadata())
	mux.Handle("/resource", s.handleResource()) // any method, so that clients can replay bodies
	if p := s.cfg.personality; p != nil {
		for _, rp := range p.ResourcePaths {
			mux.Handle(rp, s.handleResource())
		}
	}
	return mux
}
