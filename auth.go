package tokenkeeper

import (
	"context"
	"time"
)

// RoleViewer is a user role that may list credentials and events but may not
// read tokens or change anything.
const RoleViewer Role = "viewer"

// User is a person who logs in to the broker with a password.
type User struct {
	ID           string
	Username     string
	PasswordHash string // an argon2id PHC string; never leaves the store and auth
	Role         Role   // RoleAdmin or RoleViewer
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// RefreshToken is one member of a refresh-token family: the chain of
// rotated refresh tokens that descends from one login. Only its SHA-256 is
// stored.
type RefreshToken struct {
	ID       string
	FamilyID string
	UserID   string
	Hash     []byte // SHA-256 of the opaque token
	// AuthTime is when the family's login happened (freshness windows).
	AuthTime  time.Time
	CreatedAt time.Time
	// ExpiresAt is this token's inactivity expiry; FamilyExpiresAt the
	// absolute maximum age of the whole family.
	ExpiresAt       time.Time
	FamilyExpiresAt time.Time
	// RotatedAt is zero while this is the family's current token.
	RotatedAt time.Time
	// RevokedAt is set when the family was revoked (logout, reuse).
	RevokedAt time.Time
}

// Revocation rejects the access tokens issued to a family until ExpiresAt
// (the longest an access token of the family can live).
type Revocation struct {
	FamilyID  string
	RevokedAt time.Time
	ExpiresAt time.Time
}

// ServiceClient is a service that obtains upstream tokens from the broker's
// OAuth2 token endpoint with the client_credentials grant.
type ServiceClient struct {
	ID          string
	ClientID    string
	SecretHash  []byte   // SHA-256 of the high-entropy client secret
	Credentials []string // credential names it may read
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// CanRead reports whether the client may read the named credential.
func (c *ServiceClient) CanRead(name string) bool {
	if c == nil {
		return false
	}
	for _, n := range c.Credentials {
		if n == name {
			return true
		}
	}
	return false
}

// SigningKey signs the broker's own JWTs. Secret is sealed at rest; every
// replica loads the same keys from the store.
type SigningKey struct {
	ID        string // the JWT "kid"
	Algorithm string // e.g. "HS256"
	Secret    []byte // secret
	CreatedAt time.Time
}

// AuditRecord is one entry of the audit log: who did what, when, from
// where, and how it ended. It never holds a secret value.
type AuditRecord struct {
	ID         int64
	Time       time.Time
	Actor      string // "user:alice", "apikey:ops", "client:billing", "anonymous"
	Action     string // "token.read", "auth.login", "auth.refresh", "auth.failed", "credential.create", ...
	Target     string // the credential, user, key or client acted on
	Outcome    string // "ok", "denied", "error"
	RemoteAddr string
	Detail     string
}

// AuditFilter selects audit records, newest first.
type AuditFilter struct {
	Limit    int   // 1..1000, default 100
	BeforeID int64 // only records with a smaller id (paging); 0 for none
	Actor    string
	Action   string
}

// AuthStore keeps the broker's own accounts: users, refresh-token families,
// service clients, JWT signing keys and the audit log. Every method is safe
// for concurrent use, and several processes may share one database.
type AuthStore interface {
	// CreateUser stores u, assigning ID, CreatedAt, UpdatedAt. Returns
	// EINVALID or ECONFLICT (username taken).
	CreateUser(ctx context.Context, u *User) error
	// User returns a user by name. Returns ENOTFOUND.
	User(ctx context.Context, username string) (*User, error)
	// UserByID returns a user by id. Returns ENOTFOUND.
	UserByID(ctx context.Context, id string) (*User, error)
	// Users lists the users by name.
	Users(ctx context.Context) ([]*User, error)
	// SetUserPassword replaces a user's password hash, leaving its
	// sessions alone (a re-hash of the same password). Returns ENOTFOUND.
	SetUserPassword(ctx context.Context, username, hash string) error
	// ChangeUserPassword replaces a user's password hash and, in the same
	// transaction, ends all its sessions as RevokeUserSessions does.
	// Returns EINVALID or ENOTFOUND.
	ChangeUserPassword(ctx context.Context, username, hash string, now, accessExpiresAt time.Time) error
	// RevokeUserSessions revokes all of a user's families (with
	// revocations until accessExpiresAt) and refuses the families of
	// logins whose AuthTime is not after now. It returns how many
	// sessions it ended: the families that were live at now (a current
	// token neither revoked nor expired), so that a second call returns
	// 0. Returns EINVALID or ENOTFOUND.
	RevokeUserSessions(ctx context.Context, username string, now, accessExpiresAt time.Time) (int, error)
	// DeleteUser removes a user and revokes all its families (with
	// revocations until accessExpiresAt). Returns ENOTFOUND.
	DeleteUser(ctx context.Context, username string, now, accessExpiresAt time.Time) error

	// CreateRefreshToken stores the first token of a new family.
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error
	// RefreshTokenByHash returns a refresh token by hash, whatever its state.
	// Returns ENOTFOUND.
	RefreshTokenByHash(ctx context.Context, hash []byte) (*RefreshToken, error)
	// RotateRefreshToken atomically marks old as rotated at now and stores
	// next in the same family, but only if old is still current and its
	// family not revoked: otherwise ECONFLICT and nothing is written (the
	// caller treats it as reuse).
	RotateRefreshToken(ctx context.Context, oldID string, now time.Time, next *RefreshToken) error
	// RevokeFamily revokes every refresh token of the family and records a
	// Revocation of its access tokens until accessExpiresAt. Idempotent.
	RevokeFamily(ctx context.Context, familyID string, now, accessExpiresAt time.Time) error
	// Revocations returns the revocations that have not expired at now.
	Revocations(ctx context.Context, now time.Time) ([]*Revocation, error)

	// CreateServiceClient stores c, assigning ID and times. Returns EINVALID
	// or ECONFLICT (client_id taken).
	CreateServiceClient(ctx context.Context, c *ServiceClient) error
	// ServiceClient returns a client by client_id. Returns ENOTFOUND.
	ServiceClient(ctx context.Context, clientID string) (*ServiceClient, error)
	// ServiceClients lists the clients by client_id.
	ServiceClients(ctx context.Context) ([]*ServiceClient, error)
	// SetServiceClientSecret replaces a client's secret hash. Returns ENOTFOUND.
	SetServiceClientSecret(ctx context.Context, clientID string, hash []byte) error
	// DeleteServiceClient removes a client. Returns ENOTFOUND.
	DeleteServiceClient(ctx context.Context, clientID string) error

	// AddSigningKey stores k with its secret sealed, assigning CreatedAt.
	AddSigningKey(ctx context.Context, k *SigningKey) error
	// SigningKeys returns all signing keys, newest first, secrets opened.
	SigningKeys(ctx context.Context) ([]*SigningKey, error)

	// AddAudit appends a record, assigning ID (and Time if zero).
	AddAudit(ctx context.Context, r *AuditRecord) error
	// Audit returns records matching f, newest first.
	Audit(ctx context.Context, f AuditFilter) ([]*AuditRecord, error)
	// PruneAudit deletes at most limit records older than before, oldest
	// first, in one short transaction, and returns how many it deleted.
	// Callers prune a big backlog in batches, so that no write waits long.
	// Returns EINVALID (limit not positive, before out of range).
	PruneAudit(ctx context.Context, before time.Time, limit int) (int, error)
}
