package tokenkeeper

import (
	"context"
	"time"
)

// GrantType is the OAuth2 grant a credential uses to obtain access tokens.
type GrantType string

// Grant types a credential may use.
const (
	GrantClientCredentials GrantType = "client_credentials"
	GrantRefreshToken      GrantType = "refresh_token"
)

// AuthStyle is how a credential authenticates its client to the token
// endpoint. It is always explicit: tokenkeeper never probes.
type AuthStyle string

// Client authentication styles (RFC 6749 §2.3.1).
const (
	AuthStyleHeader AuthStyle = "header" // client_secret_basic
	AuthStyleBody   AuthStyle = "body"   // client_secret_post
)

// Status is the refresh status of a credential.
type Status string

// Credential statuses.
const (
	// StatusActive: the last refresh succeeded (or none was needed yet).
	StatusActive Status = "active"
	// StatusError: the last refresh failed temporarily; it is retried with backoff.
	StatusError Status = "error"
	// StatusNeedsReauth: the provider refused the grant permanently
	// (invalid_grant, invalid_client, unauthorized_client). No automatic
	// attempt is made until the credential is updated or a refresh is forced.
	StatusNeedsReauth Status = "needs_reauth"
	// StatusDisabled: switched off by an operator; never refreshed.
	StatusDisabled Status = "disabled"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusActive, StatusError, StatusNeedsReauth, StatusDisabled:
		return true
	}
	return false
}

