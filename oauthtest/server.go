package oauthtest

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is an OAuth 2.0 authorization server with a protected resource. Its
// methods are safe for concurrent use.
type Server struct {
	cfg     config
	handler http.Handler

	closed    chan struct{} // closed by Close; ends latency waits
	closeOnce sync.Once
	ts        *httptest.Server // set by NewServer
	hs        *http.Server     // set by NewServerOn
	serveDone chan struct{}    // closed when hs.Serve returns

	// mu guards every field below.
	mu          sync.Mutex
	issuer      string
	clients     map[string]*client
	access      map[digest]*accessRecord
	refresh     map[digest]*refreshRecord
	codes       map[digest]*codeRecord
	accessQueue expiryQueue // access tokens, by expiry plus accessRetention
	codeQueue   expiryQueue // codes, by expiry
	faults      []Fault     // scripted faults, consumed from the front
	nextFamily  int
	stats       Stats // TokenRequests is never nil; Stats() returns a copy
	maxPresent  int
	flows       flowState // consent pages, device codes, ID token key: consent.go
}

// newServer builds a Server from options, without a listener. It panics if
// an option is invalid.
func newServer(opts []Option) *Server {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		panic("oauthtest: " + err.Error())
	}
	s := &Server{
		cfg:     cfg,
		closed:  make(chan struct{}),
		clients: make(map[string]*client),
		access:  make(map[digest]*accessRecord),
		refresh: make(map[digest]*refreshRecord),
		codes:   make(map[digest]*codeRecord),
		stats:   Stats{TokenRequests: make(map[string]int)},
		flows:   newFlowState(cfg.flows),
	}
	for _, c := range cfg.clients {
		s.addClientLocked(c.id, c.secret)
	}
	s.handler = s.routes()
	return s
}

// NewServer starts a Server on a new httptest server listening on a loopback
// address. Close it when done. It panics if an option is invalid: a
// non-positive lifetime, a negative grace, refresh lifetime or latency, a nil
// clock or logger, or an empty client id.
func NewServer(opts ...Option) *Server {
	s := newServer(opts)
	s.ts = httptest.NewServer(s.handler)
	s.issuer = s.ts.URL
	return s
}

// NewServerOn starts a Server on ln, which it takes over: Close closes it.
// The issuer URL is http:// followed by the listener's address, with an
// unspecified IP (0.0.0.0 or ::) replaced by the matching loopback address.
// It panics if an option is invalid, like NewServer.
func NewServerOn(ln net.Listener, opts ...Option) *Server {
	s := newServer(opts)
	s.issuer = "http://" + loopbackHostPort(ln.Addr())
	s.hs = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.serveDone = make(chan struct{})
	go func() {
		defer close(s.serveDone)
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.logger.Error("oauthtest: serve", "err", err)
		}
	}()
	return s
}

// NewHandler returns a Server that does not listen: serve Handler yourself
// and call SetIssuer with the base URL it is reachable at, or the URL
// methods return bare paths. It panics if an option is invalid, like
// NewServer.
func NewHandler(opts ...Option) *Server { return newServer(opts) }

// loopbackHostPort returns addr as host:port, with an unspecified IP
// replaced by the loopback address of the same family.
func loopbackHostPort(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return (&net.TCPAddr{IP: ip, Port: tcp.Port, Zone: tcp.Zone}).String()
}

// Handler returns the HTTP handler serving every endpoint.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the listener started by NewServer or NewServerOn and closes
// its connections. Requests waiting out the latency are dropped
// unprocessed. Close is idempotent; the Server's methods keep working on its
// state afterwards.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.ts != nil {
			s.ts.Close()
		}
		if s.hs != nil {
			_ = s.hs.Close()
			<-s.serveDone
		}
	})
}

// SetIssuer sets the base URL (the issuer) used by URL, the other URL
// methods and the metadata document; a trailing slash is removed. It is
// meant for NewHandler; NewServer and NewServerOn set it themselves.
func (s *Server) SetIssuer(baseURL string) {
	s.mu.Lock()
	s.issuer = strings.TrimRight(baseURL, "/")
	s.mu.Unlock()
}

// URL returns the base URL, which is also the issuer, such as
// http://127.0.0.1:PORT.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuer
}

// TokenURL returns the token endpoint, URL()+"/token".
func (s *Server) TokenURL() string { return s.URL() + "/token" }

// AuthorizeURL returns the authorization endpoint, URL()+"/authorize".
func (s *Server) AuthorizeURL() string { return s.URL() + "/authorize" }

// RevokeURL returns the revocation endpoint, URL()+"/revoke".
func (s *Server) RevokeURL() string { return s.URL() + "/revoke" }

// ResourceURL returns the protected resource, URL()+"/resource". It answers
// a request with a valid Bearer access token with 200 and a JSON object
// {"ok":true,"client_id":...,"scope":...,"expires_in":N,"method":...,
// "body_bytes":N}, and any other request with 401 and
// WWW-Authenticate: Bearer error="invalid_token".
func (s *Server) ResourceURL() string { return s.URL() + "/resource" }

// DeviceAuthorizationURL returns the device authorization endpoint (RFC
// 8628), URL()+"/device_authorization".
func (s *Server) DeviceAuthorizationURL() string { return s.URL() + deviceAuthorizationPath }

// VerificationURL returns the device verification page, URL()+"/device".
func (s *Server) VerificationURL() string { return s.URL() + devicePath }

