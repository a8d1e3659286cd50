package http

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/internal/memo"
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

// caller is who makes a request: an API key or a user with an access token.
type caller struct {
	kind   string // "apikey" or "user"
	name   string
	role   tokenkeeper.Role
	fresh  bool     // API keys count as fresh: they are not obtained by refresh
	grants []string // the credentials a consumer key may read
	claims *auth.Claims
	id     string // kind:name, as actor returns it
}

// newCaller returns the caller kind:name with role; every caller is made
// by it, so that its actor name is made once.
func newCaller(kind, name string, role tokenkeeper.Role) *caller {
	return &caller{kind: kind, name: name, role: role, id: kind + ":" + name}
}

// actor names the caller in events and audit records.
func (c *caller) actor() string {
	if c == nil {
		return "anonymous"
	}
	return c.id
}

// canReadToken reports whether the caller may read the token of, and
// refresh, the named credential.
func (c *caller) canReadToken(name string) bool {
	switch {
	case c == nil:
		return false
	case c.role == tokenkeeper.RoleAdmin:
		return true
	case c.role == tokenkeeper.RoleConsumer:
		return slices.Contains(c.grants, name)
	}
	return false
}

// callerFrom returns the authenticated caller of the request.
func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey).(*caller)
	return c
}

// keyCache remembers recently authenticated API keys so that the token read
// path costs no database query per request. An entry is trusted without a
// query for ttl; past that, each use asks the store, and while the store
// does not answer the entry keeps working for at most maxStale after its
// last successful check. Then it is evicted and the key fails closed until
// the store confirms it again.
type keyCache struct {
	ttl      time.Duration
	maxStale time.Duration
	entries  memo.Map[[sha256.Size]byte, *cachedKey]
}

type cachedKey struct {
	caller  *caller   // made from the key once, shared by its requests (read-only)
	checked time.Time // the last successful check against the store
}

// apiKeyCaller returns the caller an API key authenticates.
func apiKeyCaller(k *tokenkeeper.APIKey) *caller {
	c := newCaller("apikey", k.Name, k.Role)
	c.fresh, c.grants = true, k.Credentials
	return c
}

// maxCachedKeys bounds the key cache and the users' callers.
const maxCachedKeys = 10_000

func newKeyCache(ttl, maxStale time.Duration) *keyCache {
	c := &keyCache{ttl: ttl, maxStale: max(maxStale, ttl)}
	c.entries.Max = maxCachedKeys
	return c
}

// get returns the cached key and whether its entry is still fresh. A stale
// entry younger than maxStale is returned (not fresh), so that a key seen
// before keeps working for a while when the store cannot be reached; an
// older one is evicted and nil is returned.
func (c *keyCache) get(h [sha256.Size]byte, now time.Time) (k *caller, fresh bool) {
	e, ok := c.entries.Load(h)
	if !ok {
		return nil, false
	}
	age := now.Sub(e.checked)
	if age > c.maxStale {
		c.entries.CompareAndDelete(h, e)
		return nil, false
	}
	return e.caller, age <= c.ttl
}

// put caches the key k under its hash h and returns its caller.
func (c *keyCache) put(h [sha256.Size]byte, k *tokenkeeper.APIKey, now time.Time) *caller {
	e := &cachedKey{caller: apiKeyCaller(k), checked: now}
	c.entries.Store(h, e, func(e *cachedKey) bool { return now.Sub(e.checked) > c.maxStale })
	return e.caller
}

// evictStale removes the entries past maxStale; the server calls it
// periodically so that keys no longer used do not linger in memory.
func (c *keyCache) evictStale(now time.Time) {
	c.entries.DeleteIf(func(e *cachedKey) bool { return now.Sub(e.checked) > c.maxStale })
}

func (c *keyCache) drop(h [sha256.Size]byte) { c.entries.Delete(h) }

func (c *keyCache) purge() { c.entries.Clear() }

// userCallers holds the caller of each user's access token Verify
// accepted, so that a token used again is not made a caller again. An
// entry is keyed by the token's Claims, which Verify returns the same for
// the same token while it remembers it; it is bounded by maxCachedKeys.
type userCallers struct {
	m memo.Map[*auth.Claims, *caller] // callers are read-only, shared by the token's requests
}

