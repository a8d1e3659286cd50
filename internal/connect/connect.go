// Package connect obtains grants from providers for the broker: the
// authorization code flow with PKCE in the end user's browser (RFC 6749
// §4.1, RFC 7636, with the iss check of RFC 9207) and the device
// authorization grant (RFC 8628), for a new credential or in place of an
// existing credential's grant (a reconnect).
//
// A connect session starts with Start (a single-use link, 256 random bits,
// kept only as a SHA-256 digest) or StartDevice (a user code; the Service
// then polls the token endpoint itself). OpenLink turns a link into the
// redirect to the provider, once; Callback checks the state (derived from
// the link, kept only as a digest, single use) and the issuer, exchanges
// the code in one POST with the PKCE verifier through internal/oauth, and
// commits the grant, sealed, before it reports success. ID tokens of
// OpenID Connect providers are verified (go-oidc, against the provider's
// discovery document and JWKS) and give the end user's name and email.
//
// Failures end the session with a reason (an OAuth error code or a short
// class such as provider_unreachable), recorded as an event of the session
// and, for a reconnect, of the credential; no link token, state, code,
// verifier, device code or token is ever logged, recorded or shown.
//
// A *Service is safe for concurrent use. Run does its background work
// (device polling) until its context ends.
package connect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// DefaultSessionTTL is how long a connect link stays valid.
const DefaultSessionTTL = 30 * time.Minute

// CallbackPath is the path of the redirect URI under the public URL.
const CallbackPath = "/connect/callback"

// LinkPrefix is the path prefix of connect links.
const LinkPrefix = "/connect/"

// Config holds the Service's dependencies. Store and PublicURL are
// required.
type Config struct {
	Store tokenkeeper.Store
	// PublicURL is the broker's external base URL (--public-url): links
	// are {PublicURL}/connect/{token} and the redirect URI is
	// {PublicURL}/connect/callback.
	PublicURL string
	// ReturnTo is the allow-list of return_to URLs (--connect-return-to):
	// each an absolute URL that a return_to must equal or lie under (same
	// scheme, host and port, its path a prefix at a '/' boundary). Empty:
	// no return_to is accepted.
	ReturnTo []string
	// SessionTTL is how long a link stays valid; default DefaultSessionTTL.
	SessionTTL time.Duration
	// HTTPClient sends the requests to providers; nil: a client with
	// oauth.DefaultHTTPTimeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Connected, if set, is called after a grant is committed (the broker
	// wakes its refresher and drops its cached token of the credential).
	Connected func(c *tokenkeeper.Credential)
}

// Service runs connect sessions.
type Service struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	allow []*url.URL

	owner   string     // this process's name in device poll leases
	mu      sync.Mutex // guards polling and stopped
	polling map[string]bool
	stopped bool
	ctx     context.Context // ends when Run's context ends; pollers use it
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("connect: a store is required")
	}
	pu, err := url.Parse(cfg.PublicURL)
	if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || pu.RawQuery != "" || pu.Fragment != "" {
		return nil, fmt.Errorf("connect: the public URL must be an absolute http(s) URL without query or fragment")
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	s := &Service{cfg: cfg, log: cfg.Logger, now: cfg.Now, polling: map[string]bool{}, owner: "connect-" + digest(random(16))[:16]}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, raw := range cfg.ReturnTo {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("connect: return_to allow-list entry %q must be an absolute http(s) URL without user info or fragment", raw)
		}
		s.allow = append(s.allow, u)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// RedirectURI returns the redirect URI registered with providers.
func (s *Service) RedirectURI() string { return s.cfg.PublicURL + CallbackPath }

// Run resumes the polling of pending device sessions (after a restart, or
// those of a replica that stopped: a poller polls only while it holds the
// session's lease) at start and every 30 seconds, and returns when ctx
// ends, once every poller has stopped.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(resumeInterval)
	defer t.Stop()
	for {
		if list, err := s.cfg.Store.PendingDeviceSessions(ctx, s.now()); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("connect: cannot resume device sessions", "err", err)
			}
		} else {
			for _, cs := range list {
				s.startPoller(cs) // polls only while it holds the session's lease
			}
		}
		select {
		case <-ctx.Done():
			s.Close()
			return
		case <-t.C:
		}
	}
}

