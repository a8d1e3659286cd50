// Webhook endpoints and the outbox of deliveries (tokenkeeper.WebhookStore).
//
// A credential change that calls for an event writes one delivery per
// subscribed endpoint in its own transaction (enqueueWebhooks, called from
// CompleteRefresh, UpdateCredential and DeleteCredential): once the change
// is committed, so is the event, and a crash loses nothing. Deliveries are
// claimed like refreshes (lease and fencing version), so that each is sent
// by one replica at a time, and in order per credential and endpoint.

package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// DefaultWebhookErrorAfter is how many consecutive temporary failures send
// a credential.error event unless the store is told otherwise.
const DefaultWebhookErrorAfter = 3

// Limits of webhook inputs.
const (
	MaxWebhookURLLen       = 2048
	MaxWebhookDeliveryList = 1000
	MaxWebhookLastError    = 500
)

// webhookSubject is what an event says about its credential. It never
// holds a secret.
type webhookSubject struct {
	id, name, provider, providerID, endUser, status, lastErrorCode string
}

// subjectOf returns the event subject of a credential row; the provider's
// name is looked up when the event is queued.
func subjectOf(r *rawCredential) webhookSubject {
	endUser := r.endUserID
	if endUser == "" {
		endUser = r.endUserEmail
	}
	return webhookSubject{id: r.id, name: r.name, providerID: r.providerID, endUser: endUser, status: r.status, lastErrorCode: r.lastErrorCode}
}

// webhookPayload is the JSON body of a delivery, in the Standard Webhooks
// shape {type, timestamp, data}.
type webhookPayload struct {
	Type      string         `json:"type"`
	Timestamp time.Time      `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

func (w webhookSubject) payload(eventType string, now time.Time) string {
	p := webhookPayload{Type: eventType, Timestamp: now, Data: map[string]any{
		"credential": w.name, "credential_id": w.id, "provider": w.provider, "end_user": w.endUser,
		"status": w.status, "last_error_code": w.lastErrorCode,
	}}
	b, _ := json.Marshal(p) // strings and a time always marshal
	return string(b)
}

// webhookTransition returns the event a credential's status change calls
// for, or "". errorAfter is the failure count that sends credential.error.
func webhookTransition(prevStatus string, prevFailures int, next *rawCredential, errorAfter int) string {
	switch {
	case next.status == string(tokenkeeper.StatusNeedsReauth) && prevStatus != next.status:
		return tokenkeeper.WebhookCredentialNeedsReauth
	case next.status == string(tokenkeeper.StatusError) && prevFailures < errorAfter && next.failureCount >= errorAfter:
		return tokenkeeper.WebhookCredentialError
	case next.status == string(tokenkeeper.StatusActive) &&
		(prevStatus == string(tokenkeeper.StatusNeedsReauth) ||
			prevStatus == string(tokenkeeper.StatusError) && prevFailures >= errorAfter):
		return tokenkeeper.WebhookCredentialRecovered
	}
	return ""
}

// webhookOnChange writes the deliveries a credential's change from
// (prevStatus, prevFailures) to next calls for, in tx.
func (s *Store) webhookOnChange(ctx context.Context, tx Querier, prevStatus string, prevFailures int, next *rawCredential) error {
	if t := webhookTransition(prevStatus, prevFailures, next, s.webhookErrorAfter()); t != "" {
		return s.enqueueWebhooks(ctx, tx, t, subjectOf(next))
	}
	return nil
}

// DefaultWebhookLogRetention is how many finished deliveries each
// endpoint's log keeps unless the store is told otherwise.
const DefaultWebhookLogRetention = 1000

func (s *Store) webhookLogRetention() int {
	if s.WebhookLogRetention > 0 {
		return s.WebhookLogRetention
	}
	return DefaultWebhookLogRetention
}

func (s *Store) webhookErrorAfter() int {
	if s.WebhookErrorAfter > 0 {
		return s.WebhookErrorAfter
	}
	return DefaultWebhookErrorAfter
}

// webhookConnected writes, in tx, the credential.connected deliveries of
// a credential the connect flow has just connected or reconnected (r is
// the row it wrote). The connect flow calls it in the transaction that
// commits the grant.
func (s *Store) webhookConnected(ctx context.Context, tx Querier, r *rawCredential) error {
	return s.enqueueWebhooks(ctx, tx, tokenkeeper.WebhookCredentialConnected, subjectOf(r))
}

// webhookConnectSessionFailed writes, in tx, the connect_session.failed
// deliveries of a connect session that ended without a credential: the
// provider's name, the end user and a reason code (an OAuth error code
// such as access_denied, or "expired"). Never a secret. The connect flow
// calls it in the transaction that marks the session failed.
func (s *Store) webhookConnectSessionFailed(ctx context.Context, tx Querier, provider, endUser, reason string) error {
	return s.enqueueWebhooks(ctx, tx, tokenkeeper.WebhookConnectSessionFailed,
		webhookSubject{provider: provider, endUser: endUser, status: "failed", lastErrorCode: reason})
}

// enqueueWebhooks writes, in tx, one pending delivery of eventType for
// every endpoint subscribed to it. One statement; nothing when no endpoint
// subscribes. The connect flow calls it in the transaction that commits a
// connection (credential.connected) or a failed session
// (connect_session.failed).
func (s *Store) enqueueWebhooks(ctx context.Context, tx Querier, eventType string, w webhookSubject) error {
	now := s.now()
	if w.provider == "" && w.providerID != "" {
		if err := tx.QueryRow(ctx, `SELECT name FROM providers WHERE id = $1`, w.providerID).Scan(&w.provider); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	// events is a JSON array of strings, each a known type: a quoted
	// type matches exactly one of its elements.
	_, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries
			(message_id, endpoint_id, credential_id, event_type, payload, status, next_attempt_at, created_at)
		SELECT $1::text || id, id, $2, $3, $4, 'pending', $5, $5 FROM webhook_endpoints
		WHERE events LIKE $6`,
		"msg_"+newID()[:16]+"_", w.id, eventType, w.payload(eventType, now), now, `%"`+eventType+`"%`)
	return err
}

