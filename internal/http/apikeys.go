package http

import (
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

type apiKeyJSON struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Prefix      string     `json:"prefix"`
	Role        string     `json:"role"`
	Credentials []string   `json:"credentials"`
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// Key is set only in the response that creates the key.
	Key string `json:"key,omitempty"`
}

func toAPIKeyJSON(k *tokenkeeper.APIKey) *apiKeyJSON {
	j := &apiKeyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Role: string(k.Role), Credentials: k.Credentials,
		CreatedAt: k.CreatedAt.UTC(), RevokedAt: utcPtr(k.RevokedAt)}
	if j.Credentials == nil {
		j.Credentials = []string{}
	}
	return j
}

type apiKeyCreateRequest struct {
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	Credentials []string `json:"credentials"`
}

// ValidateAPIKeyRequest checks a new key's name, role and grants.
func ValidateAPIKeyRequest(name string, role tokenkeeper.Role, creds []string) error {
	if err := tokenkeeper.ValidateName(name); err != nil {
		return err
	}
	switch role {
	case tokenkeeper.RoleAdmin:
		if len(creds) > 0 {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "an admin key may read every credential: do not list credentials")
		}
	case tokenkeeper.RoleConsumer:
		if len(creds) == 0 {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "a consumer key needs at least one credential name in credentials")
		}
		for _, c := range creds {
			if err := tokenkeeper.ValidateName(c); err != nil {
				return err
			}
		}
	default:
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "role must be admin or consumer")
	}
	return nil
}

func (s *server) handleAPIKeyCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req apiKeyCreateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		role := tokenkeeper.Role(req.Role)
		if err := ValidateAPIKeyRequest(req.Name, role, req.Credentials); err != nil {
			s.Error(w, r, err)
			return
		}
		key, rec := NewAPIKey(req.Name, role, req.Credentials)
		if err := s.store.CreateAPIKey(r.Context(), rec); err != nil {
			s.Error(w, r, err)
			return
		}
		s.logger.Info("api key created", "name", rec.Name, "role", rec.Role, "prefix", rec.Prefix, "actor", actor(r))
		s.audit(r, actor(r), "apikey.create", rec.Name, "ok", "role "+string(rec.Role))
		j := toAPIKeyJSON(rec)
		j.Key = key
		writeJSON(w, http.StatusCreated, j)
	})
}

func (s *server) handleAPIKeyList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys, err := s.store.APIKeys(r.Context())
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]*apiKeyJSON, 0, len(keys))
		for _, k := range keys {
			out = append(out, toAPIKeyJSON(k))
		}
		writeJSON(w, http.StatusOK, map[string]any{"api_keys": out})
	})
}

func (s *server) handleAPIKeyRevoke() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var already bool
		var err error
		if g, ok := s.store.(tokenkeeper.AdminGuard); ok {
			already, err = g.RevokeAPIKeyKeepingAdmin(r.Context(), id)
		} else {
			err = s.store.RevokeAPIKey(r.Context(), id)
		}
		if err != nil {
			if tokenkeeper.ErrorCode(err) == tokenkeeper.ECONFLICT {
				s.audit(r, actor(r), "apikey.revoke", id, "refused", "last admin credential")
			}
			s.Error(w, r, err)
			return
		}
		if already {
			// Idempotent, but the caller learns that nothing changed.
			writeJSON(w, http.StatusOK, map[string]any{"id": id, "already_revoked": true})
			return
		}
		s.keys.purge()
		s.audit(r, actor(r), "apikey.revoke", id, "ok", "")
		s.logger.Info("api key revoked", "key", id, "actor", actor(r))
		w.WriteHeader(http.StatusNoContent)
	})
}
