package http

import (
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
)

// providerJSON is a provider as the API shows it: never its secret.
type providerJSON struct {
	ID                     string               `json:"id"`
	Name                   string               `json:"name"`
	AuthorizationURL       string               `json:"authorization_url,omitempty"`
	TokenURL               string               `json:"token_url"`
	DeviceAuthorizationURL string               `json:"device_authorization_url,omitempty"`
	RevocationURL          string               `json:"revocation_url,omitempty"`
	ClientID               string               `json:"client_id"`
	HasClientSecret        bool                 `json:"has_client_secret"`
	AuthStyle              string               `json:"auth_style"`
	Scopes                 []string             `json:"scopes"`
	AuthorizeParams        map[string]string    `json:"authorize_params,omitempty"`
	TokenParams            map[string]string    `json:"token_params,omitempty"`
	PKCE                   bool                 `json:"pkce"`
	APIBaseURL             string               `json:"api_base_url,omitempty"`
	APIToken               tokenkeeper.APIToken `json:"api_token"`
	Preset                 string               `json:"preset,omitempty"`
	TemplateVars           map[string]string    `json:"template_vars,omitempty"`
	Issuer                 string               `json:"issuer,omitempty"`
	Credentials            *int                 `json:"credentials,omitempty"` // how many use it (show only)
	Version                int64                `json:"version"`
	CreatedAt              time.Time            `json:"created_at"`
	UpdatedAt              time.Time            `json:"updated_at"`
}

func toProviderJSON(p *tokenkeeper.Provider) *providerJSON {
	j := &providerJSON{
		ID: p.ID, Name: p.Name, AuthorizationURL: p.AuthorizationURL, TokenURL: p.TokenURL,
		DeviceAuthorizationURL: p.DeviceAuthorizationURL, RevocationURL: p.RevocationURL,
		ClientID: p.ClientID, HasClientSecret: p.ClientSecret != "", AuthStyle: string(p.AuthStyle),
		Scopes: p.Scopes, AuthorizeParams: maskParams(p.AuthorizeParams), TokenParams: maskParams(p.TokenParams),
		PKCE: p.PKCE != tokenkeeper.PKCENone, Preset: p.Preset, TemplateVars: p.TemplateVars, Issuer: p.Issuer, Version: p.Version,
		APIBaseURL: p.APIBaseURL, APIToken: p.APIToken.Normalized(),
		CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC(),
	}
	if j.Scopes == nil {
		j.Scopes = []string{}
	}
	return j
}

func pkceMethod(on bool) string {
	if on {
		return tokenkeeper.PKCES256
	}
	return tokenkeeper.PKCENone
}

type providerCreateRequest struct {
	Name                   string                `json:"name"`
	AuthorizationURL       string                `json:"authorization_url"`
	TokenURL               string                `json:"token_url"`
	DeviceAuthorizationURL string                `json:"device_authorization_url"`
	RevocationURL          string                `json:"revocation_url"`
	ClientID               string                `json:"client_id"`
	ClientSecret           string                `json:"client_secret"`
	AuthStyle              string                `json:"auth_style"`
	Scopes                 []string              `json:"scopes"`
	AuthorizeParams        map[string]string     `json:"authorize_params"`
	TokenParams            map[string]string     `json:"token_params"`
	PKCE                   *bool                 `json:"pkce"`
	APIBaseURL             string                `json:"api_base_url"`
	APIToken               *tokenkeeper.APIToken `json:"api_token"`
	// Preset names a profile of the catalog that fills every field not
	// given; TemplateVars fill its {tenant}, {subdomain}, ... endpoints.
	Preset       string            `json:"preset"`
	TemplateVars map[string]string `json:"template_vars"`
	// Issuer is the issuer the endpoints were discovered from (provider
	// add --issuer), kept for people to see.
	Issuer string `json:"issuer"`
}

// fromPreset returns the provider req describes when it names a preset: the
// preset's settings, overridden by every field req gives.
func fromPreset(req *providerCreateRequest) (*tokenkeeper.Provider, error) {
	prof, err := catalog.Lookup(req.Preset)
	if err != nil {
		return nil, err
	}
	a, err := prof.Apply(req.TemplateVars)
	if err != nil {
		return nil, err
	}
	p := a.Provider(req.Name, req.ClientID, req.ClientSecret)
	p.Preset, p.TemplateVars = prof.Name, req.TemplateVars
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&p.AuthorizationURL, req.AuthorizationURL}, {&p.TokenURL, req.TokenURL},
		{&p.DeviceAuthorizationURL, req.DeviceAuthorizationURL}, {&p.RevocationURL, req.RevocationURL},
	} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if req.AuthStyle != "" {
		p.AuthStyle = tokenkeeper.AuthStyle(req.AuthStyle)
	}
	if req.Scopes != nil {
		p.Scopes = req.Scopes
	}
	for _, m := range []struct {
		dst *map[string]string
		src map[string]string
	}{{&p.AuthorizeParams, req.AuthorizeParams}, {&p.TokenParams, req.TokenParams}} {
		if len(m.src) > 0 && *m.dst == nil {
			*m.dst = map[string]string{}
		}
		for k, v := range m.src {
			(*m.dst)[k] = v
		}
	}
	if req.PKCE != nil {
		p.PKCE = pkceMethod(*req.PKCE)
	}
	return p, nil
}

