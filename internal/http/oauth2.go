package http

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// oauthError is an RFC 6749 §5.2 error of the token endpoint.
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeOAuthError answers the token endpoint's errors: the one place where
// they are encoded.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="tokenkeeper"`)
	}
	if e.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e)
}

// CredentialScopePrefix starts the scope that names a credential at the
// token endpoint: scope=credential:NAME.
const CredentialScopePrefix = "credential:"

// handleOAuth2Token is an RFC 6749 token endpoint for service clients: the
// client_credentials grant with scope=credential:NAME returns the current
// upstream access token of NAME, expires_in set to its remaining advertised
// life (see tokenJSON).
func (s *server) handleOAuth2Token() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/x-www-form-urlencoded" {
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "the body must be application/x-www-form-urlencoded"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeOAuthError(w, &oauthError{status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "the body is larger than 16 KiB"})
				return
			}
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "malformed form body"})
			return
		}
		form := r.PostForm
		for k, v := range form {
			if len(v) > 1 {
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "parameter " + truncate(k, 40) + " is repeated"})
				return
			}
		}
		// Client authentication: exactly one of client_secret_basic and
		// client_secret_post.
		id, secret, basic := r.BasicAuth()
		if basic {
			var err1, err2 error
			id, err1 = urlUnescape(id)
			secret, err2 = urlUnescape(secret)
			if err1 != nil || err2 != nil {
				writeOAuthError(w, &oauthError{status: 401, Code: "invalid_client", Description: "malformed client credentials"})
				return
			}
			if form.Get("client_secret") != "" {
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "use one client authentication method, not both"})
				return
			}
		} else {
			id, secret = form.Get("client_id"), form.Get("client_secret")
		}
		if id == "" || secret == "" {
			writeOAuthError(w, &oauthError{status: 401, Code: "invalid_client", Description: "client authentication is required (client_secret_basic or client_secret_post)"})
			return
		}
		client, err := s.auth.AuthenticateClient(r.Context(), id, secret)
		if err != nil {
			if tokenkeeper.ErrorCode(err) == tokenkeeper.EUNAUTHORIZED {
				s.audit(r, "client:"+truncate(id, 64), "auth.failed", "/oauth2/token", "denied", "invalid client credentials")
				writeOAuthError(w, &oauthError{status: 401, Code: "invalid_client", Description: "invalid client credentials"})
				return
			}
			s.logger.Error("authenticate service client", "err", err)
			writeOAuthError(w, &oauthError{status: 503, Code: "temporarily_unavailable", Description: "try again shortly"})
			return
		}
		noteCaller(r, "client", client.ClientID)
		switch gt := form.Get("grant_type"); gt {
		case "client_credentials":
		case "":
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "grant_type is required"})
			return
		default:
			writeOAuthError(w, &oauthError{status: 400, Code: "unsupported_grant_type", Description: "only client_credentials is supported"})
			return
		}
		scopes := strings.Fields(form.Get("scope"))
		if len(scopes) != 1 || !strings.HasPrefix(scopes[0], CredentialScopePrefix) {
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_scope", Description: "ask for exactly one scope of the form credential:NAME"})
			return
		}
		name := strings.TrimPrefix(scopes[0], CredentialScopePrefix)
		if !client.CanRead(name) {
			s.audit(r, "client:"+client.ClientID, "token.read", name, "denied", "")
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_scope", Description: "the client may not read " + scopes[0]})
			return
		}
		ctx, end := s.tracer.TokenRead(r.Context(), name)
		sv, err := s.refresher.Token(ctx, name, 0)
		end(err)
		s.metrics.TokenRead(err)
		if err != nil {
			switch tokenkeeper.ErrorCode(err) {
			case tokenkeeper.ENOTFOUND:
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_scope", Description: "the client may not read " + scopes[0]})
			default:
				writeOAuthError(w, &oauthError{status: 503, Code: "temporarily_unavailable", Description: tokenkeeper.ErrorMessage(err)})
			}
			return
		}
		// The refresher serves a token only with at least a second of
		// advertised life left, replacing it first otherwise (concurrent
		// clients share the replacement): expires_in is never 0.
		s.auditw.tokenRead("client:"+client.ClientID, name, remoteHost(r))
		out := map[string]any{"access_token": sv.Token.AccessToken, "token_type": "Bearer", "scope": scopes[0]}
		if !sv.ExpiresAt.IsZero() {
			out["expires_in"] = expiresIn(sv.ExpiresAt, s.now())
		}
		h := w.Header()
		h.Set("Pragma", "no-cache")
		writeJSON(w, http.StatusOK, out)
	})
}

func urlUnescape(s string) (string, error) {
	v, err := url.QueryUnescape(s)
	if err != nil {
		return "", errors.New("bad escape")
	}
	return v, nil
}

// handleMetadata serves RFC 8414 authorization server metadata.
func (s *server) handleMetadata() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		issuer := s.issuer
		if issuer == "" {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			issuer = scheme + "://" + r.Host
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                issuer,
			"token_endpoint":                        issuer + "/oauth2/token",
			"grant_types_supported":                 []string{"client_credentials"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
			"response_types_supported":              []string{},
			"scopes_supported":                      []string{CredentialScopePrefix + "*"},
		})
	})
}
