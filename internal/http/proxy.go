package http

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/proxy"
)

// ProxyPrefix starts the path of every proxied request:
// /v1/proxy/{credential}/{path...}.
const ProxyPrefix = "/v1/proxy/"

// proxyTarget is where a credential's proxied requests go.
type proxyTarget struct {
	base *url.URL
	how  tokenkeeper.APIToken
}

// proxyTargets caches each credential's target for a few seconds, so that
// a proxied request costs no query; an update of a provider here purges
// it, one on another replica applies within the TTL.
type proxyTargets struct {
	ttl   time.Duration
	group singleflight.Group
	mu    sync.Mutex
	m     map[string]cachedTarget // guarded by mu
}

type cachedTarget struct {
	t     *proxyTarget
	err   error
	until time.Time
}

func (p *proxyTargets) forget(name string) {
	p.mu.Lock()
	delete(p.m, name)
	p.mu.Unlock()
}

func (p *proxyTargets) purge() {
	p.mu.Lock()
	clear(p.m)
	p.mu.Unlock()
}

// target returns the credential's target: ENOTFOUND, or ECONFLICT for a
// provider without an API base URL.
func (s *server) proxyTarget(ctx context.Context, name string) (*proxyTarget, error) {
	p := s.proxyTargets
	now := s.now()
	p.mu.Lock()
	e, ok := p.m[name]
	p.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.t, e.err
	}
	v, err, _ := p.group.Do(name, func() (any, error) {
		t, err := s.loadProxyTarget(ctx, name)
		// Not ENOTFOUND: a credential created meanwhile is proxied at once.
		if err == nil || tokenkeeper.ErrorCode(err) == tokenkeeper.ECONFLICT {
			p.mu.Lock()
			if len(p.m) >= 10_000 {
				clear(p.m)
			}
			p.m[name] = cachedTarget{t: t, err: err, until: s.now().Add(p.ttl)}
			p.mu.Unlock()
		}
		return t, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*proxyTarget), nil
}

func (s *server) loadProxyTarget(ctx context.Context, name string) (*proxyTarget, error) {
	c, err := s.store.Credential(ctx, name)
	if err != nil {
		return nil, err
	}
	p, err := s.store.Provider(ctx, c.Provider)
	if err != nil {
		return nil, err
	}
	if p.APIBaseURL == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.ECONFLICT,
			"credential %q cannot be proxied: its provider %q has no API base URL (set one with: tokenkeeper provider update %s --api-base-url URL)", name, p.Name, p.Name)
	}
	u, err := url.Parse(p.APIBaseURL)
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "the API base URL of provider %q is not a valid URL", p.Name)
	}
	return &proxyTarget{base: u, how: p.APIToken.Normalized()}, nil
}

// authenticateProxy authenticates a proxied request: as every API request
// (an API key or a user's access token as Bearer), or a service client
// with its id and secret as HTTP Basic (client_secret_basic, as at
// /oauth2/token), which may proxy the credentials it was granted.
func (s *server) authenticateProxy(next http.Handler) http.Handler {
	bearer := s.authenticate(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, basic := r.BasicAuth()
		if !basic || s.auth == nil {
			bearer.ServeHTTP(w, r)
			return
		}
		id, err1 := urlUnescape(id)
		secret, err2 := urlUnescape(secret)
		if err1 != nil || err2 != nil {
			s.authFailed(w, r, "malformed client credentials", tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "malformed client credentials"))
			return
		}
		cl, err := s.auth.AuthenticateClient(r.Context(), id, secret)
		if err != nil {
			if tokenkeeper.ErrorCode(err) == tokenkeeper.EUNAUTHORIZED {
				s.authFailed(w, r, "invalid client credentials", tokenkeeper.Errorf(tokenkeeper.EUNAUTHORIZED, "invalid client credentials"))
				return
			}
			s.Error(w, r, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "client authentication is unavailable: try again shortly"))
			return
		}
		c := newCaller("client", cl.ClientID, tokenkeeper.RoleConsumer)
		c.grants = cl.Credentials
		noteCaller(r, c.kind, c.name)
		next.ServeHTTP(w, withCaller(r, c))
	})
}