// checkEndpoints applies the outbound URL check to every endpoint given.
func (s *server) checkEndpoints(urls ...*string) error {
	for _, u := range urls {
		if u != nil && *u != "" {
			if err := s.checkTokenURL(*u); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkAPIBaseURL applies the outbound URL check to an API base URL: the
// proxy sends access tokens there.
func (s *server) checkAPIBaseURL(u *string) error {
	if u == nil || *u == "" || s.tokenURLCheck == nil {
		return nil
	}
	if err := s.tokenURLCheck(*u); err != nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "api_base_url refused: %v", err)
	}
	return nil
}

func (s *server) handleProviderCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req providerCreateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		var p *tokenkeeper.Provider
		switch {
		case req.Preset != "":
			var err error
			if p, err = fromPreset(&req); err != nil {
				s.Error(w, r, err)
				return
			}
		case len(req.TemplateVars) > 0:
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "template_vars need a preset"))
			return
		default:
			if req.AuthStyle == "" {
				req.AuthStyle = string(tokenkeeper.AuthStyleHeader)
			}
			p = &tokenkeeper.Provider{
				Name: req.Name, AuthorizationURL: req.AuthorizationURL, TokenURL: req.TokenURL,
				DeviceAuthorizationURL: req.DeviceAuthorizationURL, RevocationURL: req.RevocationURL,
				ClientID: req.ClientID, ClientSecret: req.ClientSecret, AuthStyle: tokenkeeper.AuthStyle(req.AuthStyle),
				Scopes: req.Scopes, AuthorizeParams: req.AuthorizeParams, TokenParams: req.TokenParams,
				PKCE: pkceMethod(req.PKCE == nil || *req.PKCE),
			}
		}
		if req.APIBaseURL != "" {
			p.APIBaseURL = req.APIBaseURL
		}
		if req.APIToken != nil {
			p.APIToken = *req.APIToken
		}
		p.Issuer = req.Issuer
		if err := p.Validate(); err != nil {
			s.Error(w, r, err)
			return
		}
		if err := s.checkEndpoints(&p.TokenURL, &p.AuthorizationURL, &p.DeviceAuthorizationURL, &p.RevocationURL); err != nil {
			s.Error(w, r, err)
			return
		}
		if err := s.checkAPIBaseURL(&p.APIBaseURL); err != nil {
			s.Error(w, r, err)
			return
		}
		if err := s.store.CreateProvider(r.Context(), p); err != nil {
			s.Error(w, r, err)
			return
		}
		detail := ""
		if req.Preset != "" {
			detail = "preset " + req.Preset
		}
		s.audit(r, actor(r), "provider.create", p.Name, "ok", detail)
		w.Header().Set("Location", "/v1/providers/"+p.Name)
		writeJSON(w, http.StatusCreated, toProviderJSON(p))
	})
}

func (s *server) handleProviderList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps, err := s.store.Providers(r.Context())
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]*providerJSON, 0, len(ps))
		for _, p := range ps {
			out = append(out, toProviderJSON(p))
		}
		writeJSON(w, http.StatusOK, map[string]any{"providers": out})
	})
}

func (s *server) handleProviderGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		p, err := s.store.Provider(r.Context(), name)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		n, err := s.store.ProviderCredentialCount(r.Context(), name)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		j := toProviderJSON(p)
		j.Credentials = &n
		writeJSON(w, http.StatusOK, j)
	})
}

type providerUpdateRequest struct {
	AuthorizationURL       *string               `json:"authorization_url"`
	TokenURL               *string               `json:"token_url"`
	DeviceAuthorizationURL *string               `json:"device_authorization_url"`
	RevocationURL          *string               `json:"revocation_url"`
	ClientID               *string               `json:"client_id"`
	ClientSecret           *string               `json:"client_secret"`
	AuthStyle              *string               `json:"auth_style"`
	Scopes                 *[]string             `json:"scopes"`
	AuthorizeParams        *map[string]string    `json:"authorize_params"`
	TokenParams            *map[string]string    `json:"token_params"`
	PKCE                   *bool                 `json:"pkce"`
	APIBaseURL             *string               `json:"api_base_url"`
	APIToken               *tokenkeeper.APIToken `json:"api_token"`
}

