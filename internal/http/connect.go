package http

import (
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/connect"
)

// connectRequest is the body of POST /v1/connect/sessions and
// POST /v1/connect/device.
type connectRequest struct {
	Provider  string   `json:"provider"`
	Name      string   `json:"name"`
	EndUserID string   `json:"end_user_id"`
	Scopes    []string `json:"scopes"`
	ReturnTo  string   `json:"return_to"`
}

func (req connectRequest) start(r *http.Request) connect.StartRequest {
	return connect.StartRequest{Provider: req.Provider, Name: req.Name, EndUserID: req.EndUserID,
		Scopes: req.Scopes, ReturnTo: req.ReturnTo, Actor: actor(r)}
}

// connectSessionJSON is a connect session as the API shows it: never the
// link, state, verifier or device code.
type connectSessionJSON struct {
	ID                      string             `json:"id"`
	Kind                    string             `json:"kind"`
	Provider                string             `json:"provider"`
	Credential              string             `json:"credential"`
	Reconnect               bool               `json:"reconnect"`
	EndUserID               string             `json:"end_user_id,omitempty"`
	Scopes                  []string           `json:"scopes,omitempty"`
	Status                  string             `json:"status"`
	Reason                  string             `json:"reason,omitempty"`
	Message                 string             `json:"message,omitempty"`
	UserCode                string             `json:"user_code,omitempty"`
	VerificationURI         string             `json:"verification_uri,omitempty"`
	VerificationURIComplete string             `json:"verification_uri_complete,omitempty"`
	ExpiresAt               time.Time          `json:"expires_at"`
	CreatedAt               time.Time          `json:"created_at"`
	UpdatedAt               time.Time          `json:"updated_at"`
	Events                  []connectEventJSON `json:"events,omitempty"`
}

type connectEventJSON struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Outcome   string    `json:"outcome,omitempty"`
	ErrorCode string    `json:"error_code,omitempty"`
	Message   string    `json:"message,omitempty"`
}

func toConnectJSON(cs *tokenkeeper.ConnectSession) *connectSessionJSON {
	j := &connectSessionJSON{ID: cs.ID, Kind: cs.Kind, Provider: cs.Provider, Credential: cs.CredentialName,
		Reconnect: cs.Reconnect, EndUserID: cs.EndUserID, Scopes: cs.Scopes, Status: cs.Status, Reason: cs.Reason,
		Message: cs.Message, ExpiresAt: cs.ExpiresAt.UTC(), CreatedAt: cs.CreatedAt.UTC(), UpdatedAt: cs.UpdatedAt.UTC()}
	if cs.Kind == tokenkeeper.ConnectDevice && cs.Status == tokenkeeper.ConnectPending {
		j.UserCode, j.VerificationURI, j.VerificationURIComplete = cs.UserCode, cs.VerificationURI, cs.VerificationURIComplete
	}
	return j
}

func (s *server) connectDisabled(w http.ResponseWriter, r *http.Request) bool {
	if s.connect == nil {
		s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "the connect flow is not enabled on this broker"))
		return true
	}
	return false
}

func (s *server) handleConnectCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.connectDisabled(w, r) {
			return
		}
		var req connectRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		st, err := s.connect.Start(r.Context(), req.start(r))
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "connect.create", st.Session.CredentialName, "ok", "session "+st.Session.ID)
		w.Header().Set("Location", "/v1/connect/sessions/"+st.Session.ID)
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusCreated, map[string]any{
			"id": st.Session.ID, "url": st.URL, "expires_at": st.Session.ExpiresAt.UTC(),
			"credential": st.Session.CredentialName, "reconnect": st.Session.Reconnect, "status": st.Session.Status,
		})
	})
}

func (s *server) handleConnectDevice() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.connectDisabled(w, r) {
			return
		}
		var req connectRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		st, err := s.connect.StartDevice(r.Context(), req.start(r))
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "connect.device", st.Session.CredentialName, "ok", "session "+st.Session.ID)
		body := map[string]any{
			"id": st.Session.ID, "session_id": st.Session.ID, "user_code": st.UserCode, "verification_uri": st.VerificationURI,
			"expires_at": st.Session.ExpiresAt.UTC(), "interval": int(st.Session.Interval / time.Second),
			"credential": st.Session.CredentialName, "reconnect": st.Session.Reconnect, "status": st.Session.Status,
		}
		if st.VerificationURIComplete != "" {
			body["verification_uri_complete"] = st.VerificationURIComplete
		}
		w.Header().Set("Location", "/v1/connect/sessions/"+st.Session.ID)
		writeJSON(w, http.StatusCreated, body)
	})
}

func (s *server) handleConnectGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs, err := s.store.ConnectSession(r.Context(), r.PathValue("id"))
		if err != nil {
			s.Error(w, r, err)
			return
		}
		if cs.Status == tokenkeeper.ConnectPending && !s.now().Before(cs.ExpiresAt) {
			// Nobody finished it in time: it ends now, as expired (a device
			// session with the reason its poller would give).
			reason := "expired"
			if cs.Kind == tokenkeeper.ConnectDevice {
				reason = "expired_token"
			}
			if err := s.store.FailConnectSession(r.Context(), cs.ID, reason, "the connect session expired before it was completed"); err != nil {
				s.Error(w, r, err)
				return
			}
			if cs, err = s.store.ConnectSession(r.Context(), cs.ID); err != nil {
				s.Error(w, r, err)
				return
			}
		}
		j := toConnectJSON(cs)
		evs, err := s.store.ConnectEvents(r.Context(), cs.ID)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		for _, e := range evs {
			j.Events = append(j.Events, connectEventJSON{Time: e.Time, Kind: e.Kind, Outcome: e.Outcome, ErrorCode: e.ErrorCode, Message: e.Message})
		}
		writeJSON(w, http.StatusOK, j)
	})
}

// handleConnectPage serves the connect flow's browser pages, or 404
// without it.
func (s *server) handleConnectPage(h func(*connect.Service) http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.connect == nil {
			http.NotFound(w, r)
			return
		}
		h(s.connect).ServeHTTP(w, r)
	})
}
