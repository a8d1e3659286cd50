package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/memo"
)

// ClientSecretPrefix starts every service client secret, so that a secret
// is recognisable in a secret scanner.
const ClientSecretPrefix = "tkcs_"

// maxClientSecretLen bounds the secret AuthenticateClient hashes.
const maxClientSecretLen = 512

// NewClientSecret returns a new random client secret (256 bits after
// ClientSecretPrefix) and its SHA-256, which is what the store keeps. The
// secret is shown once and never stored.
func NewClientSecret() (secret string, hash []byte) {
	secret = randomToken(ClientSecretPrefix, 32)
	h := sha256.Sum256([]byte(secret))
	return secret, h[:]
}

// Sum256 is the SHA-256 of s, as the store keeps a client secret's or an
// API key's. One of the usual size (at most 128 bytes) is hashed from a
// buffer on the stack: the token endpoint and the token reads hash one on
// every request, and sha256.Sum256([]byte(s)) allocates a copy of any s
// longer than 32 bytes.
func Sum256(s string) [sha256.Size]byte {
	var buf [128]byte
	if len(s) > len(buf) {
		return sha256.Sum256([]byte(s))
	}
	n := copy(buf[:], s)
	return sha256.Sum256(buf[:n])
}

// dummyClientHash is compared against when the client id is unknown, so
// that both failures do the same work.
var dummyClientHash = func() []byte { _, h := NewClientSecret(); return h }()

// AuthenticateClient checks a service client's id and secret. The secret's
// SHA-256 is compared in constant time. A client id, once looked up, is
// answered from memory for ClientCacheTTL, whether it exists or not, so the
// token endpoint costs no query per call and an unknown id takes the same
// path as a known one. An unknown id and a wrong secret get the same
// EUNAUTHORIZED. The returned client is shared: treat it as read-only.
func (s *Service) AuthenticateClient(ctx context.Context, clientID, secret string) (*tokenkeeper.ServiceClient, error) {
	if clientID == "" || len(clientID) > 256 || secret == "" || len(secret) > maxClientSecretLen {
		return nil, unauthorized(msgBadClient)
	}
	h := Sum256(secret)
	now := s.now()
	c, cached := s.clients.get(clientID, now)
	if !cached {
		var err error
		c, err = s.store.ServiceClient(ctx, clientID)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
			c = nil
		} else if err != nil {
			return nil, fmt.Errorf("authenticate client: %w", err)
		}
		s.clients.put(clientID, c, now)
	}
	want := dummyClientHash
	if c != nil {
		want = c.SecretHash
	}
	if subtle.ConstantTimeCompare(h[:], want) != 1 || c == nil {
		return nil, unauthorized(msgBadClient)
	}
	return c, nil
}

// CreateServiceClient registers a service client that may read the named
// credentials, and returns it with its secret, which is shown once.
// Returns EINVALID or ECONFLICT (client id taken).
func (s *Service) CreateServiceClient(ctx context.Context, clientID string, credentials []string) (string, *tokenkeeper.ServiceClient, error) {
	if err := tokenkeeper.ValidateName(clientID); err != nil {
		return "", nil, fmt.Errorf("create service client: %w", err)
	}
	creds := slices.Clone(credentials)
	slices.Sort(creds)
	creds = slices.Compact(creds)
	for _, n := range creds {
		if err := tokenkeeper.ValidateName(n); err != nil {
			return "", nil, fmt.Errorf("create service client: %w", err)
		}
	}
	secret, hash := NewClientSecret()
	c := &tokenkeeper.ServiceClient{ClientID: clientID, SecretHash: hash, Credentials: creds}
	if err := s.store.CreateServiceClient(ctx, c); err != nil {
		return "", nil, fmt.Errorf("create service client: %w", err)
	}
	s.clients.drop(clientID)
	s.log.Info("created service client", "client_id", clientID, "credentials", creds)
	return secret, withoutSecretHash(c), nil
}

// RotateClientSecret gives a client a new secret and returns it; the old
// one stops working here at once and on other replicas within
// ClientCacheTTL. Returns ENOTFOUND.
func (s *Service) RotateClientSecret(ctx context.Context, clientID string) (string, error) {
	secret, hash := NewClientSecret()
	if err := s.store.SetServiceClientSecret(ctx, clientID, hash); err != nil {
		return "", fmt.Errorf("rotate client secret: %w", err)
	}
	s.clients.drop(clientID)
	s.log.Info("rotated service client secret", "client_id", clientID)
	return secret, nil
}

// DeleteServiceClient removes a client; it stops working here at once and
// on other replicas within ClientCacheTTL. Returns ENOTFOUND.
func (s *Service) DeleteServiceClient(ctx context.Context, clientID string) error {
	if err := s.store.DeleteServiceClient(ctx, clientID); err != nil {
		return fmt.Errorf("delete service client: %w", err)
	}
	s.clients.drop(clientID)
	s.log.Info("deleted service client", "client_id", clientID)
	return nil
}

// ServiceClients lists the clients by client id, without secret hashes.
func (s *Service) ServiceClients(ctx context.Context) ([]*tokenkeeper.ServiceClient, error) {
	cs, err := s.store.ServiceClients(ctx)
	if err != nil {
		return nil, fmt.Errorf("list service clients: %w", err)
	}
	for i, c := range cs {
		cs[i] = withoutSecretHash(c)
	}
	return cs, nil
}

func withoutSecretHash(c *tokenkeeper.ServiceClient) *tokenkeeper.ServiceClient {
	d := *c
	d.SecretHash = nil
	return &d
}

// clientCache remembers looked-up service clients by client id, and
// client ids that do not exist (a nil client).
type clientCache struct {
	ttl     time.Duration
	entries memo.Map[string, *cachedClient]
}

type cachedClient struct {
	client *tokenkeeper.ServiceClient
	until  time.Time
}

const maxCachedClients = 10_000

func newClientCache(ttl time.Duration) *clientCache {
	c := &clientCache{ttl: ttl}
	c.entries.Max = maxCachedClients
	return c
}

// get returns the cached client for id (nil for a known-absent id) and
// whether the cache had an unexpired answer.
func (c *clientCache) get(id string, now time.Time) (*tokenkeeper.ServiceClient, bool) {
	e, ok := c.entries.Load(id)
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.client, true
}

func (c *clientCache) put(id string, cl *tokenkeeper.ServiceClient, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.entries.Store(id, &cachedClient{client: cl, until: now.Add(c.ttl)}, func(e *cachedClient) bool { return !now.Before(e.until) })
}

func (c *clientCache) drop(id string) { c.entries.Delete(id) }

func (c *clientCache) sweep(now time.Time) {
	c.entries.DeleteIf(func(e *cachedClient) bool { return !now.Before(e.until) })
}
