package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Config holds the dependencies and settings of a Service. Store is
// required; every other field has a default.
type Config struct {
	Store  tokenkeeper.AuthStore
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time

	// Issuer and Audience are the "iss" and "aud" of access tokens;
	// default "tokenkeeper" both.
	Issuer, Audience string
	// AccessTTL is the lifetime of an access token; default 15m, between
	// 10s and 24h.
	AccessTTL time.Duration
	// FreshWindow: 0 makes only tokens issued by a login fresh; a positive
	// window makes every token of a login's family fresh until the login
	// time plus the window, whether issued by the login or a refresh.
	FreshWindow time.Duration
	// RefreshIdleTTL expires a refresh token not used for this long
	// (default 24h); RefreshMaxAge ends a family this long after its login
	// whatever its use (default 30 days).
	RefreshIdleTTL, RefreshMaxAge time.Duration
	// Leeway is the clock skew tolerated on exp, nbf and iat; default 5s,
	// at most 1m; negative means none.
	Leeway time.Duration

	// ReloadInterval is how often Run reloads revocations and signing keys
	// from the store; default 1s. A logout on another replica takes effect
	// here within this interval.
	ReloadInterval time.Duration
	// KeyPropagation is how long a new signing key waits in the store
	// before it signs, so that every replica has loaded it first; default
	// 3s. It should exceed ReloadInterval.
	KeyPropagation time.Duration

	// LoginRatePair limits login attempts per username and client address
	// together (default DefaultLoginRate); LoginRateUser per username from
	// any address (default DefaultLoginRateUser), looser so that one
	// address cannot lock a user out; LoginRateAddress per client address
	// for any username (default DefaultLoginRateAddress).
	LoginRatePair, LoginRateUser, LoginRateAddress Rate

	// ClientCacheTTL is how long a service client id, once looked up, is
	// answered from memory; default 5s. A secret rotated or a client
	// created or deleted on another replica takes effect here within this
	// time (at once for changes made through this Service).
	ClientCacheTTL time.Duration

	// PasswordParams is the argon2id cost of new password hashes; default
	// DefaultArgon2. Hashes made with other parameters still verify and are
	// upgraded on the next successful login.
	PasswordParams Argon2Params
	// MaxConcurrentHashes bounds the argon2id computations running at once
	// (each holds PasswordParams.Memory); default GOMAXPROCS.
	MaxConcurrentHashes int
}

// Tokens is the answer to a login or a refresh. Its JSON form is the body
// the HTTP API returns.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"` // "Bearer"
	ExpiresIn    int64  `json:"expires_in"` // seconds
	// Claims are those of AccessToken, for the caller's audit record.
	Claims *Claims `json:"-"`
}

// RefreshTokenPrefix starts every refresh token, so that it is
// recognisable in a secret scanner and never mistaken for an access token.
const RefreshTokenPrefix = "tkrt_"

// refreshTokenLen is the length of a refresh token: the prefix and 256
// random bits in base64url.
var refreshTokenLen = len(RefreshTokenPrefix) + 43

// Service authenticates the broker's users and service clients and issues
// and verifies its access and refresh tokens. Its methods are safe for
// concurrent use. Verify answers from memory; Run keeps that memory (signing
// keys and revoked families) in step with the store.
type Service struct {
	store    tokenkeeper.AuthStore
	log      *slog.Logger
	now      func() time.Time
	cfg      Config
	params   verifyParams
	revokeTo time.Duration // how long past now a revocation must last: AccessTTL + leeway

	keys    atomic.Pointer[keySet]
	revoked atomic.Pointer[revokedSet]

	// reloadMu serialises reloads, so that an older snapshot never
	// replaces a newer one.
	reloadMu sync.Mutex
	// revMu guards revSeq and pending, and the swap of revoked.
	revMu   sync.Mutex
	revSeq  uint64
	pending map[string]pendingRevocation // local revocations a reload may not have seen yet
	// skipped lists the ids of unusable keys last reported; guarded by
	// reloadMu.
	skipped []string

	limiter   *loginLimiter
	hashSem   chan struct{}
	dummyHash string
	clients   *clientCache
	verified  *verifiedCache
}

