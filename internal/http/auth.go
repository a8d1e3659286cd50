package http

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// APIKeyPrefix starts every API key, so that a key is recognisable in a
// secret scanner and distinguishable from other bearer tokens.
const APIKeyPrefix = "tk_"

// NewAPIKey returns a new random API key (256 bits) and the record to store
// for it; the key itself is shown once and never stored.
func NewAPIKey(name string, role tokenkeeper.Role, credentials []string) (string, *tokenkeeper.APIKey) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	key := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(key))
	return key, &tokenkeeper.APIKey{
		Name: name, Prefix: key[:len(APIKeyPrefix)+6], Hash: h[:], Role: role, Credentials: credentials,
	}
}

type ctxKey int

const callerKey ctxKey = iota

// callerFrom returns the authenticated API key of the request.
func callerFrom(ctx context.Context) *tokenkeeper.APIKey {
	k, _ := ctx.Value(callerKey).(*tokenkeeper.APIKey)
	return k
}

// keyCache remembers recently authenticated API keys so that the token read
// path costs no database query per request.
type keyCache struct {
	ttl     time.Duration
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]cachedKey // guarded by mu
}

type cachedKey struct {
	key   *tokenkeeper.APIKey
	until time.Time
}

func newKeyCache(ttl time.Duration) *keyCache {
	return &keyCache{ttl: ttl, entries: make(map[[sha256.Size]byte]cachedKey)}
}

func (c *keyCache) get(h [sha256.Size]byte, now time.Time) *tokenkeeper.APIKey {
	c.mu.RLock()
	e, ok := c.entries[h]
	c.mu.RUnlock()
	if !ok || now.After(e.until) {
		return nil
	}
	return e.key
}

func (c *keyCache) put(h [sha256.Size]byte, k *tokenkeeper.APIKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 10000 { // bounded: drop everything rather than grow
		clear(c.entries)
	}
	c.entries[h] = cachedKey{key: k, until: now.Add(c.ttl)}
}

func (c *keyCache) purge() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// authenticate resolves the bearer API key of the request; a missing or bad
// key gets 401.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, key, ok := strings.Cut(auth, " ")
		if auth == "" {
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "an API key is required: send Authorization: Bearer tk_..."))
			return
		}
		if !ok || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(key, APIKeyPrefix) {
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "malformed Authorization header: expected Bearer followed by an API key starting with %s", APIKeyPrefix))
			return
		}
		h := sha256.Sum256([]byte(key))
		now := s.now()
		k := s.keys.get(h, now)
		if k == nil {
			var err error
			k, err = s.store.APIKeyByHash(r.Context(), h[:])
			if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
				s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "invalid or revoked API key"))
				return
			} else if err != nil {
				s.Error(w, r, err)
				return
			}
			s.keys.put(h, k, now)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey, k)))
	})
}

// requireAdmin lets only admin keys through.
func (s *server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := callerFrom(r.Context()); k == nil || k.Role != tokenkeeper.RoleAdmin {
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EFORBIDDEN, "this operation requires an admin API key"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireGrant lets a key through only to credentials it was granted; any
// other name gets the same 404 as a credential that does not exist.
func (s *server) requireGrant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if k := callerFrom(r.Context()); k == nil || !k.CanRead(name) {
			s.Error(w, r, errNotFound(name))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func errNotFound(name string) error {
	return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "credential %q not found", name)
}
