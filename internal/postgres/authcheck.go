package postgres

import (
	"crypto/sha256"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
)

// Limits of the auth store's inputs. Both stores enforce the same ones.
const (
	maxIDLen           = 128   // refresh token, family and user ids
	maxPasswordHashLen = 1024  // a PHC string is well under 200 bytes
	maxAlgorithmLen    = 32    // JWT "alg"
	minSigningSecret   = 32    // 256 bits, as RFC 7518 §3.2 asks of HS256
	maxSigningSecret   = 16384 // room for a PEM-encoded private key
	maxClientGrants    = 1000  // credential names per service client

	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// Audit field caps in bytes. Longer values are cut (an audit record is
// never refused for being verbose); Action is required.
const (
	maxAuditActor  = 200
	maxAuditAction = 100
	maxAuditTarget = 200
	maxAuditOut    = 32
	maxAuditAddr   = 100
	maxAuditDetail = 2000
)

func invalid(format string, args ...any) error {
	return tokenkeeper.Errorf(tokenkeeper.EINVALID, format, args...)
}

// validID reports whether id is 1 to maxIDLen letters, digits, '.', '_' or
// '-': store-assigned ids are hex, caller-chosen ones may be base64url.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
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

func checkID(field, id string) error {
	if !validID(id) {
		return invalid("%s must be 1 to %d letters, digits, '.', '_' or '-'", field, maxIDLen)
	}
	return nil
}

// checkRequiredTime rejects a zero time or one out of the stores' range.
func checkRequiredTime(field string, t time.Time) error {
	if t.IsZero() {
		return invalid("%s is required", field)
	}
	return checkTime(field, t)
}

func checkSHA256(field string, h []byte) error {
	if len(h) != sha256.Size {
		return invalid("%s must be a SHA-256 (%d bytes)", field, sha256.Size)
	}
	return nil
}

// checkPasswordHash accepts a non-empty hash of printable ASCII: PHC and
// bcrypt strings are. The hash is never quoted.
func checkPasswordHash(h string) error {
	if h == "" {
		return invalid("password hash is required")
	}
	if len(h) > maxPasswordHashLen {
		return invalid("password hash is too long")
	}
	for i := 0; i < len(h); i++ {
		if h[i] < 0x21 || h[i] > 0x7e {
			return invalid("password hash must be printable ASCII")
		}
	}
	return nil
}

func checkUserRole(r tokenkeeper.Role) error {
	if r != tokenkeeper.RoleAdmin && r != tokenkeeper.RoleViewer {
		return invalid("role must be admin or viewer")
	}
	return nil
}

func checkUser(u *tokenkeeper.User) error {
	if u == nil {
		return invalid("user is required")
	}
	if err := tokenkeeper.ValidateName(u.Username); err != nil {
		return err
	}
	if err := checkUserRole(u.Role); err != nil {
		return err
	}
	return checkPasswordHash(u.PasswordHash)
}

// checkNewRefreshToken validates the first token of a family. ID and
// FamilyID may be empty (the store assigns them), CreatedAt may be zero.
func checkNewRefreshToken(t *tokenkeeper.RefreshToken) error {
	if t == nil {
		return invalid("refresh token is required")
	}
	if t.ID != "" {
		if err := checkID("refresh token id", t.ID); err != nil {
			return err
		}
	}
	if t.FamilyID != "" {
		if err := checkID("family id", t.FamilyID); err != nil {
			return err
		}
	}
	if err := checkID("user id", t.UserID); err != nil {
		return err
	}
	if err := checkSHA256("refresh token hash", t.Hash); err != nil {
		return err
	}
	if err := checkTime("created_at", t.CreatedAt); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"auth_time", t.AuthTime}, {"expires_at", t.ExpiresAt}, {"family_expires_at", t.FamilyExpiresAt}} {
		if err := checkRequiredTime(f.name, f.t); err != nil {
			return err
		}
	}
	return nil
}

// checkNextRefreshToken validates the successor of a rotation. The family
// fields may be left empty: they are copied from the rotated token.
func checkNextRefreshToken(t *tokenkeeper.RefreshToken) error {
	if t == nil {
		return invalid("refresh token is required")
	}
	for _, f := range []struct{ name, v string }{{"refresh token id", t.ID}, {"family id", t.FamilyID}, {"user id", t.UserID}} {
		if f.v != "" {
			if err := checkID(f.name, f.v); err != nil {
				return err
			}
		}
	}
	if err := checkSHA256("refresh token hash", t.Hash); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"created_at", t.CreatedAt}, {"auth_time", t.AuthTime}, {"family_expires_at", t.FamilyExpiresAt}} {
		if err := checkTime(f.name, f.t); err != nil {
			return err
		}
	}
	return checkRequiredTime("expires_at", t.ExpiresAt)
}