type pendingRevocation struct {
	until time.Time
	seq   uint64
}

// New checks cfg, loads the signing keys (creating the first one if the
// store has none) and the current revocations, and returns the Service.
// Call Run to keep them current.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	leeway := max(cfg.Leeway, 0)
	s := &Service{
		store:    cfg.Store,
		log:      cfg.Logger.With("component", "auth"),
		now:      cfg.Now,
		cfg:      cfg,
		params:   verifyParams{issuer: cfg.Issuer, audience: cfg.Audience, leeway: leeway},
		revokeTo: cfg.AccessTTL + leeway + time.Second, // exp is whole seconds, rounded up
		pending:  make(map[string]pendingRevocation),
		limiter:  newLoginLimiter(cfg.LoginRateUser, cfg.LoginRateAddress, cfg.LoginRatePair),
		hashSem:  make(chan struct{}, cfg.MaxConcurrentHashes),
		clients:  newClientCache(cfg.ClientCacheTTL),
		verified: newVerifiedCache(),
	}
	s.revoked.Store(&revokedSet{})
	var pw [24]byte
	_, _ = rand.Read(pw[:])
	dummy, err := HashPasswordParams(fmt.Sprintf("%x", pw), cfg.PasswordParams)
	if err != nil {
		return nil, fmt.Errorf("new auth service: %w", err)
	}
	s.dummyHash = dummy
	if err := s.reloadKeys(ctx); err != nil {
		return nil, fmt.Errorf("new auth service: %w", err)
	}
	if s.keys.Load().signer(s.now()) == nil {
		if _, err := s.addSigningKey(ctx); err != nil {
			return nil, fmt.Errorf("new auth service: %w", err)
		}
	}
	if err := s.reloadRevocations(ctx); err != nil {
		return nil, fmt.Errorf("new auth service: %w", err)
	}
	return s, nil
}

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return errors.New("new auth service: a store is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Issuer == "" {
		c.Issuer = "tokenkeeper"
	}
	if c.Audience == "" {
		c.Audience = "tokenkeeper"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AccessTTL, 15*time.Minute)
	def(&c.RefreshIdleTTL, 24*time.Hour)
	def(&c.RefreshMaxAge, 30*24*time.Hour)
	def(&c.Leeway, 5*time.Second)
	def(&c.ReloadInterval, time.Second)
	def(&c.KeyPropagation, 3*time.Second)
	def(&c.ClientCacheTTL, 5*time.Second)
	if c.LoginRatePair == (Rate{}) {
		c.LoginRatePair = DefaultLoginRate
	}
	if c.LoginRateUser == (Rate{}) {
		c.LoginRateUser = DefaultLoginRateUser
	}
	if c.LoginRateAddress == (Rate{}) {
		c.LoginRateAddress = DefaultLoginRateAddress
	}
	if c.PasswordParams == (Argon2Params{}) {
		c.PasswordParams = DefaultArgon2
	}
	if c.MaxConcurrentHashes <= 0 {
		c.MaxConcurrentHashes = runtime.GOMAXPROCS(0)
	}
	switch {
	case c.AccessTTL < 10*time.Second || c.AccessTTL > maxAccessLifetime:
		return fmt.Errorf("new auth service: access token lifetime %s is outside 10s..24h", c.AccessTTL)
	case c.FreshWindow < 0:
		return fmt.Errorf("new auth service: negative freshness window %s", c.FreshWindow)
	case c.RefreshIdleTTL < 0 || c.RefreshMaxAge < 0:
		return errors.New("new auth service: negative refresh token lifetime")
	case c.RefreshIdleTTL > c.RefreshMaxAge:
		return fmt.Errorf("new auth service: refresh idle lifetime %s exceeds the maximum age %s", c.RefreshIdleTTL, c.RefreshMaxAge)
	case c.Leeway > time.Minute:
		return fmt.Errorf("new auth service: leeway %s exceeds 1m", c.Leeway)
	case c.ReloadInterval < 0 || c.KeyPropagation < 0 || c.ClientCacheTTL < 0:
		return errors.New("new auth service: negative interval")
	}
	for _, r := range []Rate{c.LoginRatePair, c.LoginRateUser, c.LoginRateAddress} {
		if !r.Disabled && (r.Limit < 1 || r.Per <= 0 || r.Burst < 1) {
			return fmt.Errorf("new auth service: invalid login rate %d per %s burst %d", r.Limit, r.Per, r.Burst)
		}
	}
	if err := c.PasswordParams.validate(); err != nil {
		return fmt.Errorf("new auth service: %w", err)
	}
	return nil
}

