package auth

import (
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/memo"
)

// maxVerified bounds the verified-token cache: past it, expired entries are
// dropped, and if none is, all.
const maxVerified = 10_000

// verifiedCache remembers the access tokens Verify accepted, so that a
// token presented again is not decoded and its signature not computed
// again. An entry is found by the token's signature segment (43 bytes of
// base64url, cheaper to hash than the whole token) and used only when the
// whole token equals the one verified. What can change after a token was
// verified is checked on every use (verified.ok): its expiry, its key
// (still known, not retired) and its family (not revoked). The rest (the
// signature, issuer, audience, type, the claims' shape) cannot change for
// the same bytes.
type verifiedCache struct {
	m memo.Map[string, *verified] // by signature segment
}

// verified is a token Verify accepted.
type verified struct {
	token  string  // the whole token
	claims *Claims // shared by every use: never modified
	header string  // the token's header segment, which names its key
	until  int64   // the Unix second from which it is expired (exp + leeway)
}

func newVerifiedCache() *verifiedCache {
	c := &verifiedCache{}
	c.m.Max = maxVerified
	return c
}

// signature returns the signature segment of tok, "" if it has none of
// the right length (verifyToken says why).
func signature(tok string) string {
	if len(tok) <= sigLen || tok[len(tok)-sigLen-1] != '.' {
		return ""
	}
	return tok[len(tok)-sigLen:]
}

// get returns the entry of tok, nil if there is none.
func (c *verifiedCache) get(tok string) *verified {
	if sig := signature(tok); sig != "" {
		if v, ok := c.m.Load(sig); ok && v.token == tok {
			return v
		}
	}
	return nil
}

// put remembers v, a copy of whose token it holds.
func (c *verifiedCache) put(v *verified, now time.Time) {
	v.token = strings.Clone(v.token) // not a part of a larger string it would keep alive
	if sig := signature(v.token); sig != "" {
		c.m.Store(sig, v, func(e *verified) bool { return now.Unix() >= e.until })
	}
}

// drop forgets v.
func (c *verifiedCache) drop(v *verified) { c.m.CompareAndDelete(signature(v.token), v) }

// len returns the number of tokens remembered.
func (c *verifiedCache) len() int { return c.m.Len() }

// ok reports whether v still holds at now, with the keys ks and the
// revocations revoked: not expired, its key known and not retired, its
// family not revoked. A token that fails is verified again in full, which
// says why it is refused.
func (v *verified) ok(ks *keySet, revoked revokedSet, now time.Time) bool {
	if now.Unix() >= v.until || ks == nil {
		return false
	}
	k := ks.byHeader[v.header]
	if k == nil || (!k.retireAt.IsZero() && !now.Before(k.retireAt)) {
		return false
	}
	if until, ok := revoked[v.claims.FamilyID]; ok && now.Before(until) {
		return false
	}
	return true
}
