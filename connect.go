package tokenkeeper

import (
	"context"
	"time"
)

// Connect session kinds: how the end user grants access.
const (
	ConnectAuthorizationCode = "authorization_code" // a link opened in a browser (RFC 6749 §4.1, RFC 7636)
	ConnectDevice            = "device"             // a user code entered on another device (RFC 8628)
)

// Connect session statuses, as the API reports them.
const (
	ConnectPending   = "pending"   // waiting for the end user (or for the code exchange)
	ConnectConnected = "connected" // the grant is stored and served
	ConnectFailed    = "failed"    // ended without a grant; Reason says why
)

// ConnectSession is one attempt to obtain a grant from a provider for a
// credential: a new one (Name, or one named after EndUserID) or, for a
// reconnect, an existing one whose grant it replaces in place.
//
// The link token, the state and the PKCE verifier are secrets: stores keep
// only digests of the first two and seal the verifier and the device code.
// None appears in JSON, logs, events or error messages.
type ConnectSession struct {
	ID         string
	Kind       string // ConnectAuthorizationCode or ConnectDevice
	ProviderID string
	Provider   string // the provider's name, filled when read
	// CredentialName is the credential the grant is stored in: created on
	// success, or replaced in place when Reconnect.
	CredentialName string
	Reconnect      bool
	EndUserID      string
	Scopes         []string
	ReturnTo       string // where the browser goes afterwards; "" shows a page

	// LinkHash and StateHash are SHA-256 digests (hex) of the single-use
	// link token and of the state sent to the provider.
	LinkHash  string
	StateHash string
	// CodeVerifier is the PKCE verifier (secret; sealed at rest).
	CodeVerifier string
	// Nonce is the OpenID Connect nonce sent in the authorization request.
	Nonce string
	// RedirectURI is the redirect URI sent to the provider.
	RedirectURI string

	// Device flow fields (RFC 8628): DeviceCode is a secret (sealed).
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	Interval                time.Duration

	Status       string // ConnectPending, ConnectConnected or ConnectFailed
	Reason       string // why it failed: an OAuth error code or a short class
	Message      string // human readable, never a secret
	CredentialID string // the credential connected, once connected
	LinkUsedAt   time.Time
	StateUsedAt  time.Time
	CreatedBy    string
	ExpiresAt    time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// ConnectEvent is one step of a connect session (opened, failed,
// connected). It never holds a secret.
type ConnectEvent struct {
	SessionID string
	Time      time.Time
	Kind      string
	Outcome   string
	ErrorCode string
	Message   string
}

// Grant is what a code or device exchange obtained, to be stored in a
// credential.
type Grant struct {
	RefreshToken string // secret; "" when the provider issued none
	Token        Token  // the access token of the exchange
	Scopes       []string
	EndUserName  string // from the ID token, when the provider is OpenID Connect
	EndUserEmail string
	// EndUserSubject is the ID token's sub; it becomes the end user id of
	// a credential that was given none.
	EndUserSubject string
	// Extras become the credential's Extras (see Credential.Extras); on a
	// reconnect they replace the old ones when any is given.
	Extras map[string]string
}

// ConnectStore keeps connect sessions. Every method is safe for concurrent
// use, also across processes sharing the database.
type ConnectStore interface {
	// CreateConnectSession validates s and inserts it, assigning ID,
	// CreatedAt and UpdatedAt, with Status pending. Provider names the
	// provider. For a reconnect CredentialName must name an existing
	// credential of that provider; otherwise it must be free. Returns
	// EINVALID, ENOTFOUND or ECONFLICT.
	CreateConnectSession(ctx context.Context, s *ConnectSession) error
	// ConnectSession returns the session by id, its secrets opened.
	// Returns ENOTFOUND.
	ConnectSession(ctx context.Context, id string) (*ConnectSession, error)
	// UseConnectLink marks the link with digest linkHash used, once: it
	// returns the session if its link was unused, it is pending and not
	// expired at now. Returns ENOTFOUND (no such link), ECONFLICT (used
	// already, or the session ended) or EEXPIRED.
	UseConnectLink(ctx context.Context, linkHash string, now time.Time) (*ConnectSession, error)
	// UseConnectState consumes the state with digest stateHash, once: it
	// returns the pending, unexpired session it belongs to, secrets
	// opened. Of two concurrent calls one gets the session, the other
	// ECONFLICT. Returns ENOTFOUND, ECONFLICT or EEXPIRED.
	UseConnectState(ctx context.Context, stateHash string, now time.Time) (*ConnectSession, error)
	// CompleteConnectSession stores g in the session's credential and
	// marks the session connected, in one transaction: a new credential of
	// the session's provider, or, for a reconnect, the existing one with
	// its grant replaced in place (same id, name, events and grants;
	// status active). Returns the credential. Returns ECONFLICT if the
	// session is no longer pending (or the new name was taken meanwhile),
	// ENOTFOUND if the credential of a reconnect is gone.
	CompleteConnectSession(ctx context.Context, id string, g *Grant) (*Credential, error)
	// FailConnectSession marks a pending session failed with reason and
	// message (never a secret), and records the failure as an event of the
	// session and, for a reconnect, of the credential. A session that has
	// ended already is left alone. Returns ENOTFOUND.
	FailConnectSession(ctx context.Context, id, reason, message string) error
	// ConnectEvents returns the events of a session, oldest first.
	ConnectEvents(ctx context.Context, id string) ([]*ConnectEvent, error)
	// PendingDeviceSessions returns the pending, unexpired device sessions
	// (their device codes opened), for a poller to resume.
	PendingDeviceSessions(ctx context.Context, now time.Time) ([]*ConnectSession, error)
	// LeaseDevicePoll gives owner the right to poll the token endpoint for
	// the pending device session id until until, if no other owner holds
	// an unexpired lease; it reports whether owner holds it. Replicas that
	// all resume a session thus poll it one at a time.
	LeaseDevicePoll(ctx context.Context, id, owner string, until, now time.Time) (bool, error)
}