// Run reloads the signing keys and the revoked families every
// ReloadInterval until ctx is done, and then returns nil. While the store
// is unreachable the last loaded state stays in force.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ReloadInterval)
	defer t.Stop()
	failing := false
	lastSweep := s.now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(5*s.cfg.ReloadInterval, 5*time.Second))
		err := s.Reload(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			failing = true
			s.log.Warn("cannot reload signing keys and revocations; keeping the last ones", "err", err)
		case err == nil && failing:
			failing = false
			s.log.Info("reloaded signing keys and revocations again")
		}
		if now := s.now(); now.Sub(lastSweep) >= time.Minute {
			lastSweep = now
			s.limiter.sweep(now)
			s.clients.sweep(now)
		}
	}
}

// Reload loads the signing keys and the revoked families from the store
// now. Run calls it periodically; tests and administrative commands call it
// to apply a change at once.
func (s *Service) Reload(ctx context.Context) error {
	return errors.Join(s.reloadKeys(ctx), s.reloadRevocations(ctx))
}

func (s *Service) reloadKeys(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	src, err := s.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	ks, skipped := newKeySet(src, s.cfg.KeyPropagation, s.cfg.AccessTTL+s.params.leeway+time.Second)
	if len(skipped) > 0 && !slices.Equal(skipped, s.skipped) {
		s.log.Warn("ignoring unusable signing keys", "kids", skipped)
	}
	s.skipped = skipped
	s.keys.Store(ks)
	return nil
}

func (s *Service) reloadRevocations(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.revMu.Lock()
	seq := s.revSeq
	s.revMu.Unlock()
	now := s.now()
	list, err := s.store.Revocations(ctx, now)
	if err != nil {
		return fmt.Errorf("load revocations: %w", err)
	}
	m := make(revokedSet, len(list))
	for _, r := range list {
		if r != nil && r.ExpiresAt.After(now) && r.ExpiresAt.After(m[r.FamilyID]) {
			m[r.FamilyID] = r.ExpiresAt
		}
	}
	s.revMu.Lock()
	defer s.revMu.Unlock()
	for fam, p := range s.pending {
		// A revocation made before this load began is in list (the store
		// was written first); a later one must be carried over.
		if p.seq <= seq || !now.Before(p.until) {
			delete(s.pending, fam)
		} else if p.until.After(m[fam]) {
			m[fam] = p.until
		}
	}
	s.revoked.Store(&m)
	return nil
}

// revokeLocally makes this replica reject the family's access tokens at
// once, without waiting for the next reload. The store must already hold
// the revocation.
func (s *Service) revokeLocally(familyID string, until time.Time) {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	s.revSeq++
	s.pending[familyID] = pendingRevocation{until: until, seq: s.revSeq}
	m := maps.Clone(*s.revoked.Load())
	if until.After(m[familyID]) {
		m[familyID] = until
	}
	s.revoked.Store(&m)
}

// RotateSigningKey adds a new signing key and returns its id. Every
// replica starts signing with it KeyPropagation later; tokens signed with
// the previous key verify until they expire.
func (s *Service) RotateSigningKey(ctx context.Context) (string, error) {
	kid, err := s.addSigningKey(ctx)
	if err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	s.log.Info("added signing key", "kid", kid)
	return kid, nil
}

