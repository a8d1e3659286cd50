package tokenkeeper

import (
	"context"
	"time"
)

// Webhook event types: what an endpoint subscribes to and what a delivery
// carries as its "type".
const (
	// WebhookCredentialConnected: a person connected (or reconnected) a
	// credential through the connect flow. The connect flow writes it, in
	// the transaction that commits the grant.
	WebhookCredentialConnected = "credential.connected"
	// WebhookCredentialNeedsReauth: the provider refused the grant for
	// good; someone has to act.
	WebhookCredentialNeedsReauth = "credential.needs_reauth"
	// WebhookCredentialError: the credential failed temporarily a number
	// of times in a row (the store's threshold).
	WebhookCredentialError = "credential.error"
	// WebhookCredentialRecovered: a credential that needed re-authorization
	// or had reported an error is active again.
	WebhookCredentialRecovered = "credential.recovered"
	// WebhookCredentialDeleted: the credential was deleted.
	WebhookCredentialDeleted = "credential.deleted"
	// WebhookConnectSessionFailed: a connect session ended without a
	// credential (the person refused, the code exchange failed, it
	// expired). The connect flow writes it.
	WebhookConnectSessionFailed = "connect_session.failed"
	// WebhookTest is sent by "webhook test"; never subscribed to.
	WebhookTest = "webhook.test"
)

// WebhookEventTypes lists the event types an endpoint may subscribe to.
var WebhookEventTypes = []string{
	WebhookCredentialConnected, WebhookCredentialNeedsReauth, WebhookCredentialError,
	WebhookCredentialRecovered, WebhookCredentialDeleted, WebhookConnectSessionFailed,
}

// ValidWebhookEvent reports whether t is an event type endpoints subscribe to.
func ValidWebhookEvent(t string) bool {
	for _, e := range WebhookEventTypes {
		if e == t {
			return true
		}
	}
	return false
}

// WebhookEndpoint is a URL that receives signed events. Secret is the
// Standard Webhooks signing secret ("whsec_" and base64 of the key): it is
// sealed at rest and shown once, when the endpoint is created.
type WebhookEndpoint struct {
	ID        string
	URL       string
	Events    []string // subscribed event types, each in WebhookEventTypes
	Secret    string   // secret
	CreatedAt time.Time
}

// Webhook delivery statuses.
const (
	DeliveryPending   = "pending"   // waiting for its first or next attempt
	DeliveryDelivered = "delivered" // the endpoint answered 2xx
	DeliveryFailed    = "failed"    // given up after the retry window
)

// WebhookDelivery is one event to one endpoint: the outbox row, claimed
// like a refresh (lease and fencing version), and its entry in the
// endpoint's delivery log. Payload never holds a secret.
type WebhookDelivery struct {
	ID             int64  // increases with the order changes were committed in, per credential
	MessageID      string // the webhook-id header: the same on every attempt
	EndpointID     string
	CredentialID   string // "" for events not about a credential
	EventType      string
	Payload        []byte // the JSON body sent
	Status         string // DeliveryPending, DeliveryDelivered or DeliveryFailed
	Attempts       int
	NextAttemptAt  time.Time
	LastAttemptAt  time.Time
	LastStatusCode int    // HTTP status of the last attempt; 0 if none came back
	LastError      string // why the last attempt failed, without secrets
	CreatedAt      time.Time
	FinishedAt     time.Time // when delivered or failed

	Version        int64 // fencing version, incremented by every claim
	LeaseOwner     string
	LeaseExpiresAt time.Time
}

// WebhookAttempt is the outcome of one delivery attempt, committed with
// CompleteWebhookDelivery. Status is DeliveryDelivered, DeliveryFailed
// (given up) or DeliveryPending (retry at NextAttemptAt).
type WebhookAttempt struct {
	Status        string
	StatusCode    int
	Error         string
	AttemptedAt   time.Time
	NextAttemptAt time.Time
}

// WebhookStore keeps webhook endpoints and their deliveries. Stores that
// implement it write a delivery for each subscribed endpoint in the same
// transaction as the credential change that causes it (a status change
// committed by CompleteRefresh or UpdateCredential, a deletion). Every
// method is safe for concurrent use, across processes sharing a database.
type WebhookStore interface {
	// CreateWebhookEndpoint stores e (URL, Events and Secret set),
	// assigning ID and CreatedAt. Returns EINVALID.
	CreateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint) error
	// WebhookEndpoint returns an endpoint with its secret opened. Returns
	// ENOTFOUND.
	WebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error)
	// WebhookEndpoints lists the endpoints, oldest first, secrets opened.
	WebhookEndpoints(ctx context.Context) ([]*WebhookEndpoint, error)
	// DeleteWebhookEndpoint removes an endpoint and its deliveries.
	// Returns ENOTFOUND.
	DeleteWebhookEndpoint(ctx context.Context, id string) error
	// EnqueueWebhookTest queues a WebhookTest delivery to the endpoint.
	// Returns ENOTFOUND.
	EnqueueWebhookTest(ctx context.Context, endpointID string) (*WebhookDelivery, error)
	// ClaimWebhookDeliveries leases up to limit pending deliveries that are
	// due at now and whose lease is free or expired, oldest first, and
	// never one while an older delivery of the same credential to the same
	// endpoint is pending (order per credential). Claimers in any process
	// get disjoint sets; each claim increments Version. Returns EINVALID.
	ClaimWebhookDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]*WebhookDelivery, error)
	// CompleteWebhookDelivery records an attempt and releases the lease if
	// owner still holds it at version. Returns ECONFLICT when fenced out
	// (nothing is written), ENOTFOUND or EINVALID.
	CompleteWebhookDelivery(ctx context.Context, id int64, owner string, version int64, a WebhookAttempt) error
	// WebhookDeliveries returns up to limit deliveries of an endpoint,
	// newest first (its delivery log). Returns ENOTFOUND or EINVALID.
	WebhookDeliveries(ctx context.Context, endpointID string, limit int) ([]*WebhookDelivery, error)
}