// checkWebhookURL validates an endpoint URL's form: absolute http or https,
// a host, no user info or fragment. Where it may point is the caller's
// check (internal/webhook).
func checkWebhookURL(raw string) error {
	if raw == "" {
		return Invalid("webhook url is required")
	}
	if len(raw) > MaxWebhookURLLen {
		return Invalid("webhook url must be at most %d bytes", MaxWebhookURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return Invalid("webhook url must be an absolute http or https URL without user info or fragment")
	}
	return nil
}

// CreateWebhookEndpoint stores e, assigning ID and CreatedAt; the secret is
// sealed. Events must be known types, at least one, no duplicates.
// Returns EINVALID.
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e *tokenkeeper.WebhookEndpoint) error {
	if e == nil {
		return Invalid("webhook endpoint is required")
	}
	if err := checkWebhookURL(e.URL); err != nil {
		return err
	}
	if len(e.Events) == 0 {
		return Invalid("at least one event type is required")
	}
	seen := map[string]bool{}
	for _, t := range e.Events {
		if !tokenkeeper.ValidWebhookEvent(t) {
			return Invalid("unknown event type %q: use %s", t, strings.Join(tokenkeeper.WebhookEventTypes, ", "))
		}
		if seen[t] {
			return Invalid("event type %q is listed twice", t)
		}
		seen[t] = true
	}
	if !strings.HasPrefix(e.Secret, "whsec_") || len(e.Secret) < len("whsec_")+24 {
		return Invalid("webhook secret must be whsec_ and base64 of at least 18 bytes")
	}
	n := *e
	n.ID = "wh_" + newID()[:24]
	n.Events = cloneList(e.Events)
	n.CreatedAt = s.now()
	secret, err := sealValue(s.ring, n.Secret, "webhook_endpoints", n.ID, "secret")
	if err != nil {
		return err
	}
	err = s.exec(ctx, "create webhook endpoint", nil, nil,
		`INSERT INTO webhook_endpoints (id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5)`,
		n.ID, n.URL, encodeList(n.Events), secret, n.CreatedAt)
	if err != nil {
		return err
	}
	*e = n
	return nil
}