// inheritFamily fills next's family fields from the rotated token, and
// refuses values that differ from it: a rotation cannot move a token to
// another family or user, or extend the family's life.
func inheritFamily(next *tokenkeeper.RefreshToken, familyID, userID string, authTime, familyExpiresAt time.Time) error {
	if next.FamilyID != "" && next.FamilyID != familyID {
		return invalid("the next refresh token must stay in the rotated token's family")
	}
	if next.UserID != "" && next.UserID != userID {
		return invalid("the next refresh token must belong to the rotated token's user")
	}
	if !next.AuthTime.IsZero() && !next.AuthTime.Equal(authTime) {
		return invalid("the next refresh token must keep the family's auth_time")
	}
	if !next.FamilyExpiresAt.IsZero() && !next.FamilyExpiresAt.Equal(familyExpiresAt) {
		return invalid("the next refresh token must keep the family's family_expires_at")
	}
	next.FamilyID, next.UserID = familyID, userID
	next.AuthTime, next.FamilyExpiresAt = authTime, familyExpiresAt
	return nil
}

func checkRevocationTimes(now, accessExpiresAt time.Time) error {
	if err := checkRequiredTime("now", now); err != nil {
		return err
	}
	return checkRequiredTime("access token expiry", accessExpiresAt)
}

func checkGrants(names []string) error {
	if len(names) > maxClientGrants {
		return invalid("a service client may be granted at most %d credentials", maxClientGrants)
	}
	for _, n := range names {
		if err := tokenkeeper.ValidateName(n); err != nil {
			return err
		}
	}
	return nil
}

func checkServiceClient(c *tokenkeeper.ServiceClient) error {
	if c == nil {
		return invalid("service client is required")
	}
	if err := tokenkeeper.ValidateName(c.ClientID); err != nil {
		return err
	}
	if err := checkSHA256("client secret hash", c.SecretHash); err != nil {
		return err
	}
	return checkGrants(c.Credentials)
}

func checkSigningKey(k *tokenkeeper.SigningKey) error {
	if k == nil {
		return invalid("signing key is required")
	}
	if err := tokenkeeper.ValidateName(k.ID); err != nil {
		return err
	}
	if k.Algorithm == "" || len(k.Algorithm) > maxAlgorithmLen {
		return invalid("signing key algorithm must be 1 to %d letters and digits", maxAlgorithmLen)
	}
	for i := 0; i < len(k.Algorithm); i++ {
		c := k.Algorithm[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return invalid("signing key algorithm must be 1 to %d letters and digits", maxAlgorithmLen)
		}
	}
	if len(k.Secret) < minSigningSecret || len(k.Secret) > maxSigningSecret {
		return invalid("signing key secret must be %d to %d bytes", minSigningSecret, maxSigningSecret)
	}
	return nil
}

// cleanText makes s storable in both stores (valid UTF-8, no NUL byte,
// which PostgreSQL text refuses) and cuts it to at most max bytes on a rune
// boundary, marking the cut with "…".
func cleanText(s string, max int) string {
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

// cleanAudit returns r with every text field cleaned and capped, or
// EINVALID if it has no action or an out-of-range time.
func cleanAudit(r *tokenkeeper.AuditRecord) (tokenkeeper.AuditRecord, error) {
	if r == nil {
		return tokenkeeper.AuditRecord{}, invalid("audit record is required")
	}
	n := *r
	n.Actor = cleanText(n.Actor, maxAuditActor)
	n.Action = cleanText(n.Action, maxAuditAction)
	n.Target = cleanText(n.Target, maxAuditTarget)
	n.Outcome = cleanText(n.Outcome, maxAuditOut)
	n.RemoteAddr = cleanText(n.RemoteAddr, maxAuditAddr)
	n.Detail = cleanText(n.Detail, maxAuditDetail)
	if n.Action == "" {
		return n, invalid("audit action is required")
	}
	if err := checkTime("audit time", n.Time); err != nil {
		return n, err
	}
	return n, nil
}

// auditLimit checks f and returns the number of records to return.
func auditLimit(f tokenkeeper.AuditFilter) (int, error) {
	if f.Limit < 0 || f.Limit > maxAuditLimit {
		return 0, invalid("limit must be between 1 and %d", maxAuditLimit)
	}
	if f.BeforeID < 0 {
		return 0, invalid("before_id must not be negative")
	}
	for _, v := range []struct {
		name, s string
		max     int
	}{{"actor", f.Actor, maxAuditActor}, {"action", f.Action, maxAuditAction}} {
		if len(v.s) > v.max || cleanText(v.s, v.max) != v.s {
			return 0, invalid("%s filter must be valid UTF-8 of at most %d bytes", v.name, v.max)
		}
	}
	if f.Limit == 0 {
		return defaultAuditLimit, nil
	}
	return f.Limit, nil
}
