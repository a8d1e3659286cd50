// Package catalogtest turns provider profiles (internal/catalog) into
// oauthtest personalities, so that a test can run any preset against a
// loopback authorization server that behaves as the profile says the real
// provider does: the same body format, client authentication, Accept
// header, scope separator, PKCE, parameters, response shape, errors,
// rotation and token presentation.
//
// Its functions are pure and safe for concurrent use.
package catalogtest

import (
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// KeptValue is the value a personality made by Personality gives the
// member (or redirect parameter) at path that the profile keeps with the
// grant, so that a test can look for it in the credential.
func KeptValue(path string) string { return "kept-" + path }

// Personality returns the oauthtest personality of p. The members p keeps
// from token responses and redirects get KeptValue(path). A profile whose
// response has no expires_in (tokens that never expire, or a default
// lifetime) gets a personality that omits it; a profile that classifies a
// dead grant by status gets one that answers it with the first such
// status and no error code; one with a token check gets its path served
// as the protected resource.
func Personality(p *catalog.Profile) oauthtest.Personality {
	ps := oauthtest.Personality{
		BodyFormat:       p.BodyFormat,
		AuthStyle:        p.AuthStyle,
		Accept:           p.Accept,
		ScopeSeparator:   p.ScopeSeparator,
		NoPKCE:           p.PKCE != nil && !*p.PKCE,
		AuthorizeParams:  p.AuthorizeParams,
		TokenParams:      p.TokenParams,
		RefreshParams:    p.RefreshParams,
		AccessTokenPath:  p.Response.AccessToken,
		RefreshTokenPath: p.Response.RefreshToken,
		ExpiresInPath:    p.Response.ExpiresIn,
		ScopePath:        p.Response.Scope,
		OmitExpiresIn:    (p.TokensExpire != nil && !*p.TokensExpire) || p.DefaultLifetime != "",
		Rotates:          p.RefreshTokens.Rotates,
		ErrorIn200:       p.Errors.ErrorIn200,
	}
	if len(p.Errors.InvalidGrantStatuses) > 0 {
		ps.InvalidGrantStatus = p.Errors.InvalidGrantStatuses[0]
	}
	if len(p.Response.Keep) > 0 {
		ps.Extra = map[string]string{}
		for _, k := range p.Response.Keep {
			ps.Extra[k] = KeptValue(k)
		}
	}
	if len(p.Response.KeepFromRedirect) > 0 {
		ps.RedirectParams = map[string]string{}
		for _, k := range p.Response.KeepFromRedirect {
			ps.RedirectParams[k] = KeptValue(k)
		}
	}
	if p.API.Header != "" {
		ps.TokenHeader, ps.TokenScheme = p.API.Header, p.API.Scheme
	}
	if p.Check != nil {
		ps.ResourcePaths = []string{p.Check.Path}
	}
	return ps
}
