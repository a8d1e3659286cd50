package http

import (
	"net/http"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// credentialJSON is a credential as the API shows it: never a secret.
type credentialJSON struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Provider        string            `json:"provider"`
	EndUserID       string            `json:"end_user_id,omitempty"`
	EndUserName     string            `json:"end_user_name,omitempty"`
	EndUserEmail    string            `json:"end_user_email,omitempty"`
	Extras          map[string]string `json:"extras,omitempty"` // kept by the provider's profile
	TokenURL        string            `json:"token_url"`
	GrantType       string            `json:"grant_type"`
	ClientID        string            `json:"client_id"`
	Scopes          []string          `json:"scopes"`
	AuthStyle       string            `json:"auth_style"`
	Params          map[string]string `json:"params,omitempty"`
	RefreshLead     string            `json:"refresh_lead,omitempty"`
	Status          string            `json:"status"`
	FailureCount    int               `json:"failure_count"`
	LastError       string            `json:"last_error,omitempty"`
	LastErrorCode   string            `json:"last_error_code,omitempty"`
	HasToken        bool              `json:"has_token"`
	HasRefreshToken bool              `json:"has_refresh_token"`
	ExpiresAt       *time.Time        `json:"expires_at,omitempty"`          // advertised to consumers
	ProviderExpires *time.Time        `json:"provider_expires_at,omitempty"` // as the provider said
	LastRefreshAt   *time.Time        `json:"last_refresh_at,omitempty"`
	NextRefreshAt   *time.Time        `json:"next_refresh_at,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

func utcPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func toCredentialJSON(c *tokenkeeper.Credential) *credentialJSON {
	j := &credentialJSON{
		ID: c.ID, Name: c.Name, Provider: c.Provider, EndUserID: c.EndUserID, EndUserName: c.EndUserName, EndUserEmail: c.EndUserEmail, Extras: c.Extras,
		TokenURL: c.TokenURL, GrantType: string(c.GrantType), ClientID: c.ClientID,
		Scopes: c.Scopes, AuthStyle: string(c.AuthStyle), Params: maskParams(c.Params),
		Status: string(c.Status), FailureCount: c.FailureCount, LastError: c.LastError, LastErrorCode: c.LastErrorCode,
		HasToken: c.Token != nil && c.Token.AccessToken != "", HasRefreshToken: c.RefreshToken != "",
		LastRefreshAt: utcPtr(c.LastRefreshAt), CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(),
	}
	if j.Scopes == nil {
		j.Scopes = []string{}
	}
	if c.RefreshLead > 0 {
		j.RefreshLead = c.RefreshLead.String()
	}
	if c.Token != nil {
		j.ExpiresAt = utcPtr(refresh.AdvertisedExpiry(c))
		j.ProviderExpires = utcPtr(c.Token.ExpiresAt)
	}
	if c.Status == tokenkeeper.StatusActive || c.Status == tokenkeeper.StatusError {
		j.NextRefreshAt = utcPtr(c.NextRefreshAt)
	}
	return j
}

// parseDuration parses a Go duration for the named field; "" is zero.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, tokenkeeper.Errorf(tokenkeeper.EINVALID, "%s must be a non-negative Go duration such as 30s or 5m, got %q", field, truncate(s, 40))
	}
	return d, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// credentialCreateRequest creates a credential of a provider (provider),
// or in the inline form (token_url, client_id, client_secret, auth_style),
// which reuses or creates a provider (see sqlstore.Store.CreateCredential).
type credentialCreateRequest struct {
	Name         string            `json:"name"`
	Provider     string            `json:"provider"`
	EndUserID    string            `json:"end_user_id"`
	TokenURL     string            `json:"token_url"`
	GrantType    string            `json:"grant_type"`
	ClientID     string            `json:"client_id"`
	ClientSecret string            `json:"client_secret"`
	RefreshToken string            `json:"refresh_token"`
	Scopes       []string          `json:"scopes"`
	AuthStyle    string            `json:"auth_style"`
	Params       map[string]string `json:"params"`
	RefreshLead  string            `json:"refresh_lead"`
}

func (s *server) handleCredentialCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req credentialCreateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		lead, err := parseDuration("refresh_lead", req.RefreshLead)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		if req.AuthStyle == "" && req.Provider == "" {
			req.AuthStyle = string(tokenkeeper.AuthStyleHeader)
		}
		c := &tokenkeeper.Credential{
			Name: req.Name, Provider: req.Provider, EndUserID: req.EndUserID,
			TokenURL: req.TokenURL, GrantType: tokenkeeper.GrantType(req.GrantType),
			ClientID: req.ClientID, ClientSecret: req.ClientSecret, RefreshToken: req.RefreshToken,
			Scopes: req.Scopes, AuthStyle: tokenkeeper.AuthStyle(req.AuthStyle), Params: req.Params,
			RefreshLead: lead, Status: tokenkeeper.StatusActive, NextRefreshAt: s.now(),
		}
		if req.Provider == "" {
			// The inline form: the provider's URL is checked here; a named
			// provider's were when it was created or updated.
			if err := c.Validate(); err != nil {
				s.Error(w, r, err)
				return
			}
			if err := s.checkTokenURL(c.TokenURL); err != nil {
				s.Error(w, r, err)
				return
			}
		}
		if err := s.store.CreateCredential(r.Context(), c); err != nil {
			s.Error(w, r, err)
			return
		}
		s.recordEvent(r, c, tokenkeeper.EventCreated, "credential created")
		s.audit(r, actor(r), "credential.create", c.Name, "ok", string(c.GrantType))
		s.refresher.Forget(c.Name)
		s.refresher.Wake()
		w.Header().Set("Location", "/v1/credentials/"+c.Name)
		writeJSON(w, http.StatusCreated, toCredentialJSON(c))
	})
}

// recordEvent records an operator action; a failure to record is logged, not
// returned, since the action itself succeeded.
func (s *server) recordEvent(r *http.Request, c *tokenkeeper.Credential, kind, msg string) {
	ev := &tokenkeeper.Event{
		CredentialID: c.ID, CredentialName: c.Name, Time: s.now(), Kind: kind, Outcome: tokenkeeper.OutcomeOK,
		Message: msg, Actor: actor(r),
	}
	if err := s.store.AddEvent(r.Context(), ev); err != nil {
		s.logger.Warn("record event", "credential", c.Name, "kind", kind, "err", err)
	}
}

func actor(r *http.Request) string { return callerFrom(r.Context()).actor() }

func (s *server) handleCredentialList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A row whose sealed fields do not open is skipped and named in
		// "unreadable" (present only then), rather than failing the list.
		q := r.URL.Query()
		creds, unreadable, err := s.store.ReadableCredentials(r.Context(), tokenkeeper.CredentialFilter{
			Provider: q.Get("provider"), Status: tokenkeeper.Status(q.Get("status")), EndUserID: q.Get("end_user_id")})
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]*credentialJSON, 0, len(creds))
		for _, c := range creds {
			out = append(out, s.credentialFor(r, c))
		}
		body := map[string]any{"credentials": out}
		if len(unreadable) > 0 {
			body["unreadable"] = unreadable
		}
		writeJSON(w, http.StatusOK, body)
	})
}

func (s *server) handleCredentialGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.store.Credential(r.Context(), r.PathValue("name"))
		if err != nil {
			s.Error(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.credentialFor(r, c))
	})
}

// credentialFor is c as the caller of r may see it: viewers get the error
// code of the last failure but not its description, which may quote the
// response of whatever the token URL points at.
func (s *server) credentialFor(r *http.Request, c *tokenkeeper.Credential) *credentialJSON {
	j := toCredentialJSON(c)
	if isViewer(r) {
		j.LastError = ""
	}
	return j
}

func isViewer(r *http.Request) bool {
	c := callerFrom(r.Context())
	return c == nil || c.role == tokenkeeper.RoleViewer
}

type credentialUpdateRequest struct {
	TokenURL     *string            `json:"token_url"`
	ClientID     *string            `json:"client_id"`
	ClientSecret *string            `json:"client_secret"`
	RefreshToken *string            `json:"refresh_token"`
	Scopes       *[]string          `json:"scopes"`
	AuthStyle    *string            `json:"auth_style"`
	Params       *map[string]string `json:"params"`
	RefreshLead  *string            `json:"refresh_lead"`
	Status       *string            `json:"status"`
	EndUserID    *string            `json:"end_user_id"`
}

func (s *server) handleCredentialUpdate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req credentialUpdateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		upd := tokenkeeper.CredentialUpdate{
			TokenURL: req.TokenURL, ClientID: req.ClientID, ClientSecret: req.ClientSecret,
			RefreshToken: req.RefreshToken, Scopes: req.Scopes, Params: req.Params, EndUserID: req.EndUserID,
		}
		if req.AuthStyle != nil {
			a := tokenkeeper.AuthStyle(*req.AuthStyle)
			upd.AuthStyle = &a
		}
		if req.RefreshLead != nil {
			d, err := parseDuration("refresh_lead", *req.RefreshLead)
			if err != nil {
				s.Error(w, r, err)
				return
			}
			upd.RefreshLead = &d
		}
		if req.Status != nil {
			// Operators may switch a credential off and on; the other
			// statuses are the refresher's to set.
			st := tokenkeeper.Status(*req.Status)
			if st != tokenkeeper.StatusActive && st != tokenkeeper.StatusDisabled {
				s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "status may only be set to active or disabled"))
				return
			}
			upd.Status = &st
			if st == tokenkeeper.StatusActive {
				now := s.now()
				upd.NextRefreshAt = &now
			}
		}
		msg := "credential updated"
		if req.ClientSecret != nil || req.RefreshToken != nil || req.redirectsSecrets() {
			// Secrets, and where or how they are sent, change only for a
			// fresh caller: otherwise a stolen session could point the
			// token URL at itself and force a refresh.
			if c := callerFrom(r.Context()); c == nil || !c.fresh {
				s.freshRequired(w, r)
				return
			}
			msg = "credential endpoint or client settings changed"
			if req.ClientSecret != nil || req.RefreshToken != nil {
				msg = "credential secrets replaced"
			}
		}
		if req.TokenURL != nil {
			if err := tokenkeeper.ValidateTokenURL(*req.TokenURL); err != nil {
				s.Error(w, r, err)
				return
			}
			if err := s.checkTokenURL(*req.TokenURL); err != nil {
				s.Error(w, r, err)
				return
			}
			cur, err := s.store.Credential(r.Context(), name)
			if err != nil {
				s.Error(w, r, err)
				return
			}
			if err := clearSecretsOnHostChange(cur, *req.TokenURL, &upd); err != nil {
				s.Error(w, r, err)
				return
			}
			if upd.ClientSecret != req.ClientSecret || upd.RefreshToken != req.RefreshToken || upd.Params != req.Params {
				msg = "token endpoint host changed: stored secrets cleared"
			}
		}
		if req.Scopes != nil && upd.NextRefreshAt == nil {
			// A token with the new scopes now, not at the next planned refresh.
			now := s.now()
			upd.NextRefreshAt = &now
		}
		ev := &tokenkeeper.Event{Time: s.now(), Kind: tokenkeeper.EventUpdated, Outcome: tokenkeeper.OutcomeOK, Message: msg, Actor: actor(r)}
		c, err := s.store.UpdateCredential(r.Context(), name, upd, ev)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.refresher.Forget(name)
		s.proxyTargets.forget(name) // its provider may have changed
		s.refresher.Wake()
		s.audit(r, actor(r), "credential.update", name, "ok", msg)
		writeJSON(w, http.StatusOK, toCredentialJSON(c))
	})
}

func (s *server) handleCredentialDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := s.store.DeleteCredential(r.Context(), name); err != nil {
			s.Error(w, r, err)
			return
		}
		s.refresher.Forget(name)
		s.proxyTargets.forget(name)
		s.logger.Info("credential deleted", "credential", name, "actor", actor(r))
		s.audit(r, actor(r), "credential.delete", name, "ok", "")
		w.WriteHeader(http.StatusNoContent)
	})
}

type eventJSON struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Outcome   string    `json:"outcome"`
	ErrorCode string    `json:"error_code,omitempty"`
	Message   string    `json:"message,omitempty"`
	LatencyMS *float64  `json:"latency_ms,omitempty"`
	Actor     string    `json:"actor,omitempty"`
}

func (s *server) handleCredentialEvents() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be a whole number from 1 to 1000"))
				return
			}
			limit = n
		}
		// kind=refresh lists the rolling history of refresh attempts,
		// kind=operator the operator events (created, updated, ...).
		class := r.URL.Query().Get("kind")
		if class != "" && class != tokenkeeper.EventClassRefresh && class != tokenkeeper.EventClassOperator {
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "kind must be %q or %q", tokenkeeper.EventClassRefresh, tokenkeeper.EventClassOperator))
			return
		}
		name := r.PathValue("name")
		if _, err := s.store.Credential(r.Context(), name); err != nil {
			s.Error(w, r, err)
			return
		}
		evs, err := s.store.EventsOfClass(r.Context(), name, class, limit)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]eventJSON, 0, len(evs))
		viewer := isViewer(r)
		for _, e := range evs {
			j := eventJSON{ID: e.ID, Time: e.Time.UTC(), Kind: e.Kind, Outcome: e.Outcome, ErrorCode: e.ErrorCode, Message: e.Message, Actor: e.Actor}
			if viewer && e.Kind == tokenkeeper.EventRefresh && e.Outcome != tokenkeeper.OutcomeOK {
				j.Message = "" // may quote the provider's response: the error code says what failed
			}
			if e.Kind == tokenkeeper.EventRefresh {
				ms := float64(e.Latency.Microseconds()) / 1000
				j.LatencyMS = &ms
			}
			out = append(out, j)
		}
		writeJSON(w, http.StatusOK, map[string]any{"events": out})
	})
}
