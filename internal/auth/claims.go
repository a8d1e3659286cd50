package auth

import (
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Claims are the verified claims of an access token.
type Claims struct {
	UserID   string // "sub"
	Username string // "name"
	Role     tokenkeeper.Role
	// Fresh is true for a token issued by a login (or, with a freshness
	// window, by a refresh inside the window). Use IsFresh, which also
	// honours FreshUntil.
	Fresh bool
	// FreshUntil, when not zero, ends the freshness of a fresh token: the
	// login time plus the freshness window.
	FreshUntil time.Time
	AuthTime   time.Time // when the login that started the family happened
	IssuedAt   time.Time
	ExpiresAt  time.Time
	FamilyID   string // the refresh-token family the token descends from
	ID         string // "jti"
}

// IsFresh reports whether the token counts as fresh at now: it was issued
// by a login (or inside the freshness window) and the window, if any, has
// not ended.
func (c *Claims) IsFresh(now time.Time) bool {
	if c == nil || !c.Fresh {
		return false
	}
	return c.FreshUntil.IsZero() || now.Before(c.FreshUntil)
}

// Actor names the caller in audit records: "user:<username>".
func (c *Claims) Actor() string {
	if c == nil {
		return "anonymous"
	}
	return "user:" + c.Username
}