// Close stops the pollers and waits for them.
func (s *Service) Close() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// StartRequest asks for a connect session.
type StartRequest struct {
	Provider string
	// Name is the credential: an existing one of Provider is reconnected,
	// another name is created. Empty: named after Provider and EndUserID
	// (reconnected if that credential exists), or Provider and a random
	// suffix.
	Name      string
	EndUserID string
	Scopes    []string // default: the provider's
	ReturnTo  string
	Actor     string // who asked, for the session's record
}

// Started is a new connect session with its single-use link.
type Started struct {
	Session *tokenkeeper.ConnectSession
	URL     string // the link; it carries the only copy of the link token
}

// DeviceStarted is a new device session.
type DeviceStarted struct {
	Session                 *tokenkeeper.ConnectSession
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
}

// random returns n random bytes, base64url without padding.
func random(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// digest is the hex SHA-256 of s, as the store keeps link tokens and
// states.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// derive returns a value derived from the link token for purpose: the
// state and the OIDC nonce, which need not be stored, since the link
// carries them and only their digests are kept.
func derive(purpose, linkToken string) string {
	sum := sha256.Sum256([]byte("tokenkeeper connect " + purpose + "\x00" + linkToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// challenge is the PKCE S256 code challenge of verifier (RFC 7636 §4.2).
func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// resolve decides the credential a request connects and whether it is a
// reconnect.
func (s *Service) resolve(ctx context.Context, p *tokenkeeper.Provider, req StartRequest) (name string, reconnect bool, err error) {
	name = req.Name
	if name == "" {
		if req.EndUserID != "" {
			name = p.Name + "-" + strings.Trim(nameUnsafe.ReplaceAllString(req.EndUserID, "-"), "-._")
			if len(name) > 64 {
				name = name[:55] + "-" + digest(req.EndUserID)[:8]
			}
		} else {
			name = p.Name + "-" + digest(random(16))[:8]
		}
	}
	if err := tokenkeeper.ValidateName(name); err != nil {
		return "", false, err
	}
	c, err := s.cfg.Store.Credential(ctx, name)
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND:
		return name, false, nil
	case err != nil:
		return "", false, err
	case c.ProviderID != p.ID:
		return "", false, tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %q belongs to provider %q, not %q", name, c.Provider, p.Name)
	case req.EndUserID != "" && c.EndUserID != "" && c.EndUserID != req.EndUserID:
		return "", false, tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %q belongs to another end user", name)
	}
	return name, true, nil
}

// CheckReturnTo reports whether rawURL is on the allow-list. Returns
// EINVALID.
func (s *Service) CheckReturnTo(rawURL string) error {
	if rawURL == "" {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err == nil && u.User == nil && u.Fragment == "" {
		for _, a := range s.allow {
			if u.Scheme == a.Scheme && strings.EqualFold(u.Host, a.Host) && pathUnder(u.EscapedPath(), a.EscapedPath()) {
				return nil
			}
		}
	}
	return tokenkeeper.Errorf(tokenkeeper.EINVALID, "return_to %q is not on the broker's allow-list (--connect-return-to)", clip(rawURL, 200))
}

func pathUnder(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/") || (prefix == "" && (p == "" || strings.HasPrefix(p, "/")))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// prepare checks a request and returns the provider, the credential name,
// whether it is a reconnect, and the scopes.
func (s *Service) prepare(ctx context.Context, req StartRequest) (*tokenkeeper.Provider, string, bool, []string, error) {
	if req.Provider == "" {
		return nil, "", false, nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "provider is required")
	}
	if err := s.CheckReturnTo(req.ReturnTo); err != nil {
		return nil, "", false, nil, err
	}
	p, err := s.cfg.Store.Provider(ctx, req.Provider)
	if err != nil {
		return nil, "", false, nil, err
	}
	name, reconnect, err := s.resolve(ctx, p, req)
	if err != nil {
		return nil, "", false, nil, err
	}
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = p.Scopes
	}
	return p, name, reconnect, slices.Clone(scopes), nil
}

// Start creates a connect session for the authorization code flow and
// returns its single-use link. Returns EINVALID (a bad request, a
// return_to off the allow-list, a provider without an authorization
// endpoint), ENOTFOUND (no such provider) or ECONFLICT.
func (s *Service) Start(ctx context.Context, req StartRequest) (*Started, error) {
	p, name, reconnect, scopes, err := s.prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	if p.AuthorizationURL == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "provider %q has no authorization_url; use the device flow or set one", p.Name)
	}
	link := random(32) // 256 bits
	cs := &tokenkeeper.ConnectSession{
		Kind: tokenkeeper.ConnectAuthorizationCode, Provider: p.Name, CredentialName: name, Reconnect: reconnect,
		EndUserID: req.EndUserID, Scopes: scopes, ReturnTo: req.ReturnTo,
		LinkHash: digest(link), StateHash: digest(derive("state", link)),
		CodeVerifier: random(32), RedirectURI: s.RedirectURI(), CreatedBy: req.Actor,
		ExpiresAt: s.now().Add(s.cfg.SessionTTL),
	}
	if slices.Contains(scopes, "openid") {
		cs.Nonce = derive("nonce", link)
	}
	if err := s.cfg.Store.CreateConnectSession(ctx, cs); err != nil {
		return nil, err
	}
	s.log.Info("connect session created", "session", cs.ID, "provider", p.Name, "credential", name, "reconnect", reconnect, "actor", req.Actor)
	return &Started{Session: cs, URL: s.cfg.PublicURL + LinkPrefix + link}, nil
}

// Failure is why a page of the flow cannot go on: an HTTP status, a short
// reason and a message for the end user, never a secret. Session is set
// when the failure ended a known session.
type Failure struct {
	Status  int
	Reason  string
	Message string
	Session *tokenkeeper.ConnectSession
}

func (f *Failure) Error() string { return f.Reason + ": " + f.Message }

// storeFailure turns a store error about a link or state into a Failure.
func storeFailure(err error, what string) *Failure {
	switch tokenkeeper.ErrorCode(err) {
	case tokenkeeper.ENOTFOUND:
		return &Failure{Status: http.StatusNotFound, Reason: "unknown_session", Message: "This " + what + " does not belong to any connect session. Ask for a new link."}
	case tokenkeeper.ECONFLICT:
		return &Failure{Status: http.StatusConflict, Reason: "used", Message: "This " + what + " was used already, or its session has ended. Ask for a new link."}
	case tokenkeeper.EEXPIRED:
		return &Failure{Status: http.StatusGone, Reason: "expired", Message: "This connect session has expired. Ask for a new link."}
	}
	return &Failure{Status: http.StatusServiceUnavailable, Reason: "unavailable", Message: "The broker cannot reach its database. Try again in a moment."}
}

// OpenLink uses the link token once and returns the URL of the provider's
// authorization request to redirect the browser to.
func (s *Service) OpenLink(ctx context.Context, link string) (string, *Failure) {
	now := s.now()
	cs, err := s.cfg.Store.UseConnectLink(ctx, digest(link), now)
	if err != nil {
		f := storeFailure(err, "link")
		s.log.Info("connect link refused", "reason", f.Reason)
		return "", f
	}
	p, err := s.cfg.Store.Provider(ctx, cs.Provider)
	if err != nil {
		return "", s.fail(ctx, cs, http.StatusServiceUnavailable, "provider_unavailable", "The provider of this session cannot be read.")
	}
	u, err := url.Parse(p.AuthorizationURL)
	if err != nil || p.AuthorizationURL == "" {
		return "", s.fail(ctx, cs, http.StatusBadGateway, "provider_misconfigured", "The provider has no usable authorization endpoint.")
	}
	q := u.Query()
	for k, v := range p.AuthorizeParams {
		q.Set(k, v)
	}
	q.Set("response_type", "code")
	q.Set("client_id", p.ClientID)
	q.Set("redirect_uri", cs.RedirectURI)
	if len(cs.Scopes) > 0 {
		sep := " "
		if a := catalog.ForProvider(p.Preset, p.TemplateVars); a != nil && a.ScopeSeparator != "" {
			sep = a.ScopeSeparator // Slack, Shopify, Strava: commas
		}
		q.Set("scope", strings.Join(cs.Scopes, sep))
	}
	q.Set("state", derive("state", link))
	if p.PKCE != tokenkeeper.PKCENone {
		q.Set("code_challenge", challenge(cs.CodeVerifier))
		q.Set("code_challenge_method", "S256")
	}
	if cs.Nonce != "" {
		q.Set("nonce", cs.Nonce)
	}
	u.RawQuery = q.Encode()
	s.log.Info("connect link opened", "session", cs.ID, "provider", p.Name)
	return u.String(), nil
}

// fail ends cs with reason and message, records it, and returns the
// Failure to show.
func (s *Service) fail(ctx context.Context, cs *tokenkeeper.ConnectSession, status int, reason, message string) *Failure {
	if err := s.cfg.Store.FailConnectSession(context.WithoutCancel(ctx), cs.ID, reason, message); err != nil {
		s.log.Warn("connect: cannot record the failure of a session", "session", cs.ID, "err", err)
	}
	s.log.Info("connect session failed", "session", cs.ID, "provider", cs.Provider, "credential", cs.CredentialName, "reason", reason)
	n := *cs
	n.Status, n.Reason, n.Message = tokenkeeper.ConnectFailed, reason, message
	return &Failure{Status: status, Reason: reason, Message: message, Session: &n}
}

// Result is a session that ended in the callback with a grant.
type Result struct {
	Session    *tokenkeeper.ConnectSession
	Credential *tokenkeeper.Credential
}

var errorCodeRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// Callback handles the provider's redirect to {PublicURL}/connect/callback.
func (s *Service) Callback(ctx context.Context, q url.Values) (*Result, *Failure) {
	state := q.Get("state")
	if state == "" || len(q["state"]) != 1 {
		return nil, &Failure{Status: http.StatusBadRequest, Reason: "missing_state", Message: "The provider's answer carries no state, so it cannot be matched to a connect session."}
	}
	cs, err := s.cfg.Store.UseConnectState(ctx, digest(state), s.now())
	if err != nil {
		f := storeFailure(err, "authorization response")
		s.log.Info("connect callback refused", "reason", f.Reason)
		return nil, f
	}
	p, err := s.cfg.Store.Provider(ctx, cs.Provider)
	if err != nil {
		return nil, s.fail(ctx, cs, http.StatusServiceUnavailable, "provider_unavailable", "The provider of this session cannot be read.")
	}
	if iss := q.Get("iss"); q.Has("iss") && !issuerOf(p, iss) {
		return nil, s.fail(ctx, cs, http.StatusBadRequest, "issuer_mismatch", "The answer names another authorization server than this session's provider (RFC 9207); nothing was stored.")
	}
	if e := q.Get("error"); e != "" {
		reason := "provider_error"
		if errorCodeRE.MatchString(e) {
			reason = e
		}
		msg := "The provider answered with an error."
		if reason == "access_denied" {
			msg = "Access was denied at the provider; nothing was stored."
		}
		if d := oauth.SanitizeDescription(q.Get("error_description")); d != "" {
			msg += " The provider said: " + strings.TrimRight(clip(d, 200), ".") + "."
		}
		return nil, s.fail(ctx, cs, http.StatusForbidden, reason, msg)
	}
	code := q.Get("code")
	if code == "" {
		return nil, s.fail(ctx, cs, http.StatusBadRequest, "missing_code", "The provider's answer carries no authorization code.")
	}
	cfg := s.oauthConfig(p, nil)
	start := s.now()
	verifier := cs.CodeVerifier
	if p.PKCE == tokenkeeper.PKCENone {
		// No code challenge was sent: a verifier would make a strict
		// server refuse the code.
		verifier = ""
	}
	tok, err := cfg.Exchange(ctx, code, cs.RedirectURI, verifier)
	if err != nil {
		reason, msg := exchangeFailure(err)
		return nil, s.fail(ctx, cs, http.StatusBadGateway, reason, msg)
	}
	s.log.Debug("connect code exchanged", "session", cs.ID, "latency", s.now().Sub(start))
	return s.finish(ctx, cs, p, tok, keptFromRedirect(p, q))
}

// exchangeFailure returns the reason and message of a failed token request.
func exchangeFailure(err error) (string, string) {
	var oe *oauth.Error
	if errors.As(err, &oe) {
		switch {
		case oe.Code == "invalid_grant":
			return oe.Code, "The provider refused the authorization code (invalid_grant); nothing was stored. Ask for a new link."
		case oe.Code != "" && errorCodeRE.MatchString(oe.Code):
			return oe.Code, "The provider refused the token request (" + oe.Code + "); nothing was stored."
		case oe.StatusCode == 0:
			return "provider_unreachable", "The provider's token endpoint could not be reached; nothing was stored. Ask for a new link and try again."
		}
		return "provider_error", fmt.Sprintf("The provider's token endpoint answered HTTP %d; nothing was stored.", oe.StatusCode)
	}
	return "provider_error", "The token request failed; nothing was stored."
}

// issuerOf reports whether iss names p's authorization server: p's
// authorization URL lies under it (RFC 9207 compares with the issuer of
// the server's metadata; a provider here is configured by its endpoints).
func issuerOf(p *tokenkeeper.Provider, iss string) bool {
	u, err := url.Parse(iss)
	if err != nil || u.Scheme == "" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	for _, ep := range []string{p.AuthorizationURL, p.TokenURL} {
		if ep == "" {
			continue
		}
		e, err := url.Parse(ep)
		if err != nil {
			return false
		}
		if e.Scheme != u.Scheme || !strings.EqualFold(e.Host, u.Host) || !pathUnder(e.EscapedPath(), u.EscapedPath()) {
			return false
		}
	}
	return true
}

// issuerCandidates returns the URLs an OpenID Connect provider's issuer may
// be, longest first: the authorization URL's parent paths, down to its
// origin.
func issuerCandidates(p *tokenkeeper.Provider, iss string) []string {
	if iss != "" {
		return []string{strings.TrimSuffix(iss, "/")}
	}
	u, err := url.Parse(p.AuthorizationURL)
	if err != nil {
		return nil
	}
	var out []string
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i := len(segs) - 1; i >= 0; i-- {
		path := strings.Join(segs[:i], "/")
		c := u.Scheme + "://" + u.Host
		if path != "" {
			c += "/" + path
		}
		out = append(out, c)
	}
	return out
}

// keptFromRedirect returns the query parameters of the authorization
// redirect that p's profile keeps with the grant (QuickBooks' realmId).
func keptFromRedirect(p *tokenkeeper.Provider, q url.Values) map[string]string {
	a := catalog.ForProvider(p.Preset, p.TemplateVars)
	if a == nil {
		return nil
	}
	var out map[string]string
	for _, k := range a.KeepFromRedirect {
		if v := q.Get(k); v != "" && len(v) <= 512 && tokenkeeper.ValidateExtra(k, v) == nil {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// oauthConfig is the token endpoint configuration of p, with scopes: a
// provider made from a preset gets its profile's departures from RFC 6749
// (body format, Accept, response paths, error classes).
func (s *Service) oauthConfig(p *tokenkeeper.Provider, scopes []string) *oauth.Config {
	style := oauth.AuthStyleHeader
	if p.AuthStyle == tokenkeeper.AuthStyleBody {
		style = oauth.AuthStyleBody
	}
	var params url.Values
	if len(p.TokenParams) > 0 {
		params = url.Values{}
		for k, v := range p.TokenParams {
			params.Set(k, v)
		}
	}
	c := &oauth.Config{TokenURL: p.TokenURL, ClientID: p.ClientID, ClientSecret: p.ClientSecret, AuthStyle: style,
		Scopes: scopes, Params: params, HTTPClient: s.cfg.HTTPClient, Now: s.now}
	if a := catalog.ForProvider(p.Preset, p.TemplateVars); a != nil {
		a.Configure(c)
	}
	return c
}

// finish verifies a token response of cs and commits its grant.
// kept are the redirect's parameters to keep; the token response's are
// added from p's profile.
func (s *Service) finish(ctx context.Context, cs *tokenkeeper.ConnectSession, p *tokenkeeper.Provider, tok *oauth.Token, kept map[string]string) (*Result, *Failure) {
	ctx = context.WithoutCancel(ctx) // the grant is obtained: store it even if the browser went away
	if tok.RefreshToken == "" {
		msg := "The provider issued no refresh token, so the broker cannot keep this grant alive; nothing was stored."
		if slices.Contains(cs.Scopes, "offline_access") {
			msg = "The provider issued no refresh token although offline access was requested; nothing was stored."
		}
		return nil, s.fail(ctx, cs, http.StatusBadGateway, "no_refresh_token", msg)
	}
	g := &tokenkeeper.Grant{
		RefreshToken: tok.RefreshToken,
		Token:        tokenkeeper.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, ExpiresAt: tok.Expiry},
	}
	if tok.Scope != "" {
		g.Scopes = strings.Fields(tok.Scope)
	}
	if a := catalog.ForProvider(p.Preset, p.TemplateVars); a != nil {
		for k, v := range tok.Keep(a.Keep) {
			if tokenkeeper.ValidateExtra(k, v) != nil {
				continue
			}
			if kept == nil {
				kept = map[string]string{}
			}
			kept[k] = v
		}
	}
	g.Extras = kept
	if raw, _ := tok.Raw["id_token"].(string); raw != "" && slices.Contains(cs.Scopes, "openid") {
		if err := s.verifyIDToken(ctx, cs, p, raw, g); err != nil {
			s.log.Warn("connect: ID token refused", "session", cs.ID, "provider", p.Name, "err", err)
			return nil, s.fail(ctx, cs, http.StatusBadGateway, "invalid_id_token", "The provider's ID token did not verify; nothing was stored.")
		}
	}
	c, err := s.cfg.Store.CompleteConnectSession(ctx, cs.ID, g)
	if err != nil {
		if tokenkeeper.ErrorCode(err) == tokenkeeper.ECONFLICT {
			cur, gerr := s.cfg.Store.ConnectSession(ctx, cs.ID)
			if gerr == nil && cur.Status != tokenkeeper.ConnectPending {
				return nil, &Failure{Status: http.StatusConflict, Reason: "used", Message: "This connect session has ended already.", Session: cur}
			}
		}
		s.log.Warn("connect: cannot store the grant", "session", cs.ID, "err", err)
		return nil, s.fail(ctx, cs, http.StatusInternalServerError, "store_failed", "The grant could not be stored: "+tokenkeeper.ErrorMessage(err))
	}
	s.log.Info("connect session connected", "session", cs.ID, "provider", p.Name, "credential", c.Name, "reconnect", cs.Reconnect)
	if s.cfg.Connected != nil {
		s.cfg.Connected(c)
	}
	n := *cs
	n.Status, n.CredentialID = tokenkeeper.ConnectConnected, c.ID
	return &Result{Session: &n, Credential: c}, nil
}

// verifyIDToken checks raw against p's issuer and keys and fills g's end
// user fields.
func (s *Service) verifyIDToken(ctx context.Context, cs *tokenkeeper.ConnectSession, p *tokenkeeper.Provider, raw string, g *tokenkeeper.Grant) error {
	hc := s.cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: oauth.DefaultHTTPTimeout}
	}
	ctx = oidc.ClientContext(ctx, hc)
	var last error = errors.New("no issuer found")
	for _, iss := range issuerCandidates(p, "") {
		op, err := oidc.NewProvider(ctx, iss)
		if err != nil {
			last = err
			continue
		}
		idt, err := op.Verifier(&oidc.Config{ClientID: p.ClientID, Now: s.now}).Verify(ctx, raw)
		if err != nil {
			return err
		}
		if cs.Nonce != "" && idt.Nonce != cs.Nonce {
			return errors.New("the nonce does not match")
		}
		var claims struct {
			Email string `json:"email"`
			Name  string `json:"name"`
		}
		if err := idt.Claims(&claims); err != nil {
			return err
		}
		g.EndUserSubject, g.EndUserEmail, g.EndUserName = clip(idt.Subject, 256), clip(claims.Email, 256), clip(claims.Name, 256)
		return nil
	}
	return last
}
