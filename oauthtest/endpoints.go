package oauthtest

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// handleRevoke serves POST /revoke (RFC 7009). The client authenticates as
// at the token endpoint. An unknown token gets 200; a token issued to
// another client is refused with invalid_request. Revoking a refresh token
// revokes its whole family; revoking an access token revokes only it.
func (s *Server) handleRevoke() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.stats.Revocations++
		s.mu.Unlock()
		outcome, clientID := "revoked", ""
		var oerr *oauthError
		defer func() {
			attrs := []slog.Attr{slog.String("client_id", clientID), slog.String("outcome", outcome)}
			if oerr != nil {
				attrs = append(attrs, slog.String("error", oerr.code))
			}
			s.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "oauthtest: revocation request", attrs...)
		}()

		form, perr := readForm(w, r)
		if perr != nil {
			outcome, oerr = "rejected", perr
			writeOAuthError(w, oerr)
			return
		}
		c, aerr := s.authenticate(r, form)
		if aerr != nil {
			outcome, oerr, clientID = "rejected", aerr, s.registeredID(form, r)
			writeOAuthError(w, oerr)
			return
		}
		clientID = c.id
		token := form.Get("token")
		if token == "" {
			outcome, oerr = "rejected", errInvalidRequest("token is missing")
			writeOAuthError(w, oerr)
			return
		}
		h := hashOf(token)
		s.mu.Lock()
		a, rt := s.access[h], s.refresh[h]
		switch {
		case a != nil && a.client != c, rt != nil && rt.family.client != c:
			oerr = errInvalidRequest("the token was issued to another client")
		case a != nil:
			a.revoked = true
		case rt != nil:
			s.revokeFamilyLocked(rt.family)
		default:
			outcome = "unknown_token"
		}
		s.mu.Unlock()
		if oerr != nil {
			outcome = "rejected"
			writeOAuthError(w, oerr)
			return
		}
		setNoStore(w.Header())
		w.WriteHeader(http.StatusOK)
	}
}

// metadata is the RFC 8414 authorization server metadata; with WithOIDC
// it is also the OpenID Connect discovery document (OpenID Connect
// Discovery §3), and the OpenID fields are set.
type metadata struct {
	Issuer                         string   `json:"issuer"`
	AuthorizationEndpoint          string   `json:"authorization_endpoint"`
	TokenEndpoint                  string   `json:"token_endpoint"`
	RevocationEndpoint             string   `json:"revocation_endpoint"`
	DeviceAuthorizationEndpoint    string   `json:"device_authorization_endpoint"`
	ResponseTypesSupported         []string `json:"response_types_supported"`
	GrantTypesSupported            []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods       []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods  []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported  []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParams bool     `json:"authorization_response_iss_parameter_supported"`

	JWKSURI                     string   `json:"jwks_uri,omitempty"`
	ScopesSupported             []string `json:"scopes_supported,omitempty"`
	SubjectTypesSupported       []string `json:"subject_types_supported,omitempty"`
	IDTokenSigningAlgsSupported []string `json:"id_token_signing_alg_values_supported,omitempty"`
	ClaimsSupported             []string `json:"claims_supported,omitempty"`
}

// handleMetadata serves GET /.well-known/oauth-authorization-server.
func (s *Server) handleMetadata() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.metadataFor(s.issuerFor(r)))
	}
}

// metadataFor returns the metadata for issuer iss.
func (s *Server) metadataFor(iss string) metadata {
	methods := []string{}
	if s.cfg.basic {
		methods = append(methods, "client_secret_basic")
	}
	if s.cfg.post {
		methods = append(methods, "client_secret_post")
	}
	s.mu.Lock()
	for _, c := range s.clients {
		if c.public {
			methods = append(methods, "none")
			break
		}
	}
	s.mu.Unlock()
	m := metadata{
		Issuer:                         iss,
		AuthorizationEndpoint:          iss + "/authorize",
		TokenEndpoint:                  iss + "/token",
		RevocationEndpoint:             iss + "/revoke",
		DeviceAuthorizationEndpoint:    iss + deviceAuthorizationPath,
		ResponseTypesSupported:         []string{"code"},
		GrantTypesSupported:            []string{"authorization_code", "client_credentials", "refresh_token", deviceCodeGrantType},
		TokenEndpointAuthMethods:       methods,
		RevocationEndpointAuthMethods:  methods,
		CodeChallengeMethodsSupported:  []string{"S256"},
		AuthorizationResponseIssParams: true,
	}
	if s.flows.signer != nil {
		m.JWKSURI = iss + jwksPath
		m.ScopesSupported = []string{"openid", "email", "offline_access"}
		m.SubjectTypesSupported = []string{"public"}
		m.IDTokenSigningAlgsSupported = []string{"RS256"}
		m.ClaimsSupported = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "email", "email_verified"}
	}
	return m
}

// resourceBody is the JSON body of a successful resource request.
type resourceBody struct {
	OK        bool   `json:"ok"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	ExpiresIn int64  `json:"expires_in"`
	Method    string `json:"method"`
	BodyBytes int64  `json:"body_bytes"`
}

// maxResourceBody bounds how much of a request body /resource reads.
const maxResourceBody = 1 << 20

// handleResource serves /resource, for any method: 200 with a JSON
// description of the access token for a valid Bearer token, 401 with
// WWW-Authenticate: Bearer error="invalid_token" otherwise. The request body,
// if any, is read (up to 1 MiB) and its size reported, so that a client's
// replay of a body can be checked.
func (s *Server) handleResource() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, maxResourceBody))
		token, ok := s.resourceToken(r)
		var h digest
		if ok {
			h = hashOf(token)
		}
		s.mu.Lock()
		now := s.cfg.now()
		s.stats.ResourceRequests++
		var a *accessRecord
		if ok {
			a = s.access[h]
		}
		valid := a != nil && a.valid(now)
		var body resourceBody
		desc := ""
		switch {
		case valid:
		case a != nil && a.revokedNow():
			desc = "the access token was revoked"
		case a != nil:
			desc = "the access token has expired"
		case ok:
			desc = "the access token is unknown"
		default:
			desc = "the access token is missing"
		}
		if valid {
			body = resourceBody{
				OK:        true,
				ClientID:  a.client.id,
				Scope:     a.scope,
				ExpiresIn: expiresIn(a.expiresAt.Sub(now)),
				Method:    r.Method,
				BodyBytes: n,
			}
		} else {
			s.stats.ResourceRejected++
		}
		s.mu.Unlock()

		w.Header().Set("Cache-Control", "no-store")
		if !valid && s.cfg.personality != nil && s.cfg.personality.ErrorIn200 {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_auth"})
			return
		}
		if !valid {
			w.Header().Set("WWW-Authenticate", `Bearer realm="oauthtest", error="invalid_token", error_description="`+desc+`"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "invalid_token", Description: desc})
			return
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// bearerToken returns the token of an "Authorization: Bearer" header; the
// scheme is case-insensitive (RFC 9110 §11.1).
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
