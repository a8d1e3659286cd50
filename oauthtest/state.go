package oauthtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
)

// accessRetention is how long an access token's record is kept after it
// expires, so that AccessTokenInfo can still tell an expired token from one
// never issued. Records older than that are pruned lazily.
const accessRetention = time.Minute

// digest is the SHA-256 of a token, code or secret. The server keys its maps
// by digests and never keeps a token itself.
type digest [sha256.Size]byte

func hashOf(s string) digest { return sha256.Sum256([]byte(s)) }

// Token prefixes make the kind of an opaque token visible to a human reading
// a test failure; the server never relies on them.
const (
	accessPrefix  = "oat_"
	refreshPrefix = "ort_"
	codePrefix    = "oac_"
)

// NewAccessToken returns a new random access token of the form this
// server issues (the prefix oat_ and 256 bits, 47 characters in all), for
// a harness that seeds a store with tokens as if the server had issued
// them: a refresh then replaces a token by one of the same length, as it
// does in a store that the server filled. No server knows the token.
func NewAccessToken() string { return newToken(accessPrefix) }

// newToken returns prefix followed by 256 random bits, base64url-encoded.
func newToken(prefix string) string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// client is a registered client. Fields other than id are guarded by
// Server.mu.
type client struct {
	id         string
	secretHash digest
	public     bool      // registered without a secret
	epoch      uint64    // bumped to revoke every access token of the client
	families   []*family // families started since the client's tokens were last revoked
	// lastCC is the newest client_credentials access token per scope, for
	// WithRevokePrevious.
	lastCC map[string]*accessRecord
}

// family is a refresh token family: the tokens descending from one grant.
// Its fields are guarded by Server.mu.
type family struct {
	id         string
	client     *client
	scope      string
	revoked    bool
	generation int            // generation of the newest refresh token
	current    *refreshRecord // the token a refresh is expected to present
	lastAccess *accessRecord  // the newest access token, for WithRevokePrevious
}

// refreshRecord is the state of one refresh token, guarded by Server.mu.
type refreshRecord struct {
	family        *family
	generation    int       // 1 for the token that started the family
	expiresAt     time.Time // zero: never expires
	retired       bool      // rotated away
	retiredAt     time.Time
	presentations int
}

// accessRecord is the state of one access token, guarded by Server.mu.
type accessRecord struct {
	client    *client
	family    *family // nil for client_credentials
	epoch     uint64  // client.epoch at issuance
	scope     string
	expiresAt time.Time
	revoked   bool
}

// valid reports whether the access token may be used at now.
func (a *accessRecord) valid(now time.Time) bool {
	return !a.revokedNow() && now.Before(a.expiresAt)
}

// revokedNow reports whether the token was revoked, alone, with its family
// or with all tokens of its client.
func (a *accessRecord) revokedNow() bool {
	return a.revoked || a.epoch != a.client.epoch || (a.family != nil && a.family.revoked)
}

// codeRecord is the state of one authorization code, guarded by Server.mu.
type codeRecord struct {
	client      *client
	epoch       uint64
	redirectURI string
	challenge   string // S256 code challenge; "" without PKCE
	scope       string
	expiresAt   time.Time
	used        bool
	family      *family // the family its redemption started
	iss         string  // the issuer the authorization response named
	nonce       string  // OpenID Connect nonce; "" when none
	user        EndUser // who approved the request
	authTime    time.Time
}

// expiryQueue holds digests in the order they were added, which is the order
// of their expiry as long as the lifetime is fixed and the clock does not go
// back. Pruning stops at the first entry not yet due, so an out-of-order
// entry only delays pruning; it never removes anything early.
type expiryQueue struct {
	items []queued
	head  int
}

type queued struct {
	key digest
	at  time.Time // when the entry may be pruned
}

func (q *expiryQueue) push(key digest, at time.Time) {
	q.items = append(q.items, queued{key, at})
}

// popDue calls fn for each entry due at now, removing it.
func (q *expiryQueue) popDue(now time.Time, fn func(digest)) {
	for q.head < len(q.items) && !now.Before(q.items[q.head].at) {
		fn(q.items[q.head].key)
		q.items[q.head] = queued{}
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}

func (q *expiryQueue) len() int { return len(q.items) - q.head }

// normalizeScope returns the space-separated scope tokens of s, deduplicated,
// in their first order.
func normalizeScope(s string) string {
	fields := strings.Fields(s)
	seen := make(map[string]bool, len(fields))
	out := fields[:0]
	for _, f := range fields {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

// scopeSubset reports whether every scope token in req is in granted.
func scopeSubset(req, granted string) bool {
	have := make(map[string]bool)
	for _, g := range strings.Fields(granted) {
		have[g] = true
	}
	for _, r := range strings.Fields(req) {
		if !have[r] {
			return false
		}
	}
	return true
}

// expiresIn converts a remaining lifetime to whole seconds, rounding up, so
// that a token with any life left never reports 0 and a 1.5 s lifetime
// reports 2.
func expiresIn(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