func (s *Service) addSigningKey(ctx context.Context) (string, error) {
	secret := make([]byte, 32) // RFC 7518 §3.2: at least the hash size
	_, _ = rand.Read(secret)
	k := &tokenkeeper.SigningKey{ID: newID(), Algorithm: algHS256, Secret: secret}
	if err := s.store.AddSigningKey(ctx, k); err != nil {
		return "", fmt.Errorf("add signing key: %w", err)
	}
	if err := s.reloadKeys(ctx); err != nil {
		return "", err
	}
	return k.ID, nil
}

// Verify checks an access token and returns its claims. It asks nothing of
// the store: the signing keys and revoked families come from memory (see
// Run). The algorithm is pinned to HS256 with the broker's own keys; exp is
// required; iss, aud and typ "access" must match; nbf and iat may not be in
// the future and exp may not be past, each within Leeway; a token of a
// revoked family is refused. Every failure is EUNAUTHORIZED.
//
// A token verified before is not decoded again: its expiry, key and
// family are checked from memory (verifiedCache). The Claims returned are
// shared by every use of the token: never modify them.
func (s *Service) Verify(ctx context.Context, accessToken string) (*Claims, error) {
	now, ks, revoked := s.now(), s.keys.Load(), *s.revoked.Load()
	if v := s.verified.get(accessToken); v != nil {
		if v.ok(ks, revoked, now) {
			return v.claims, nil
		}
		s.verified.drop(v)
	}
	c, err := verifyToken(accessToken, ks, revoked, &s.params, now)
	if err != nil {
		return nil, err
	}
	header, _, _ := strings.Cut(accessToken, ".")
	s.verified.put(&verified{token: accessToken, claims: c, header: strings.Clone(header), until: c.ExpiresAt.Unix() + s.params.leewaySeconds()}, now)
	return c, nil
}

// Login checks a username and password and starts a refresh-token family.
// The access token is fresh. An unknown user and a wrong password get the
// same EUNAUTHORIZED error after the same work (one argon2id
// verification). Every attempt, successful or not, counts against the
// limits of the username (case folded) and of remoteAddr (the client's
// "ip:port" or IP; an IPv6 address counts for its /64); past a limit, Login
// returns a *RateLimitError without checking anything. A store failure is
// returned as such (EUNAVAILABLE, ...), never as EUNAUTHORIZED.
func (s *Service) Login(ctx context.Context, username, password, remoteAddr string) (*Tokens, error) {
	now := s.now()
	// The authentication rests on the user as read from here on: a
	// password change or revocation of the user's sessions from this
	// instant on makes the store refuse the family (AuthTime).
	began := now
	if wait := s.limiter.allow(username, remoteAddr, now); wait > 0 {
		s.log.Info("login rate limited", "remote_addr", remoteAddr)
		return nil, &RateLimitError{RetryAfter: wait}
	}
	var u *tokenkeeper.User
	if username != "" && len(username) <= 256 {
		var err error
		u, err = s.store.User(ctx, username)
		if err != nil && tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
			return nil, fmt.Errorf("login: %w", err)
		}
	}
	hash := s.dummyHash
	if u != nil {
		hash = u.PasswordHash
	}
	ok, err := s.checkPassword(ctx, hash, password)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if u == nil || !ok {
		if u != nil {
			s.log.Info("login failed: wrong password", "user", u.Username, "remote_addr", remoteAddr)
		} else {
			s.log.Info("login failed: unknown user", "remote_addr", remoteAddr)
		}
		return nil, unauthorized(msgBadLogin)
	}
	if needsRehash(u.PasswordHash, s.cfg.PasswordParams) {
		s.upgradeHash(ctx, u.Username, password)
	}

	now = s.now()
	rt := randomToken(RefreshTokenPrefix, 32)
	h := sha256.Sum256([]byte(rt))
	fam := &tokenkeeper.RefreshToken{
		ID: newID(), FamilyID: newID(), UserID: u.ID, Hash: h[:],
		AuthTime: began, CreatedAt: now,
		ExpiresAt:       now.Add(s.cfg.RefreshIdleTTL),
		FamilyExpiresAt: now.Add(s.cfg.RefreshMaxAge),
	}
	if err := s.store.CreateRefreshToken(ctx, fam); err != nil {
		switch tokenkeeper.ErrorCode(err) {
		case tokenkeeper.ENOTFOUND, tokenkeeper.ECONFLICT:
			// The user was deleted, or its password changed or sessions
			// revoked, while this login was checking the password.
			s.log.Info("login failed: the user changed during the login", "user", u.Username, "remote_addr", remoteAddr)
			return nil, unauthorized(msgBadLogin)
		}
		return nil, fmt.Errorf("login: %w", err)
	}
	t, err := s.issue(u, fam.FamilyID, began, now, true)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	t.RefreshToken = rt
	s.log.Info("login", "user", u.Username, "remote_addr", remoteAddr, "family", fam.FamilyID)
	return t, nil
}