func webhookNotFound(id string) error {
	return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "webhook endpoint %q not found", id)
}

func (s *Store) scanEndpoint(ctx context.Context, r interface{ Scan(...any) error }) (*tokenkeeper.WebhookEndpoint, error) {
	var e tokenkeeper.WebhookEndpoint
	var events string
	var secret []byte
	if err := r.Scan(&e.ID, &e.URL, &events, &secret, &e.CreatedAt); err != nil {
		return nil, err
	}
	e.CreatedAt = e.CreatedAt.UTC()
	if err := json.Unmarshal([]byte(events), &e.Events); err != nil {
		return nil, fmt.Errorf("decode events of webhook endpoint %s: %w", e.ID, err)
	}
	var err error
	if e.Secret, err = s.openSealed(ctx, s.conn, secret, "webhook_endpoints", e.ID, "secret"); err != nil {
		return nil, err
	}
	return &e, nil
}

// WebhookEndpoint returns an endpoint with its secret opened. Returns
// ENOTFOUND.
func (s *Store) WebhookEndpoint(ctx context.Context, id string) (*tokenkeeper.WebhookEndpoint, error) {
	e, err := s.scanEndpoint(ctx, s.conn.QueryRow(ctx, `SELECT id, url, events, secret, created_at FROM webhook_endpoints WHERE id = $1`, id))
	return e, s.err("get webhook endpoint", orNotFound(err, webhookNotFound(id)))
}

// WebhookEndpoints lists the endpoints, oldest first, secrets opened.
func (s *Store) WebhookEndpoints(ctx context.Context) ([]*tokenkeeper.WebhookEndpoint, error) {
	out, err := collect(ctx, s.conn, `SELECT id, url, events, secret, created_at FROM webhook_endpoints ORDER BY created_at, id`, nil,
		func(r Rows) (*tokenkeeper.WebhookEndpoint, error) { return s.scanEndpoint(ctx, r) })
	return out, s.err("list webhook endpoints", err)
}

// DeleteWebhookEndpoint removes an endpoint and its deliveries. Returns
// ENOTFOUND.
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	return s.write(ctx, "delete webhook endpoint", func(tx Querier) error {
		n, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return webhookNotFound(id)
		}
		_, err = tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE endpoint_id = $1`, id)
		return err
	})
}

// EnqueueWebhookTest queues a webhook.test delivery to the endpoint.
// Returns ENOTFOUND.
func (s *Store) EnqueueWebhookTest(ctx context.Context, endpointID string) (*tokenkeeper.WebhookDelivery, error) {
	now := s.now()
	body, _ := json.Marshal(webhookPayload{Type: tokenkeeper.WebhookTest, Timestamp: now, Data: map[string]any{"endpoint_id": endpointID}})
	var d *tokenkeeper.WebhookDelivery
	err := s.write(ctx, "queue webhook test", func(tx Querier) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM webhook_endpoints WHERE id = $1`, endpointID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return webhookNotFound(endpointID)
		}
		var err error
		d, err = scanDelivery(tx.QueryRow(ctx, `INSERT INTO webhook_deliveries
				(message_id, endpoint_id, credential_id, event_type, payload, status, next_attempt_at, created_at)
			VALUES ($1, $2, '', $3, $4, 'pending', $5, $5) RETURNING `+deliveryColumns,
			"msg_"+newID()[:16]+"_"+endpointID, endpointID, tokenkeeper.WebhookTest, string(body), now))
		return err
	})
	return d, err
}

const deliveryColumns = `id, message_id, endpoint_id, credential_id, event_type, payload, status, attempts,
	next_attempt_at, last_attempt_at, last_status_code, last_error, created_at, finished_at,
	version, lease_owner, lease_expires_at`