// caller returns the caller of the verified claims cl at now.
func (u *userCallers) caller(cl *auth.Claims, now time.Time) *caller {
	fresh := cl.IsFresh(now)
	if c, ok := u.m.Load(cl); ok && c.fresh == fresh {
		return c
	}
	c := newCaller("user", cl.Username, cl.Role)
	c.fresh, c.claims = fresh, cl
	u.m.Store(cl, c, nil) // full: start over (Verify forgets tokens, this cache does not hear of it)
	return c
}

// authenticate resolves the caller (callerOf) and passes it on in the
// request's context.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.callerOf(w, r)
		if !ok {
			return
		}
		next.ServeHTTP(w, withCaller(r, c))
	})
}

// withCaller returns r with c as its authenticated caller.
func withCaller(r *http.Request, c *caller) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), callerKey, c))
}

// callerOf resolves the caller of r: a bearer API key (tk_...) or a user's
// access token (a JWT, verified from memory). A missing or bad credential
// gets 401 and an audit record: callerOf has answered when it returns
// false. The caller is shared by the requests of its key or token: never
// modify it.
func (s *server) callerOf(w http.ResponseWriter, r *http.Request) (*caller, bool) {
	header := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(header, " ")
	if header == "" {
		s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "authentication required: send Authorization: Bearer with an API key or an access token"))
		return nil, false
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		s.authFailed(w, r, "malformed Authorization header", tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "malformed Authorization header: expected Bearer and a token"))
		return nil, false
	}
	var c *caller
	if strings.HasPrefix(token, APIKeyPrefix) {
		h, now := auth.Sum256(token), s.now()
		cached, fresh := s.keys.get(h, now)
		if fresh {
			c = cached // the hot path: a key checked against the store within KeyCacheTTL
		} else {
			if blocked, wait := s.failBlocked(r); blocked {
				// An address that keeps failing gets no database
				// lookups for keys this replica does not know.
				s.failLimited(w, r, wait)
				return nil, false
			}
			var err error
			if c, err = s.apiKey(r.Context(), h, cached, now); err != nil {
				if tokenkeeper.ErrorCode(err) == tokenkeeper.EUNAUTHORIZED {
					s.authFailed(w, r, "invalid API key", err)
				} else {
					s.Error(w, r, err)
				}
				return nil, false
			}
		}
	} else {
		if s.auth == nil {
			s.authFailed(w, r, "access token without accounts", tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "invalid API key"))
			return nil, false
		}
		cl, err := s.auth.Verify(r.Context(), token)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tokenkeeper", error="invalid_token"`)
			s.authFailed(w, r, "invalid access token", err)
			return nil, false
		}
		c = s.users.caller(cl, s.now())
	}
	noteCaller(r, c.kind, c.name)
	return c, true
}

// apiKey resolves the API key whose hash is h to its caller from the
// store, at now; cached is the caller the cache holds for it past
// KeyCacheTTL (nil: none).
func (s *server) apiKey(ctx context.Context, h [sha256.Size]byte, cached *caller, now time.Time) (*caller, error) {
	// Bounded: while the database is down, a key seen before keeps working
	// for at most maxStale after its last successful check (revocations
	// made meanwhile apply when it is back); then it fails closed.
	wait := 2 * time.Second
	if cached != nil {
		wait = 250 * time.Millisecond // a known key: don't make the caller wait long
	}
	qctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	hb := h // a copy on the heap, made only past the cache
	hash := hb[:]
	k, err := s.store.APIKeyByHash(qctx, hash)
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND:
		s.keys.drop(h)
		return nil, tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "invalid or revoked API key")
	case err != nil && cached != nil:
		return cached, nil
	case err != nil && qctx.Err() != nil:
		return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "the database did not answer in time")
	case err != nil:
		return nil, err
	}
	return s.keys.put(h, k, now), nil
}

// authFailed answers 401 and records the failure (never the credential),
// aggregated per address, reason and second. An address that keeps
// failing gets 429 instead, until its budget of failures refills.
func (s *server) authFailed(w http.ResponseWriter, r *http.Request, why string, err error) {
	if ok, wait := s.failRate.allow(remoteHost(r), s.now()); !ok {
		s.failLimited(w, r, wait)
		return
	}
	s.audit(r, "anonymous", "auth.failed", r.URL.Path, "denied", why)
	s.Error(w, r, err)
}

