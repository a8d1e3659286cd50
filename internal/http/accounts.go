package http

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
)

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *server) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req loginRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		if req.Username == "" || req.Password == "" {
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "username and password are required"))
			return
		}
		toks, err := s.auth.Login(r.Context(), req.Username, req.Password, r.RemoteAddr)
		if err != nil {
			outcome := "denied"
			if tokenkeeper.ErrorCode(err) == auth.ETOOMANYREQUESTS {
				outcome = "rate_limited"
			}
			s.audit(r, "user:"+truncate(req.Username, 64), "auth.login", truncate(req.Username, 64), outcome, "")
			s.Error(w, r, err)
			return
		}
		s.audit(r, toks.Claims.Actor(), "auth.login", req.Username, "ok", "")
		writeJSON(w, http.StatusOK, toks)
	})
}

type authRefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (s *server) handleAuthRefresh() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req authRefreshRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		if req.RefreshToken == "" {
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "refresh_token is required"))
			return
		}
		toks, err := s.auth.Refresh(r.Context(), req.RefreshToken)
		var reuse *auth.ReuseError
		if errors.As(err, &reuse) {
			// Not aggregated with other refusals: a reuse is a theft signal
			// naming whose session it was.
			// The presenter may be a thief: the actor is anonymous, the
			// target the user whose session was revoked.
			s.audit(r, "anonymous", "auth.refresh_reuse", "user:"+reuse.Username, "family_revoked",
				"a rotated refresh token was presented again: family "+reuse.FamilyID+" revoked")
			s.Error(w, r, err)
			return
		}
		if err != nil {
			s.audit(r, "anonymous", "auth.refresh", "", "denied", tokenkeeper.ErrorMessage(err))
			s.Error(w, r, err)
			return
		}
		s.audit(r, toks.Claims.Actor(), "auth.refresh", toks.Claims.Username, "ok", "")
		writeJSON(w, http.StatusOK, toks)
	})
}

func (s *server) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callerFrom(r.Context())
		if c.claims == nil {
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "logout needs a user's access token, not an API key"))
			return
		}
		if err := s.auth.Logout(r.Context(), c.claims); err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, c.actor(), "auth.logout", c.name, "ok", "")
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *server) handleWhoami() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callerFrom(r.Context())
		out := map[string]any{"kind": c.kind, "name": c.name, "role": c.role, "fresh": c.fresh}
		if c.claims != nil {
			out["expires_at"] = c.claims.ExpiresAt.UTC()
			out["auth_time"] = c.claims.AuthTime.UTC()
		}
		if c.role == tokenkeeper.RoleConsumer {
			out["credentials"] = c.grants
		}
		writeJSON(w, http.StatusOK, out)
	})
}

type userJSON struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toUserJSON(u *tokenkeeper.User) userJSON {
	return userJSON{ID: u.ID, Username: u.Username, Role: string(u.Role), CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC()}
}

type userCreateRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

func (s *server) handleUserCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req userCreateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		u, err := s.auth.CreateUser(r.Context(), req.Username, req.Password, tokenkeeper.Role(req.Role))
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "user.create", u.Username, "ok", "role "+string(u.Role))
		writeJSON(w, http.StatusCreated, toUserJSON(u))
	})
}

func (s *server) handleUserList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		users, err := s.auth.Users(r.Context())
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]userJSON, 0, len(users))
		for _, u := range users {
			out = append(out, toUserJSON(u))
		}
		writeJSON(w, http.StatusOK, map[string]any{"users": out})
	})
}

func (s *server) handleUserDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := s.auth.DeleteUser(r.Context(), name); err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "user.delete", name, "ok", "")
		w.WriteHeader(http.StatusNoContent)
	})
}

type passwordRequest struct {
	Password string `json:"password"`
}

func (s *server) handleUserPassword() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req passwordRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		if err := s.auth.SetPassword(r.Context(), name, req.Password); err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "user.password", name, "ok", "")
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleUserRevokeSessions ends every session of a user: all its
// refresh-token families and their access tokens (on every replica within
// the auth service's reload interval). The password stays.
func (s *server) handleUserRevokeSessions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		n, err := s.auth.RevokeSessions(r.Context(), name)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "user.revoke_sessions", name, "ok", fmt.Sprintf("%d sessions", n))
		writeJSON(w, http.StatusOK, map[string]any{"revoked_sessions": n})
	})
}

type clientJSON struct {
	ID          string    `json:"id"`
	ClientID    string    `json:"client_id"`
	Credentials []string  `json:"credentials"`
	CreatedAt   time.Time `json:"created_at"`
	// ClientSecret is set only in the answers that create or rotate it.
	ClientSecret string `json:"client_secret,omitempty"`
}

func toClientJSON(c *tokenkeeper.ServiceClient) clientJSON {
	j := clientJSON{ID: c.ID, ClientID: c.ClientID, Credentials: c.Credentials, CreatedAt: c.CreatedAt.UTC()}
	if j.Credentials == nil {
		j.Credentials = []string{}
	}
	return j
}

type clientCreateRequest struct {
	ClientID    string   `json:"client_id"`
	Credentials []string `json:"credentials"`
}

func (s *server) handleClientCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req clientCreateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		secret, c, err := s.auth.CreateServiceClient(r.Context(), req.ClientID, req.Credentials)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "client.create", c.ClientID, "ok", "")
		j := toClientJSON(c)
		j.ClientSecret = secret
		writeJSON(w, http.StatusCreated, j)
	})
}

func (s *server) handleClientList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs, err := s.auth.ServiceClients(r.Context())
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]clientJSON, 0, len(cs))
		for _, c := range cs {
			out = append(out, toClientJSON(c))
		}
		writeJSON(w, http.StatusOK, map[string]any{"clients": out})
	})
}

func (s *server) handleClientDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := s.auth.DeleteServiceClient(r.Context(), id); err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "client.delete", id, "ok", "")
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *server) handleClientRotate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		secret, err := s.auth.RotateClientSecret(r.Context(), id)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		s.audit(r, actor(r), "client.rotate_secret", id, "ok", "")
		writeJSON(w, http.StatusOK, map[string]string{"client_id": id, "client_secret": secret})
	})
}

type auditJSON struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	Target     string    `json:"target,omitempty"`
	Outcome    string    `json:"outcome"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

func (s *server) handleAudit() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := tokenkeeper.AuditFilter{Limit: 100, Actor: q.Get("actor"), Action: q.Get("action")}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be a whole number from 1 to 1000"))
				return
			}
			f.Limit = n
		}
		if v := q.Get("before"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "before must be a positive record id"))
				return
			}
			f.BeforeID = n
		}
		recs, err := s.authStore.Audit(r.Context(), f)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]auditJSON, 0, len(recs))
		for _, a := range recs {
			out = append(out, auditJSON{ID: a.ID, Time: a.Time.UTC(), Actor: a.Actor, Action: a.Action, Target: a.Target,
				Outcome: a.Outcome, RemoteAddr: a.RemoteAddr, Detail: a.Detail})
		}
		writeJSON(w, http.StatusOK, map[string]any{"records": out})
	})
}