// OpenIDConfigurationURL returns the OpenID Connect discovery document,
// URL()+"/.well-known/openid-configuration"; it answers 404 without
// WithOIDC.
func (s *Server) OpenIDConfigurationURL() string { return s.URL() + oidcPath }

// MetadataURL returns the RFC 8414 metadata document,
// URL()+"/.well-known/oauth-authorization-server".
func (s *Server) MetadataURL() string { return s.URL() + metadataPath }

// AddClient registers a client, or replaces the secret of a registered one,
// while the server runs; see WithClient. It panics if id is empty.
func (s *Server) AddClient(id, secret string) {
	if id == "" {
		panic("oauthtest: AddClient: client id must not be empty")
	}
	s.mu.Lock()
	s.addClientLocked(id, secret)
	s.mu.Unlock()
}

func (s *Server) addClientLocked(id, secret string) {
	c := s.clients[id]
	if c == nil {
		c = &client{id: id}
		s.clients[id] = c
	}
	c.secretHash = hashOf(secret)
	c.public = secret == ""
}

// IssueRefreshToken starts a refresh token family for a registered client
// with the given scope, as if an authorization_code grant had just
// happened, and returns its refresh token. It panics if the client is not
// registered.
func (s *Server) IssueRefreshToken(clientID, scope string) string {
	tok := newToken(refreshPrefix)
	h := hashOf(tok)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[clientID]
	if c == nil {
		panic("oauthtest: IssueRefreshToken: unknown client " + clientID)
	}
	f := s.newFamilyLocked(c, normalizeScope(scope))
	s.addRefreshLocked(f, h, s.cfg.now())
	return tok
}

// RevokeAll revokes every access token, refresh token family and unused
// authorization code.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.clients {
		s.revokeClientLocked(c)
	}
}

// RevokeClientTokens revokes every access token, refresh token family and
// unused authorization code of one client, so that a credential using it
// must be authorized again. Tokens issued afterwards are not affected.
func (s *Server) RevokeClientTokens(clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[clientID]; c != nil {
		s.revokeClientLocked(c)
	}
}

func (s *Server) revokeClientLocked(c *client) {
	c.epoch++
	for _, f := range c.families {
		s.revokeFamilyLocked(f)
	}
	c.families = nil
}

// RevokeToken revokes an access token alone, or a refresh token together with
// its whole family (every refresh and access token descending from the same
// grant). It reports whether the token was known: issued by this server and,
// for an access token, not expired for more than a minute.
func (s *Server) RevokeToken(token string) bool {
	h := hashOf(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.access[h]; a != nil {
		a.revoked = true
		return true
	}
	if r := s.refresh[h]; r != nil {
		s.revokeFamilyLocked(r.family)
		return true
	}
	return false
}

// ValidAccessToken reports whether token is an access token that the
// resource endpoint would accept now: issued here, not expired by the
// server's clock, not revoked.
func (s *Server) ValidAccessToken(token string) bool {
	h := hashOf(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.access[h]
	return a != nil && a.valid(s.cfg.now())
}

// newFamilyLocked starts a family for c. s.mu must be held.
func (s *Server) newFamilyLocked(c *client, scope string) *family {
	s.nextFamily++
	f := &family{id: "fam-" + strconv.Itoa(s.nextFamily), client: c, scope: scope}
	c.families = append(c.families, f)
	s.stats.FamiliesStarted++
	return f
}

// addRefreshLocked adds a refresh token with digest h as the family's
// current token, retiring the previous current token at now. s.mu must be
// held.
func (s *Server) addRefreshLocked(f *family, h digest, now time.Time) {
	if prev := f.current; prev != nil && !prev.retired {
		prev.retired, prev.retiredAt = true, now
		if prev.presentations == 0 {
			s.stats.LostRefreshTokens++
		}
	}
	f.generation++
	r := &refreshRecord{family: f, generation: f.generation}
	if s.cfg.refreshLifetime > 0 {
		r.expiresAt = now.Add(s.cfg.refreshLifetime)
	}
	f.current = r
	s.refresh[h] = r
	s.stats.RefreshTokensIssued++
}

// addAccessLocked stores an access token with digest h and prunes access
// tokens whose retention has passed. s.mu must be held.
func (s *Server) addAccessLocked(c *client, f *family, scope string, h digest, now time.Time) time.Time {
	s.accessQueue.popDue(now, func(k digest) { delete(s.access, k) })
	exp := now.Add(s.cfg.lifetime)
	a := &accessRecord{client: c, family: f, epoch: c.epoch, scope: scope, expiresAt: exp}
	if s.cfg.revokePrevious {
		// The grant's previous token dies as this one is issued.
		var prev *accessRecord
		if f != nil {
			prev, f.lastAccess = f.lastAccess, a
		} else {
			if c.lastCC == nil {
				c.lastCC = make(map[string]*accessRecord)
			}
			prev, c.lastCC[scope] = c.lastCC[scope], a
		}
		if prev != nil && prev.valid(now) {
			prev.revoked = true
			s.stats.AccessTokensRevokedByRefresh++
		}
	}
	s.access[h] = a
	s.accessQueue.push(h, exp.Add(accessRetention))
	s.stats.AccessTokensIssued++
	return exp
}

// revokeFamilyLocked revokes f and, with it, every token of the family.
// s.mu must be held.
func (s *Server) revokeFamilyLocked(f *family) {
	if f.revoked {
		return
	}
	f.revoked = true
	s.stats.FamiliesRevoked++
}