// checkPassword runs CheckPassword within the bound on concurrent hashes.
func (s *Service) checkPassword(ctx context.Context, hash, pw string) (bool, error) {
	if err := s.acquireHash(ctx); err != nil {
		return false, err
	}
	defer s.releaseHash()
	return CheckPassword(hash, pw), nil
}

// hashPassword runs HashPasswordParams within the bound on concurrent hashes.
func (s *Service) hashPassword(ctx context.Context, pw string) (string, error) {
	if err := CheckPasswordPolicy(pw); err != nil {
		return "", err
	}
	if err := s.acquireHash(ctx); err != nil {
		return "", err
	}
	defer s.releaseHash()
	return HashPasswordParams(pw, s.cfg.PasswordParams)
}

func (s *Service) acquireHash(ctx context.Context) error {
	select {
	case s.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s *Service) releaseHash() { <-s.hashSem }

// upgradeHash rehashes a correct password made with older parameters. A
// failure only delays the upgrade to the next login.
func (s *Service) upgradeHash(ctx context.Context, username, pw string) {
	hash, err := s.hashPassword(ctx, pw)
	if err == nil {
		err = s.store.SetUserPassword(ctx, username, hash)
	}
	if err != nil {
		s.log.Warn("cannot upgrade password hash", "user", username, "err", err)
		return
	}
	s.log.Info("upgraded password hash parameters", "user", username)
}

// issue signs an access token for u in family fam.
func (s *Service) issue(u *tokenkeeper.User, fam string, authTime, now time.Time, login bool) (*Tokens, error) {
	k := s.keys.Load().signer(now)
	if k == nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINTERNAL, "no signing key is loaded")
	}
	iat := now.Unix()
	ttl := int64(s.cfg.AccessTTL / time.Second)
	w := &wireClaims{
		Issuer: s.cfg.Issuer, Audience: s.cfg.Audience, Subject: u.ID,
		Expiry: iat + ttl, IssuedAt: iat, NotBefore: iat, ID: newID(), Type: typAccess,
		AuthTime: min(authTime.Unix(), iat), Family: fam, Role: string(u.Role), Name: u.Username,
	}
	if s.cfg.FreshWindow > 0 {
		until := authTime.Add(s.cfg.FreshWindow)
		if now.Before(until) {
			w.Fresh, w.FreshUntil = true, until.Unix()
		}
	} else {
		w.Fresh = login
	}
	tok, err := signToken(k, w)
	if err != nil {
		return nil, err
	}
	c, err := checkClaims(w, nil, &s.params, now)
	if err != nil {
		return nil, fmt.Errorf("issue token: %w", err)
	}
	return &Tokens{AccessToken: tok, TokenType: "Bearer", ExpiresIn: ttl, Claims: c}, nil
}