func (s *server) handleProviderUpdate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req providerUpdateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		upd := tokenkeeper.ProviderUpdate{
			AuthorizationURL: req.AuthorizationURL, TokenURL: req.TokenURL,
			DeviceAuthorizationURL: req.DeviceAuthorizationURL, RevocationURL: req.RevocationURL,
			ClientID: req.ClientID, ClientSecret: req.ClientSecret, Scopes: req.Scopes,
			AuthorizeParams: req.AuthorizeParams, TokenParams: req.TokenParams,
			APIBaseURL: req.APIBaseURL, APIToken: req.APIToken,
		}
		if req.AuthStyle != nil {
			a := tokenkeeper.AuthStyle(*req.AuthStyle)
			upd.AuthStyle = &a
		}
		if req.PKCE != nil {
			m := pkceMethod(*req.PKCE)
			upd.PKCE = &m
		}
		msg := "provider updated"
		if upd.SendsSecrets() {
			// The client secret, and where or how it and the grants'
			// refresh tokens are sent, change only for a fresh caller.
			if c := callerFrom(r.Context()); c == nil || !c.fresh {
				s.freshRequired(w, r)
				return
			}
			msg = "provider endpoints or client settings changed"
			if req.ClientSecret != nil {
				msg = "provider client secret replaced"
			}
		}
		for _, ep := range []struct {
			field string
			u     *string
		}{{"token_url", req.TokenURL}, {"authorization_url", req.AuthorizationURL},
			{"device_authorization_url", req.DeviceAuthorizationURL}, {"revocation_url", req.RevocationURL}} {
			if ep.u != nil && (*ep.u != "" || ep.field == "token_url") {
				if err := tokenkeeper.ValidateEndpoint(ep.field, *ep.u); err != nil {
					s.Error(w, r, err)
					return
				}
			}
		}
		if req.APIBaseURL != nil && *req.APIBaseURL != "" {
			if err := tokenkeeper.ValidateAPIBaseURL(*req.APIBaseURL); err != nil {
				s.Error(w, r, err)
				return
			}
		}
		if err := s.checkAPIBaseURL(req.APIBaseURL); err != nil {
			s.Error(w, r, err)
			return
		}
		if err := s.checkEndpoints(req.TokenURL, req.AuthorizationURL, req.DeviceAuthorizationURL, req.RevocationURL); err != nil {
			s.Error(w, r, err)
			return
		}
		if req.TokenURL != nil {
			cur, err := s.store.Provider(r.Context(), name)
			if err != nil {
				s.Error(w, r, err)
				return
			}
			if endpointOrigin(cur.TokenURL) != endpointOrigin(*req.TokenURL) || endpointOrigin(*req.TokenURL) == "" {
				// The stored secrets are never sent to a host they were
				// not given for: the client secret is cleared unless a new
				// one comes with the change, and the grants' refresh
				// tokens, issued by the old host, cannot move at all.
				creds, err := s.store.FilterCredentials(r.Context(), tokenkeeper.CredentialFilter{Provider: name})
				if err != nil {
					s.Error(w, r, err)
					return
				}
				holding := 0
				for _, c := range creds {
					if c.RefreshToken != "" {
						holding++
					}
				}
				if holding > 0 {
					s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.ECONFLICT,
						"token_url moves to another host but %d credential(s) of provider %q hold refresh tokens of the old host; create a new provider and reconnect them", holding, name))
					return
				}
				if req.ClientSecret == nil {
					empty := ""
					upd.ClientSecret = &empty
					msg = "token endpoint host changed: stored client secret cleared"
				}
				// So are the secret token params.
				kept, err := secretParamsOffHost(cur.TokenParams, req.TokenParams)
				if err != nil {
					s.Error(w, r, err)
					return
				}
				upd.TokenParams = kept
			}
		}
		p, err := s.store.UpdateProvider(r.Context(), name, upd)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.refresher.Wake()
		s.proxyTargets.purge() // where the proxy sends tokens changes here at once
		s.logger.Info("provider updated", "provider", name, "actor", actor(r), "change", msg)
		s.audit(r, actor(r), "provider.update", name, "ok", msg)
		writeJSON(w, http.StatusOK, toProviderJSON(p))
	})
}

func (s *server) handleProviderDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := s.store.DeleteProvider(r.Context(), name); err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "provider.delete", name, "ok", "")
		w.WriteHeader(http.StatusNoContent)
	})
}

// secretParamsOffHost returns the token params of a provider whose token
// endpoint moves to another host: given, if the request gives them (none
// of them may then keep a stored value by tokenkeeper.SealedParamValue),
// or else cur without its secret params (nil when there are none to drop).
func secretParamsOffHost(cur map[string]string, given *map[string]string) (*map[string]string, error) {
	if given != nil {
		for k, v := range *given {
			if v == tokenkeeper.SealedParamValue && tokenkeeper.IsSecretParam(k) {
				return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "token_url moves to another host: give token param %q again in the same request (the stored one is never sent to a new host)", k)
			}
		}
		return given, nil
	}
	kept := map[string]string{}
	dropped := false
	for k, v := range cur {
		if tokenkeeper.IsSecretParam(k) {
			dropped = true
			continue
		}
		kept[k] = v
	}
	if !dropped {
		return nil, nil
	}
	return &kept, nil
}