func scanDelivery(r interface{ Scan(...any) error }) (*tokenkeeper.WebhookDelivery, error) {
	var d tokenkeeper.WebhookDelivery
	var payload string
	var lastAttempt, finished, leaseExp *time.Time
	err := r.Scan(&d.ID, &d.MessageID, &d.EndpointID, &d.CredentialID, &d.EventType, &payload, &d.Status, &d.Attempts,
		&d.NextAttemptAt, &lastAttempt, &d.LastStatusCode, &d.LastError, &d.CreatedAt, &finished,
		&d.Version, &d.LeaseOwner, &leaseExp)
	if err != nil {
		return nil, err
	}
	d.Payload = []byte(payload)
	d.NextAttemptAt, d.CreatedAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC()
	d.LastAttemptAt, d.FinishedAt, d.LeaseExpiresAt = fromNull(lastAttempt), fromNull(finished), fromNull(leaseExp)
	return &d, nil
}

// ClaimWebhookDeliveries leases up to limit due pending deliveries, oldest
// first, skipping any whose credential has an older pending delivery to the
// same endpoint. See tokenkeeper.WebhookStore. Returns EINVALID.
func (s *Store) ClaimWebhookDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]*tokenkeeper.WebhookDelivery, error) {
	if err := checkLease(owner, lease); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, Invalid("limit must be positive")
	}
	now = utc(now)
	var out []*tokenkeeper.WebhookDelivery
	err := s.write(ctx, "claim webhook deliveries", func(tx Querier) error {
		var err error
		out, err = collect(ctx, tx, `UPDATE webhook_deliveries
			SET lease_owner = $1, lease_expires_at = $2, version = version + 1
			WHERE id IN (SELECT d.id FROM webhook_deliveries d
				WHERE d.status = 'pending' AND d.next_attempt_at <= $3
					AND (d.lease_owner = '' OR d.lease_expires_at <= $3)
					AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
						WHERE p.endpoint_id = d.endpoint_id AND p.credential_id = d.credential_id
							AND p.status = 'pending' AND p.id < d.id AND d.credential_id <> '')
				ORDER BY d.id LIMIT $4`+s.d.SkipLocked+`)
			RETURNING `+deliveryColumns,
			[]any{owner, now.Add(lease), now, limit}, func(r Rows) (*tokenkeeper.WebhookDelivery, error) { return scanDelivery(r) })
		return err
	})
	if err != nil {
		return nil, err
	}
	// RETURNING has no order; deliver oldest first.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].ID < out[j-1].ID; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// CompleteWebhookDelivery records an attempt and releases the lease if
// owner still holds it at version. Returns ECONFLICT when fenced out,
// ENOTFOUND or EINVALID.
func (s *Store) CompleteWebhookDelivery(ctx context.Context, id int64, owner string, version int64, a tokenkeeper.WebhookAttempt) error {
	switch a.Status {
	case tokenkeeper.DeliveryPending:
		if a.NextAttemptAt.IsZero() {
			return Invalid("a pending delivery needs its next attempt time")
		}
	case tokenkeeper.DeliveryDelivered, tokenkeeper.DeliveryFailed:
	default:
		return Invalid("invalid delivery status %q", a.Status)
	}
	if owner == "" {
		return Invalid("lease owner is required")
	}
	if len(a.Error) > MaxWebhookLastError {
		a.Error = a.Error[:MaxWebhookLastError]
	}
	now := s.now()
	attempted := a.AttemptedAt
	if attempted.IsZero() {
		attempted = now
	}
	var finished any
	if a.Status != tokenkeeper.DeliveryPending {
		finished = now
	}
	next := a.NextAttemptAt
	if next.IsZero() {
		next = now
	}
	return s.write(ctx, "complete webhook delivery", func(tx Querier) error {
		var endpointID string
		err := tx.QueryRow(ctx, `UPDATE webhook_deliveries SET
				status = $1, attempts = attempts + 1, last_attempt_at = $2, last_status_code = $3, last_error = $4,
				next_attempt_at = $5, finished_at = $6, version = version + 1, lease_owner = '', lease_expires_at = NULL
			WHERE id = $7 AND version = $8 AND lease_owner = $9 RETURNING endpoint_id`,
			a.Status, utc(attempted), a.StatusCode, a.Error, utc(next), finished, id, version, owner).Scan(&endpointID)
		if err == nil {
			if a.Status == tokenkeeper.DeliveryPending {
				return nil
			}
			// The log keeps the newest finished deliveries of each endpoint.
			_, err = tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE id IN (
					SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status <> 'pending'
					ORDER BY id DESC LIMIT `+s.d.LimitAll+` OFFSET $2)`, endpointID, s.webhookLogRetention())
			return err
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var c int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM webhook_deliveries WHERE id = $1`, id).Scan(&c); err != nil {
			return err
		}
		if c == 0 {
			return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "webhook delivery %d not found", id)
		}
		return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "webhook delivery %d is leased by another worker or has changed since it was claimed", id)
	})
}