// Refresh exchanges a refresh token for a new access token, which is not
// fresh (unless the freshness window of the family's login still runs),
// and a new refresh token; the one presented is rotated out. Presenting a
// refresh token that was already rotated is taken as theft (RFC 9700
// §4.14.2): the whole family and its access tokens are revoked. Unknown,
// rotated, revoked and expired tokens all get the same EUNAUTHORIZED.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Tokens, error) {
	if !validRefreshToken(refreshToken) {
		return nil, unauthorized(msgBadRefreshToken)
	}
	h := sha256.Sum256([]byte(refreshToken))
	old, err := s.store.RefreshTokenByHash(ctx, h[:])
	if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
		return nil, unauthorized(msgBadRefreshToken)
	} else if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	now := s.now()
	switch {
	case !old.RevokedAt.IsZero():
		s.log.Info("refresh refused: family revoked", "user_id", old.UserID, "family", old.FamilyID)
		return nil, unauthorized(msgBadRefreshToken)
	case !old.RotatedAt.IsZero():
		return nil, s.reuseDetected(ctx, old, now)
	case !now.Before(old.ExpiresAt) || !now.Before(old.FamilyExpiresAt):
		s.log.Info("refresh refused: token expired", "user_id", old.UserID, "family", old.FamilyID)
		return nil, unauthorized(msgBadRefreshToken)
	}
	u, err := s.store.UserByID(ctx, old.UserID)
	if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
		if err := s.revokeFamily(ctx, old.FamilyID, now); err != nil {
			return nil, fmt.Errorf("refresh: %w", err)
		}
		return nil, unauthorized(msgBadRefreshToken)
	} else if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	rt := randomToken(RefreshTokenPrefix, 32)
	nh := sha256.Sum256([]byte(rt))
	next := &tokenkeeper.RefreshToken{
		ID: newID(), FamilyID: old.FamilyID, UserID: old.UserID, Hash: nh[:],
		AuthTime: old.AuthTime, CreatedAt: now,
		ExpiresAt:       minTime(now.Add(s.cfg.RefreshIdleTTL), old.FamilyExpiresAt),
		FamilyExpiresAt: old.FamilyExpiresAt,
	}
	if err := s.store.RotateRefreshToken(ctx, old.ID, now, next); tokenkeeper.ErrorCode(err) == tokenkeeper.ECONFLICT {
		// Someone rotated or revoked it between our read and our write.
		return nil, s.reuseDetected(ctx, old, now)
	} else if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	t, err := s.issue(u, old.FamilyID, old.AuthTime, now, false)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	t.RefreshToken = rt
	s.log.Debug("refreshed", "user", u.Username, "family", old.FamilyID)
	return t, nil
}

// reuseDetected revokes the family of a rotated refresh token that was
// presented again, and returns the error for the caller.
func (s *Service) reuseDetected(ctx context.Context, old *tokenkeeper.RefreshToken, now time.Time) error {
	if err := s.revokeFamily(ctx, old.FamilyID, now); err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	s.log.Warn("refresh token reuse detected: family revoked", "user_id", old.UserID, "family", old.FamilyID)
	re := &ReuseError{UserID: old.UserID, FamilyID: old.FamilyID}
	if u, err := s.store.UserByID(ctx, old.UserID); err == nil {
		re.Username = u.Username
	}
	return re
}

func (s *Service) revokeFamily(ctx context.Context, familyID string, now time.Time) error {
	until := now.Add(s.revokeTo)
	if err := s.store.RevokeFamily(ctx, familyID, now, until); err != nil {
		return fmt.Errorf("revoke family: %w", err)
	}
	s.revokeLocally(familyID, until)
	return nil
}

// Logout revokes the family of the caller's access token: its refresh
// token stops working, and its access tokens are refused by Verify here at
// once and on other replicas within ReloadInterval.
func (s *Service) Logout(ctx context.Context, c *Claims) error {
	if c == nil || c.FamilyID == "" {
		return unauthorized("an access token is required")
	}
	if err := s.revokeFamily(ctx, c.FamilyID, s.now()); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	s.log.Info("logout", "user", c.Username, "family", c.FamilyID)
	return nil
}

// validRefreshToken checks the shape of a refresh token before any lookup.
func validRefreshToken(t string) bool {
	if len(t) != refreshTokenLen || t[:len(RefreshTokenPrefix)] != RefreshTokenPrefix {
		return false
	}
	for i := len(RefreshTokenPrefix); i < len(t); i++ {
		if !b64Alphabet[t[i]] {
			return false
		}
	}
	return true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