// Credential is one grant of a provider (an OAuth2 client registration)
// plus the token state the broker keeps for it: its refresh token, granted
// scopes, current access token and, optionally, the end user it belongs to.
// ClientSecret, RefreshToken and Token.AccessToken are secrets: stores seal
// them at rest and they never appear in JSON, logs, events or error
// messages.
type Credential struct {
	// ID is random, assigned by the store on creation and never changes. It is
	// part of the associated data that binds a sealed secret to its row.
	ID   string
	Name string

	// Provider names the credential's provider and ProviderID is its id.
	// On creation, a credential names its provider (Provider) or gives the
	// inline fields TokenURL, ClientID, ClientSecret and AuthStyle, and the
	// store reuses the provider with the same four values or creates one
	// named after the credential (see sqlstore.Store.CreateCredential).
	Provider   string
	ProviderID string

	// TokenURL, ClientID, ClientSecret, AuthStyle and TokenParams are the
	// provider's, as of the read: a refresh always uses the provider's
	// current values.
	TokenURL     string
	ClientID     string
	ClientSecret string // secret; the provider's
	AuthStyle    AuthStyle
	TokenParams  map[string]string // the provider's token parameters
	// Preset and TemplateVars are the provider's (see Provider.Preset).
	Preset       string
	TemplateVars map[string]string
	// APIBaseURL and APIToken are the provider's: where its API is and how
	// it takes a token (a profile's token check uses them).
	APIBaseURL string
	APIToken   APIToken

	GrantType    GrantType
	RefreshToken string // secret
	Scopes       []string
	// Params are the credential's own extra token parameters; they override
	// the provider's TokenParams of the same name.
	Params map[string]string

	// EndUserID is the caller's id of the end user the grant belongs to;
	// EndUserName and EndUserEmail are taken from an ID token or userinfo.
	// All three are optional and never secrets.
	EndUserID    string
	EndUserName  string
	EndUserEmail string
	// Extras are what the provider's profile keeps with the grant besides
	// its tokens, by response path or redirect parameter: Salesforce's
	// instance_url, QuickBooks' realmId, Slack's team.id. Identifiers,
	// never secrets (ValidateExtra): they are stored unsealed and shown.
	Extras map[string]string
	// RefreshLead is how long before expiry the token is refreshed; zero
	// means the broker's default.
	RefreshLead time.Duration

	// Token is the current access token, nil before the first refresh.
	Token *Token

	Status        Status
	FailureCount  int
	LastError     string // a description without secrets
	LastErrorCode string // the OAuth error code or a class such as "http_503"
	LastRefreshAt time.Time
	NextRefreshAt time.Time

	// Version is the fencing version. Every claim and every commit increments
	// it, and so does an update of anything a refresh depends on (token URL,
	// client id and secret, refresh token, grant, and those of its
	// provider): a refresh result is
	// committed only if the version it was claimed with is still current.
	Version        int64
	LeaseOwner     string
	LeaseExpiresAt time.Time

	// CreatedAt is when the credential was created; UpdatedAt the last
	// change of its settings or status. A refresh that leaves the status
	// as it was does not move UpdatedAt: LastRefreshAt says when the
	// token last changed.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Token is an access token as the broker serves it.
type Token struct {
	AccessToken string // secret
	TokenType   string
	ExpiresAt   time.Time // zero if unknown
}

// Valid reports whether t is non-empty and has more than leeway left at now.
func (t *Token) Valid(now time.Time, leeway time.Duration) bool {
	if t == nil || t.AccessToken == "" {
		return false
	}
	return t.ExpiresAt.IsZero() || t.ExpiresAt.Sub(now) > leeway
}

// CredentialUpdate holds the fields of a credential to change; nil fields are
// left alone. Setting ClientSecret or RefreshToken resets a needs_reauth or
// error status to active and schedules an immediate refresh. TokenURL,
// ClientID, ClientSecret and AuthStyle are the provider's: the store
// changes the provider in place when this credential is its only one, and
// otherwise moves the credential to a provider of its own with the new
// values, so that other credentials never change.
type CredentialUpdate struct {
	TokenURL     *string
	ClientID     *string
	ClientSecret *string
	RefreshToken *string
	Scopes       *[]string
	AuthStyle    *AuthStyle
	Params       *map[string]string
	RefreshLead  *time.Duration
	Status       *Status
	// Token replaces the access token, for a grant obtained anew (a
	// reconnect stores the access token of its code exchange with the
	// RefreshToken and Scopes it was granted). It moves the fencing
	// version.
	Token *Token
	// EndUserID, EndUserName and EndUserEmail set the end user.
	EndUserID    *string
	EndUserName  *string
	EndUserEmail *string
	// Extras replaces the credential's extra fields.
	Extras *map[string]string
	// NextRefreshAt, when set, reschedules the credential.
	NextRefreshAt *time.Time
}

// RefreshResult is what a worker commits after one attempt at the provider.
type RefreshResult struct {
	// Token is the new access token; nil when the attempt failed.
	Token *Token
	// RefreshToken is the rotated refresh token; "" keeps the current one.
	RefreshToken  string
	Status        Status
	FailureCount  int
	LastError     string
	LastErrorCode string
	LastRefreshAt time.Time
	NextRefreshAt time.Time
	// Event is recorded in the same transaction as the result.
	Event *Event
	// Claimed, if not nil, is the credential as the worker claimed it: the
	// grant the attempt used. It is not written. When the commit is fenced
	// out by a newer version while the worker still holds the lease (an
	// operator's edit, not another worker's claim), a store commits the
	// result on top of the new version if the grant is still Claimed's
	// (provider, token URL, client, auth style, grant type, refresh token,
	// scopes, params, status), so that a rotated refresh token is not lost;
	// otherwise it discards the result and releases the lease at once. A
	// nil Claimed keeps the plain fence: refused, the lease left to expire.
	// The lease owner of a commit with Claimed must be unique to its claim.
	// A Claimed at the commit's version is the state the commit replaces:
	// its Status and FailureCount decide the webhooks, unread.
	Claimed *Credential
}

// RefreshCommit is one result of a batch of commits (see
// RefreshBatchCommitter): the credential's ID, the lease owner and fencing
// version of its claim, and the result to commit.
type RefreshCommit struct {
	ID      string
	Owner   string
	Version int64
	Result  *RefreshResult
}

// RefreshBatchCommitter is a Store that commits several refresh results in
// one transaction. CompleteRefreshes commits each of batch as
// CompleteRefresh would, and returns per item the committed credential or
// its error (ECONFLICT when fenced out, ENOTFOUND, EINVALID); an error that
// concerns the whole transaction (the database is unreachable) is every
// item's error, and nothing is committed. It must be safe for concurrent
// use. Fewer transactions write fewer pages: on SQLite, the pages the
// events' tail and the schedule's index share are written once per batch.
type RefreshBatchCommitter interface {
	CompleteRefreshes(ctx context.Context, batch []RefreshCommit) ([]*Credential, []error)
}

// Event records something that happened to a credential: a refresh attempt
// with its outcome, or an operator action. An event never holds a secret.
type Event struct {
	ID             int64
	CredentialID   string
	CredentialName string
	Time           time.Time
	Kind           string        // "refresh", "created", "updated", "deleted", ...
	Outcome        string        // "ok", "error", "needs_reauth", "fenced", ...
	ErrorCode      string        // OAuth error code or error class, if any
	Message        string        // human readable, never a secret
	Latency        time.Duration // provider round trip, for refreshes
	Actor          string        // who caused it: "refresher:<owner>", "apikey:<id>", ...
}

// Event kinds and outcomes.
const (
	EventRefresh = "refresh"
	EventCreated = "created"
	EventUpdated = "updated"
	EventDeleted = "deleted"

	OutcomeOK          = "ok"
	OutcomeError       = "error"
	OutcomeNeedsReauth = "needs_reauth"
	OutcomeFenced      = "fenced"
)

// Event classes. Refresh events (kind EventRefresh) are a rolling history:
// a credential keeps only its newest ones. Every other kind is an operator
// event (created, updated, connected, status changes, deleted...), kept
// apart under its own cap, so that no volume of refreshes erases one.
const (
	EventClassRefresh  = "refresh"
	EventClassOperator = "operator"
)

// Role is what an API key may do.
type Role string

// API key roles.
const (
	RoleAdmin    Role = "admin"    // everything
	RoleConsumer Role = "consumer" // read the token of, and refresh, granted credentials
)

// APIKey is a key a service or an operator uses to call the broker. The key
// itself is shown once on creation; the store keeps only its SHA-256.
type APIKey struct {
	ID          string
	Name        string
	Prefix      string // the first characters of the key, for display
	Hash        []byte // SHA-256 of the whole key
	Role        Role
	Credentials []string // names a consumer may read; ignored for admin
	CreatedAt   time.Time
	RevokedAt   time.Time // zero while valid
}

// CanRead reports whether the key may read and refresh the named credential.
func (k *APIKey) CanRead(name string) bool {
	if k == nil || !k.RevokedAt.IsZero() {
		return false
	}
	if k.Role == RoleAdmin {
		return true
	}
	for _, n := range k.Credentials {
		if n == name {
			return true
		}
	}
	return false
}

// Store keeps credentials, their sealed secrets, events and API keys. Every
// method is safe for concurrent use, and several processes may share one
// database: the claim methods are atomic across processes.
type Store interface {
	ProviderStore
	ConnectStore

	// CreateCredential inserts c, assigning ID, Version, CreatedAt and
	// UpdatedAt, with the provider c names or one matching its inline
	// fields (see Credential.Provider). Returns EINVALID, ENOTFOUND (no
	// such provider) or ECONFLICT (name taken).
	CreateCredential(ctx context.Context, c *Credential) error
	// Credential returns the named credential with its secrets opened.
	// Returns ENOTFOUND.
	Credential(ctx context.Context, name string) (*Credential, error)
	// CredentialByID returns a credential by id. Returns ENOTFOUND.
	CredentialByID(ctx context.Context, id string) (*Credential, error)
	// Credentials returns all credentials ordered by name, secrets opened.
	Credentials(ctx context.Context) ([]*Credential, error)
	// ReadableCredentials is FilterCredentials that skips a row whose
	// sealed fields (or its provider's) do not open (tampered with, or
	// sealed with a key the database does not hold) or that does not
	// decode, and returns its name in unreadable instead of failing the
	// whole list. Returns EINVALID (a bad filter).
	ReadableCredentials(ctx context.Context, f CredentialFilter) (creds []*Credential, unreadable []string, err error)
	// UpdateCredential applies upd and records ev (if not nil) in the same
	// transaction. Returns ENOTFOUND or EINVALID.
	UpdateCredential(ctx context.Context, name string, upd CredentialUpdate, ev *Event) (*Credential, error)
	// DeleteCredential removes the credential and its events. Returns ENOTFOUND.
	DeleteCredential(ctx context.Context, name string) error

	// ClaimDue atomically leases up to limit credentials whose NextRefreshAt
	// is at or before now, whose status is active or error and whose lease is
	// free or expired, earliest first. Each returned credential carries the
	// incremented Version to commit with.
	ClaimDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]*Credential, error)
	// ClaimCredential leases one credential regardless of its schedule and
	// status (a forced refresh). Returns ENOTFOUND, or ECONFLICT when another
	// owner holds an unexpired lease.
	ClaimCredential(ctx context.Context, id, owner string, now time.Time, lease time.Duration) (*Credential, error)
	// CompleteRefresh commits r and releases the lease if the credential's
	// version still equals version and owner still holds the lease; with
	// r.Claimed, also over an operator's edit that kept the grant, and
	// otherwise the lease owner still holds is released (see
	// RefreshResult.Claimed). Returns ECONFLICT when fenced out (nothing of
	// r is written) or ENOTFOUND.
	CompleteRefresh(ctx context.Context, id, owner string, version int64, r *RefreshResult) (*Credential, error)
	// NextRefreshAt returns the earliest NextRefreshAt among refreshable
	// credentials (taking unexpired leases into account), ok=false if none.
	NextRefreshAt(ctx context.Context) (t time.Time, ok bool, err error)

	// AddEvent records an event.
	AddEvent(ctx context.Context, e *Event) error
	// Events returns up to limit events of the named credential, newest first.
	Events(ctx context.Context, credentialName string, limit int) ([]*Event, error)
	// EventsOfClass is Events restricted to one class (EventClassRefresh
	// or EventClassOperator; "" for all). Returns ENOTFOUND or EINVALID.
	EventsOfClass(ctx context.Context, credentialName, class string, limit int) ([]*Event, error)

	// CreateAPIKey stores k (Hash must be set), assigning ID and CreatedAt.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// APIKeyByHash returns the unrevoked key with the given hash. Returns ENOTFOUND.
	APIKeyByHash(ctx context.Context, hash []byte) (*APIKey, error)
	// APIKeys lists all keys, revoked ones included.
	APIKeys(ctx context.Context) ([]*APIKey, error)
	// RevokeAPIKey revokes a key by id or name. Returns ENOTFOUND.
	RevokeAPIKey(ctx context.Context, idOrName string) error

	// RotateKey adds a new data key, makes it the active one and re-seals
	// every secret with it. Returns the number of secrets re-sealed.
	RotateKey(ctx context.Context) (int, error)
	// Ping checks that the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}