// handleProxy forwards /v1/proxy/{credential}/{path...} to the API of the
// credential's provider with the current token (internal/proxy). Unknown
// and not granted credentials get the same 404.
func (s *server) handleProxy() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outcome := metrics.ProxyOK
		defer func() { s.metrics.ProxyRequest(outcome) }()
		rest := strings.TrimPrefix(r.URL.EscapedPath(), ProxyPrefix)
		rawName, sub, _ := strings.Cut(rest, "/")
		name, err := url.PathUnescape(rawName)
		c := callerFrom(r.Context())
		if err != nil || name == "" || !c.canReadToken(name) {
			outcome = metrics.ProxyNotFound
			s.Error(w, r, errNotFound(truncate(name, 100)))
			return
		}
		path, err := proxy.CleanPath(sub)
		if err != nil {
			outcome = metrics.ProxyBadRequest
			s.Error(w, r, err)
			return
		}
		t, err := s.proxyTarget(r.Context(), name)
		if err != nil {
			switch tokenkeeper.ErrorCode(err) {
			case tokenkeeper.ENOTFOUND:
				outcome = metrics.ProxyNotFound
				err = errNotFound(name)
			case tokenkeeper.ECONFLICT:
				outcome = metrics.ProxyNotConfigured
			default:
				outcome = metrics.ProxyNoToken
			}
			s.Error(w, r, err)
			return
		}
		sv, err := s.refresher.Token(r.Context(), name, 0)
		s.metrics.TokenRead(err)
		if err != nil {
			outcome = metrics.ProxyNoToken
			if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
				outcome = metrics.ProxyNotFound
			}
			s.writeServedError(w, r, name, sv, err)
			return
		}
		who := c.actor()
		res := s.proxy.Serve(w, r, &proxy.Request{
			Base: t.base, Path: path, How: t.how, Token: sv.Token.AccessToken,
			Renew: func(ctx context.Context, rejected string) string { return s.proxyRenew(ctx, r, name, rejected) },
			Self:  ProxyPrefix + rawName,
		})
		switch {
		case res.Upstream && res.Replayed:
			outcome = metrics.ProxyReplayed
		case res.Upstream:
			outcome = metrics.ProxyOK
		case res.Status == http.StatusRequestEntityTooLarge:
			outcome = metrics.ProxyTooLarge
		case res.Status == http.StatusBadRequest:
			outcome = metrics.ProxyBadRequest
		case r.Context().Err() != nil:
			outcome = metrics.ProxyCanceled
		default:
			outcome = metrics.ProxyUpstreamError
		}
		s.auditw.proxyRequest(who, name, remoteHost(r), res.Replayed, !res.Upstream)
	})
}

// proxyRenew is called when the API answered 401 to rejected: it returns
// the credential's newer token, reporting rejected first when it is still
// current (one refresh, shared by every caller that saw it), or "" when
// there is none. A token that a report of this replica produced less than
// the forced refresh floor ago is not reported again: an API that refuses
// every token must not make the broker refresh on every request.
func (s *server) proxyRenew(ctx context.Context, r *http.Request, name, rejected string) string {
	if sv, err := s.refresher.Token(ctx, name, 0); err == nil && sv.Token.AccessToken != rejected {
		return sv.Token.AccessToken // someone else already renewed it
	}
	h := sha256.Sum256([]byte(rejected))
	key := "proxy\x00" + name + "\x00" + string(h[:])
	if s.forceFloor > 0 && s.reported.seen(key, s.now().Add(time.Minute-s.forceFloor)) {
		return ""
	}
	s.metrics.ForcedRefresh(true)
	_, err := s.refresher.Refresh(ctx, name, rejected)
	if err != nil {
		s.logger.Warn("proxy: renewing a rejected token failed", "credential", name, "err", err)
		return ""
	}
	sv, err := s.refresher.Token(ctx, name, 0)
	if err != nil || sv.Token.AccessToken == rejected {
		return ""
	}
	// The new token: if the API refuses it too within the floor, it is
	// not reported (see above). The first caller to see it audits the
	// renewal; the others shared it.
	nh := sha256.Sum256([]byte(sv.Token.AccessToken))
	nkey := "proxy\x00" + name + "\x00" + string(nh[:])
	if !s.reported.seen(nkey, s.now()) {
		s.reported.add(nkey, s.now())
		s.audit(r, actor(r), "credential.refresh", name, "ok", "rejected token reported by the proxy (the API answered 401)")
	}
	return sv.Token.AccessToken
}
