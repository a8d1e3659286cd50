package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// maxVerified bounds the verified-token cache: past it, expired entries are
// dropped, and if none is, all.
const maxVerified = 10_000

// verifiedCache remembers the access tokens Verify accepted, by their
// SHA-256 (the tokens themselves are not kept), so that a token presented
// again is not decoded and its signature not computed again. What can
// change after a token was verified is checked on every use (verified.ok):
// its expiry, its key (still known, not retired) and its family
// (not revoked). The rest (the signature, issuer, audience, type, the
// claims' shape) cannot change for the same bytes.
type verifiedCache struct {
	m sync.Map // [sha256.Size]byte → *verified: reads take no lock
	// n counts the entries; mu serialises the writers, so that the bound
	// holds (the readers do not take it).
	mu sync.Mutex
	n  int // guarded by mu
}

// verified is a token Verify accepted.
type verified struct {
	claims *Claims // shared by every use: never modified
	header string  // the token's header segment, which names its key
	until  int64   // the Unix second from which it is expired (exp + leeway)
}

func newVerifiedCache() *verifiedCache {
	return &verifiedCache{}
}

// tokenHash hashes an access token; tokens of the usual size from a
// buffer on the stack, without an allocation.
func tokenHash(tok string) [sha256.Size]byte {
	var buf [1024]byte
	if len(tok) > len(buf) {
		return sha256.Sum256([]byte(tok))
	}
	return sha256.Sum256(buf[:copy(buf[:], tok)])
}

func (c *verifiedCache) get(h [sha256.Size]byte) *verified {
	if v, ok := c.m.Load(h); ok {
		return v.(*verified)
	}
	return nil
}

func (c *verifiedCache) put(h [sha256.Size]byte, v *verified, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= maxVerified {
		c.m.Range(func(k, e any) bool {
			if now.Unix() >= e.(*verified).until {
				c.m.Delete(k)
				c.n--
			}
			return true
		})
		if c.n >= maxVerified {
			c.m.Clear()
			c.n = 0
		}
	}
	if _, loaded := c.m.Swap(h, v); !loaded {
		c.n++
	}
}

func (c *verifiedCache) drop(h [sha256.Size]byte) {
	c.mu.Lock()
	if _, loaded := c.m.LoadAndDelete(h); loaded {
		c.n--
	}
	c.mu.Unlock()
}

// len returns the number of tokens remembered.
func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

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
