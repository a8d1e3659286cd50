package http

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

type webhookJSON struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	// Secret is set only in the response that creates the endpoint.
	Secret string `json:"secret,omitempty"`
}

func toWebhookJSON(e *tokenkeeper.WebhookEndpoint) *webhookJSON {
	return &webhookJSON{ID: e.ID, URL: e.URL, Events: e.Events, CreatedAt: e.CreatedAt.UTC()}
}

type webhookDeliveryJSON struct {
	ID             int64           `json:"id"`
	MessageID      string          `json:"message_id"`
	EventType      string          `json:"event_type"`
	CredentialID   string          `json:"credential_id,omitempty"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	LastStatusCode int             `json:"last_status_code,omitempty"`
	LastError      string          `json:"last_error,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	LastAttemptAt  *time.Time      `json:"last_attempt_at,omitempty"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at,omitempty"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
	Payload        json.RawMessage `json:"payload"`
}

func toDeliveryJSON(d *tokenkeeper.WebhookDelivery) *webhookDeliveryJSON {
	j := &webhookDeliveryJSON{ID: d.ID, MessageID: d.MessageID, EventType: d.EventType, CredentialID: d.CredentialID,
		Status: d.Status, Attempts: d.Attempts, LastStatusCode: d.LastStatusCode, LastError: d.LastError,
		CreatedAt: d.CreatedAt.UTC(), LastAttemptAt: utcPtr(d.LastAttemptAt), FinishedAt: utcPtr(d.FinishedAt),
		Payload: json.RawMessage(d.Payload)}
	if d.Status == tokenkeeper.DeliveryPending {
		j.NextAttemptAt = utcPtr(d.NextAttemptAt)
	}
	return j
}

type webhookCreateRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

func (s *server) handleWebhookCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req webhookCreateRequest
		if err := s.decode(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		// Where the URL may point is checked before anything connects to it.
		if s.webhookURLCheck != nil {
			if err := s.webhookURLCheck(req.URL); err != nil {
				s.Error(w, r, err)
				return
			}
		}
		e := &tokenkeeper.WebhookEndpoint{URL: req.URL, Events: req.Events, Secret: sqlstore.NewWebhookSecret()}
		if err := s.webhooks.CreateWebhookEndpoint(r.Context(), e); err != nil {
			s.Error(w, r, err)
			return
		}
		s.logger.Info("webhook endpoint created", "webhook", e.ID, "events", e.Events, "actor", actor(r))
		s.audit(r, actor(r), "webhook.create", e.ID, "ok", "")
		j := toWebhookJSON(e)
		j.Secret = e.Secret
		writeJSON(w, http.StatusCreated, j)
	})
}

func (s *server) handleWebhookList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list, err := s.webhooks.WebhookEndpoints(r.Context())
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]*webhookJSON, 0, len(list))
		for _, e := range list {
			out = append(out, toWebhookJSON(e))
		}
		writeJSON(w, http.StatusOK, map[string]any{"webhooks": out})
	})
}

func (s *server) handleWebhookDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := s.webhooks.DeleteWebhookEndpoint(r.Context(), id); err != nil {
			s.Error(w, r, err)
			return
		}
		s.logger.Info("webhook endpoint deleted", "webhook", id, "actor", actor(r))
		s.audit(r, actor(r), "webhook.delete", id, "ok", "")
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *server) handleWebhookTest() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := s.webhooks.EnqueueWebhookTest(r.Context(), r.PathValue("id"))
		if err != nil {
			s.Error(w, r, err)
			return
		}
		if s.wakeWebhooks != nil {
			s.wakeWebhooks()
		}
		writeJSON(w, http.StatusAccepted, toDeliveryJSON(d))
	})
}

func (s *server) handleWebhookDeliveries() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := 50
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > sqlstore.MaxWebhookDeliveryList {
				s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be from 1 to %d", sqlstore.MaxWebhookDeliveryList))
				return
			}
			limit = n
		}
		ds, err := s.webhooks.WebhookDeliveries(r.Context(), r.PathValue("id"), limit)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		out := make([]*webhookDeliveryJSON, 0, len(ds))
		for _, d := range ds {
			out = append(out, toDeliveryJSON(d))
		}
		writeJSON(w, http.StatusOK, map[string]any{"deliveries": out})
	})
}