// WebhookDeliveries returns up to limit deliveries of an endpoint, newest
// first. Returns ENOTFOUND or EINVALID.
func (s *Store) WebhookDeliveries(ctx context.Context, endpointID string, limit int) ([]*tokenkeeper.WebhookDelivery, error) {
	if limit <= 0 || limit > MaxWebhookDeliveryList {
		return nil, Invalid("limit must be from 1 to %d", MaxWebhookDeliveryList)
	}
	var n int
	if err := s.conn.QueryRow(ctx, `SELECT COUNT(*) FROM webhook_endpoints WHERE id = $1`, endpointID).Scan(&n); err != nil {
		return nil, s.err("list webhook deliveries", err)
	}
	if n == 0 {
		return nil, webhookNotFound(endpointID)
	}
	out, err := collect(ctx, s.conn, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2`,
		[]any{endpointID, limit}, func(r Rows) (*tokenkeeper.WebhookDelivery, error) { return scanDelivery(r) })
	return out, s.err("list webhook deliveries", err)
}

// NewWebhookSecret returns a fresh Standard Webhooks signing secret:
// "whsec_" and the base64 of 32 random bytes.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// webhookPrev reads, in tx and locking the row, the status and failure
// count a refresh is about to change; a missing row reads as "" and 0 (the
// refresh's own update then reports ENOTFOUND).
func (s *Store) webhookPrev(ctx context.Context, tx Querier, id string) (status string, failures int, err error) {
	err = tx.QueryRow(ctx, `SELECT status, failure_count FROM credentials WHERE id = $1`+s.d.ForUpdate, id).Scan(&status, &failures)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, nil
	}
	return status, failures, err
}

// resealWebhookSecrets re-seals every endpoint's secret during RotateKey.
func resealWebhookSecrets(rs *resealer) error {
	type row struct {
		id     string
		secret []byte
	}
	rows, err := collect(rs.ctx, rs.tx, `SELECT id, secret FROM webhook_endpoints ORDER BY id`+rs.s.d.ForUpdate, nil, func(r Rows) (row, error) {
		var x row
		err := r.Scan(&x.id, &x.secret)
		return x, err
	})
	if err != nil {
		return err
	}
	var updates [][]any
	for _, r := range rows {
		ct, err := rs.reseal(r.secret, "webhook_endpoints", r.id, "secret")
		if err != nil {
			return err
		}
		updates = append(updates, []any{ct, r.id})
	}
	return execEach(rs.ctx, rs.tx, `UPDATE webhook_endpoints SET secret = $1 WHERE id = $2`, updates)
}

// SetWebhookErrorAfter sets WebhookErrorAfter; call it before the store is
// used.
func (s *Store) SetWebhookErrorAfter(n int) { s.WebhookErrorAfter = n }

// ReleaseWebhookLeases frees every delivery lease, so that deliveries a
// killed process had claimed are sent at once rather than when their
// leases expire. Only for a database no other process uses (SQLite, one
// broker per file); the fencing version moves, so a late attempt of the
// previous owner cannot commit.
func (s *Store) ReleaseWebhookLeases(ctx context.Context) (int, error) {
	var n int64
	err := s.write(ctx, "release webhook leases", func(tx Querier) (err error) {
		n, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET lease_owner = '', lease_expires_at = NULL, version = version + 1
			WHERE lease_owner <> ''`)
		return err
	})
	return int(n), err
}
