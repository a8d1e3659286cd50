// Input checks of the store: every failure is a tokenkeeper EINVALID error.

package sqlstore

import (
	"crypto/sha256"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
)

// Limits of the auth store's inputs. Every dialect enforces the same ones.
const (
	MaxIDLen           = 128   // refresh token, family and user ids
	MaxPasswordHashLen = 1024  // a PHC string is well under 200 bytes
	MaxAlgorithmLen    = 32    // JWT "alg"
	MinSigningSecret   = 32    // 256 bits, as RFC 7518 §3.2 asks of HS256
	MaxSigningSecret   = 16384 // room for a PEM-encoded private key
	MaxClientGrants    = 1000  // credential names per service client

	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// Audit field caps in bytes. Longer values are cut (an audit record is
// never refused for being verbose); Action is required.
const (
	MaxAuditActor  = 200
	MaxAuditAction = 100
	MaxAuditTarget = 200
	MaxAuditOut    = 32
	MaxAuditAddr   = 100
	MaxAuditDetail = 2000
)

// Invalid returns an EINVALID error with a formatted message.
func Invalid(format string, args ...any) error {
	return tokenkeeper.Errorf(tokenkeeper.EINVALID, format, args...)
}

// ValidID reports whether id is 1 to MaxIDLen letters, digits, '.', '_' or
// '-': store-assigned ids are hex, caller-chosen ones may be base64url.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckID rejects an id that ValidID refuses.
func CheckID(field, id string) error {
	if !ValidID(id) {
		return Invalid("%s must be 1 to %d letters, digits, '.', '_' or '-'", field, MaxIDLen)
	}
	return nil
}

// checkOptionalID rejects an id that is neither empty nor valid.
func checkOptionalID(field, id string) error {
	if id == "" {
		return nil
	}
	return CheckID(field, id)
}

// firstErr returns the first of errs that is not nil.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckRequiredTime rejects a zero time or one out of the stores' range.
func CheckRequiredTime(field string, t time.Time) error {
	if t.IsZero() {
		return Invalid("%s is required", field)
	}
	return Time(field, t)
}

// CheckSHA256 rejects a hash that is not a SHA-256 digest.
func CheckSHA256(field string, h []byte) error {
	if len(h) != sha256.Size {
		return Invalid("%s must be a SHA-256 (%d bytes)", field, sha256.Size)
	}
	return nil
}

// CheckPasswordHash accepts a non-empty hash of printable ASCII: PHC and
// bcrypt strings are. The hash is never quoted.
func CheckPasswordHash(h string) error {
	if h == "" {
		return Invalid("password hash is required")
	}
	if len(h) > MaxPasswordHashLen {
		return Invalid("password hash is too long")
	}
	for i := 0; i < len(h); i++ {
		if h[i] < 0x21 || h[i] > 0x7e {
			return Invalid("password hash must be printable ASCII")
		}
	}
	return nil
}

// CheckUserRole accepts the user roles admin and viewer.
func CheckUserRole(r tokenkeeper.Role) error {
	if r != tokenkeeper.RoleAdmin && r != tokenkeeper.RoleViewer {
		return Invalid("role must be admin or viewer")
	}
	return nil
}

// CheckUser validates a user before it is stored.
func CheckUser(u *tokenkeeper.User) error {
	if u == nil {
		return Invalid("user is required")
	}
	return firstErr(tokenkeeper.ValidateName(u.Username), CheckUserRole(u.Role), CheckPasswordHash(u.PasswordHash))
}

// CheckNewRefreshToken validates the first token of a family. ID and
// FamilyID may be empty (the store assigns them), CreatedAt may be zero.
func CheckNewRefreshToken(t *tokenkeeper.RefreshToken) error {
	if t == nil {
		return Invalid("refresh token is required")
	}
	return firstErr(checkOptionalID("refresh token id", t.ID), checkOptionalID("family id", t.FamilyID),
		CheckID("user id", t.UserID), CheckSHA256("refresh token hash", t.Hash), Time("created_at", t.CreatedAt),
		CheckRequiredTime("auth_time", t.AuthTime), CheckRequiredTime("expires_at", t.ExpiresAt),
		CheckRequiredTime("family_expires_at", t.FamilyExpiresAt))
}

// CheckNextRefreshToken validates the successor of a rotation. The family
// fields may be left empty: they are copied from the rotated token.
func CheckNextRefreshToken(t *tokenkeeper.RefreshToken) error {
	if t == nil {
		return Invalid("refresh token is required")
	}
	return firstErr(checkOptionalID("refresh token id", t.ID), checkOptionalID("family id", t.FamilyID),
		checkOptionalID("user id", t.UserID), CheckSHA256("refresh token hash", t.Hash),
		Time("created_at", t.CreatedAt), Time("auth_time", t.AuthTime), Time("family_expires_at", t.FamilyExpiresAt),
		CheckRequiredTime("expires_at", t.ExpiresAt))
}

// InheritFamily fills next's family fields from the rotated token, and
// refuses values that differ from it: a rotation cannot move a token to
// another family or user, or extend the family's life.
func InheritFamily(next *tokenkeeper.RefreshToken, familyID, userID string, authTime, familyExpiresAt time.Time) error {
	if next.FamilyID != "" && next.FamilyID != familyID {
		return Invalid("the next refresh token must stay in the rotated token's family")
	}
	if next.UserID != "" && next.UserID != userID {
		return Invalid("the next refresh token must belong to the rotated token's user")
	}
	if !next.AuthTime.IsZero() && !next.AuthTime.Equal(authTime) {
		return Invalid("the next refresh token must keep the family's auth_time")
	}
	if !next.FamilyExpiresAt.IsZero() && !next.FamilyExpiresAt.Equal(familyExpiresAt) {
		return Invalid("the next refresh token must keep the family's family_expires_at")
	}
	next.FamilyID, next.UserID = familyID, userID
	next.AuthTime, next.FamilyExpiresAt = authTime, familyExpiresAt
	return nil
}

// CheckRevocationTimes validates the times of a family revocation.
func CheckRevocationTimes(now, accessExpiresAt time.Time) error {
	return firstErr(CheckRequiredTime("now", now), CheckRequiredTime("access token expiry", accessExpiresAt))
}

// CheckGrants validates the credential names a service client may read.
func CheckGrants(names []string) error {
	if len(names) > MaxClientGrants {
		return Invalid("a service client may be granted at most %d credentials", MaxClientGrants)
	}
	for _, n := range names {
		if err := tokenkeeper.ValidateName(n); err != nil {
			return err
		}
	}
	return nil
}

// CheckServiceClient validates a service client before it is stored.
func CheckServiceClient(c *tokenkeeper.ServiceClient) error {
	if c == nil {
		return Invalid("service client is required")
	}
	return firstErr(tokenkeeper.ValidateName(c.ClientID), CheckSHA256("client secret hash", c.SecretHash), CheckGrants(c.Credentials))
}

// CheckSigningKey validates a JWT signing key before it is stored.
func CheckSigningKey(k *tokenkeeper.SigningKey) error {
	if k == nil {
		return Invalid("signing key is required")
	}
	if err := tokenkeeper.ValidateName(k.ID); err != nil {
		return err
	}
	if k.Algorithm == "" || len(k.Algorithm) > MaxAlgorithmLen {
		return Invalid("signing key algorithm must be 1 to %d letters and digits", MaxAlgorithmLen)
	}
	for i := 0; i < len(k.Algorithm); i++ {
		c := k.Algorithm[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return Invalid("signing key algorithm must be 1 to %d letters and digits", MaxAlgorithmLen)
		}
	}
	if len(k.Secret) < MinSigningSecret || len(k.Secret) > MaxSigningSecret {
		return Invalid("signing key secret must be %d to %d bytes", MinSigningSecret, MaxSigningSecret)
	}
	return nil
}

// CleanText makes s storable in both stores (valid UTF-8, no NUL byte,
// which PostgreSQL text refuses) and cuts it to at most max bytes on a rune
// boundary, marking the cut with "…".
func CleanText(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	const mark = "…"
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// CleanAudit returns r with every text field cleaned and capped, or
// EINVALID if it has no action or an out-of-range time.
func CleanAudit(r *tokenkeeper.AuditRecord) (tokenkeeper.AuditRecord, error) {
	if r == nil {
		return tokenkeeper.AuditRecord{}, Invalid("audit record is required")
	}
	n := *r
	n.Actor = CleanText(n.Actor, MaxAuditActor)
	n.Action = CleanText(n.Action, MaxAuditAction)
	n.Target = CleanText(n.Target, MaxAuditTarget)
	n.Outcome = CleanText(n.Outcome, MaxAuditOut)
	n.RemoteAddr = CleanText(n.RemoteAddr, MaxAuditAddr)
	n.Detail = CleanText(n.Detail, MaxAuditDetail)
	if n.Action == "" {
		return n, Invalid("audit action is required")
	}
	if err := Time("audit time", n.Time); err != nil {
		return n, err
	}
	return n, nil
}

// AuditLimit checks f and returns the number of records to return.
func AuditLimit(f tokenkeeper.AuditFilter) (int, error) {
	if f.Limit < 0 || f.Limit > MaxAuditLimit {
		return 0, Invalid("limit must be between 1 and %d", MaxAuditLimit)
	}
	if f.BeforeID < 0 {
		return 0, Invalid("before_id must not be negative")
	}
	for _, v := range []struct {
		name, s string
		max     int
	}{{"actor", f.Actor, MaxAuditActor}, {"action", f.Action, MaxAuditAction}} {
		if len(v.s) > v.max || CleanText(v.s, v.max) != v.s {
			return 0, Invalid("%s filter must be valid UTF-8 of at most %d bytes", v.name, v.max)
		}
	}
	if f.Limit == 0 {
		return DefaultAuditLimit, nil
	}
	return f.Limit, nil
}

// Time rejects a non-zero time outside years 1 to 9999, which neither store
// can represent.
func Time(field string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "%s is out of range", field)
	}
	return nil
}