// failBlocked reports whether the request's address has used up its
// budget of authentication failures, and how long until it may fail again.
func (s *server) failBlocked(r *http.Request) (bool, time.Duration) {
	wait := s.failRate.peek(remoteHost(r), s.now())
	return wait > 0, wait
}

// failLimited answers 429 to an address that failed to authenticate too
// often; the refusal is audited aggregated like the failures.
func (s *server) failLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	s.audit(r, "anonymous", "auth.failed", r.URL.Path, "rate_limited", "too many authentication failures from this address")
	secs := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeProblem(w, &Problem{
		Type: ProblemTypePrefix + "too_many_requests", Title: "Too Many Requests", Status: http.StatusTooManyRequests,
		Code: "too_many_requests", Detail: fmt.Sprintf("too many failed authentications from this address: retry in %d %s", secs, plural(int(secs), "second", "seconds")),
	})
}

// requireRole lets only callers with one of the roles through.
func (s *server) requireRole(roles ...tokenkeeper.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.hasRole(w, r, callerFrom(r.Context()), roles) {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// hasRole reports whether c has one of roles, and answers 403 (audited)
// when it has not.
func (s *server) hasRole(w http.ResponseWriter, r *http.Request, c *caller, roles []tokenkeeper.Role) bool {
	if c == nil || !slices.Contains(roles, c.role) {
		s.audit(r, c.actor(), "auth.forbidden", r.Method+" "+r.URL.Path, "denied", "")
		s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EFORBIDDEN, "this operation requires the role %s", joinRoles(roles)))
		return false
	}
	return true
}

func joinRoles(roles []tokenkeeper.Role) string {
	parts := make([]string, len(roles))
	for i, r := range roles {
		parts[i] = string(r)
	}
	return strings.Join(parts, " or ")
}

// requireFresh lets only fresh callers through: API keys, and users whose
// access token came from a login (or within the freshness window).
func (s *server) requireFresh(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := callerFrom(r.Context()); c == nil || !c.fresh {
			s.freshRequired(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// freshRequired answers 401 fresh_token_required (RFC 9470).
func (s *server) freshRequired(w http.ResponseWriter, r *http.Request) {
	s.audit(r, callerFrom(r.Context()).actor(), "auth.fresh_required", r.Method+" "+r.URL.Path, "denied", "")
	w.Header().Set("WWW-Authenticate", `Bearer realm="tokenkeeper", error="insufficient_user_authentication", error_description="A fresh access token is required: log in again"`)
	writeProblem(w, &Problem{
		Type: ProblemTypePrefix + "fresh_token_required", Title: "Unauthorized", Status: http.StatusUnauthorized,
		Code: "fresh_token_required", Detail: "this operation requires a fresh access token (one obtained by logging in, not by a refresh): log in again",
	})
}

// requireGrant lets a caller through only to credentials it may read; any
// other name gets the same 404 as a credential that does not exist. A
// viewer gets 403: viewers never read tokens.
func (s *server) requireGrant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.granted(w, r, callerFrom(r.Context()), r.PathValue("name")) {
			next.ServeHTTP(w, r)
		}
	})
}

// granted reports whether c may read the token of, and refresh, the named
// credential, and answers when it may not: 403 to a viewer, and to anyone
// else the same 404 whether or not the credential exists.
func (s *server) granted(w http.ResponseWriter, r *http.Request, c *caller, name string) bool {
	if c != nil && c.role == tokenkeeper.RoleViewer {
		s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EFORBIDDEN, "viewers may not read tokens"))
		return false
	}
	if !c.canReadToken(name) {
		s.Error(w, r, errNotFound(name))
		return false
	}
	return true
}

func errNotFound(name string) error {
	return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "credential %q not found", name)
}

// remoteHost is the client address of r, without the port.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// audit records an action in the audit log (in the background).
func (s *server) audit(r *http.Request, actor, action, target, outcome, detail string) {
	s.auditw.record(r.Context(), &tokenkeeper.AuditRecord{Time: s.now(), Actor: actor, Action: action, Target: target,
		Outcome: outcome, RemoteAddr: remoteHost(r), Detail: detail})
}
