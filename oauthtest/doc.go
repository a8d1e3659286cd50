// Package oauthtest is a real OAuth 2.0 authorization server for tests and
// demos. It issues opaque bearer tokens and keeps them in memory, and it can
// be made to misbehave in the ways real providers do.
//
// It serves, under one issuer URL:
//
//   - POST /token: the client_credentials, refresh_token,
//     authorization_code (with PKCE S256) and device_code (RFC 8628) grants,
//     answered per RFC 6749 §5.1 and §5.2 with Cache-Control: no-store;
//   - GET /authorize: auto-approves and redirects to redirect_uri with code,
//     state and iss (RFC 9207), or, with WithConsent, shows a consent page
//     answered by POST /authorize;
//   - POST /device_authorization: the device authorization endpoint (RFC
//     8628), and GET /device, its verification page;
//   - POST /revoke: token revocation (RFC 7009);
//   - GET /.well-known/oauth-authorization-server: metadata (RFC 8414);
//   - with WithOIDC, GET /.well-known/openid-configuration and GET /jwks:
//     OpenID Connect discovery and the ID token key;
//   - /resource: a protected resource that accepts a Bearer access token and
//     answers 200 JSON, or 401 with WWW-Authenticate: Bearer
//     error="invalid_token" for a missing, unknown, expired or revoked token.
//
// Options set the access token lifetime, refresh token rotation, reuse
// detection with an optional grace period, the accepted client
// authentication styles, latency and the clock. Script queues faults
// (5xx, 429 with Retry-After, malformed JSON, form-encoded bodies, HTML
// pages, errors inside a 200, a missing or string expires_in) that the next
// token requests answer with, one fault per request.
//
// # End users: consent, devices and ID tokens
//
// An authorization request names a registered client and a redirect_uri,
// which may be any absolute URL. PKCE with S256 is enforced when a
// code_challenge is given and always for a public client; plain is
// refused. Every redirect, error or not, carries state (when sent) and iss.
//
// Without WithConsent, requests are approved at once by the end user of
// WithEndUser. With it, the consent page shows the client, the requested
// scopes and where the browser returns, and asks for Approve or Deny; the
// end user may type another email address, whose subject is
// SubjectFor(email). The page is plain HTML without scripts, escapes
// everything it shows, and carries no token or code; its form is bound to
// the browser by a cookie and answered once.
//
// The device flow: the device posts to /device_authorization and polls
// /token with its device code; the end user opens /device, enters the user
// code and answers the same consent page (or, without WithConsent, approves
// by entering it). The token endpoint answers authorization_pending,
// slow_down (polling faster than the interval), expired_token or
// access_denied until the tokens are issued, once. Tests without a browser
// can call ApproveDevice and DenyDevice.
//
// With WithOIDC and the openid scope, both grants add an RS256-signed
// id_token. With WithOfflineAccessRequired they issue a refresh token only
// for the offline_access scope. Both grants build their token response in
// one place (startGrantLocked), which is where configurable response shapes
// belong.
//
// # Personalities
//
// WithPersonality makes the server behave as a particular real provider
// does where it departs from RFC 6749 (see Personality): JSON request
// bodies, one client authentication style, a required Accept header,
// comma-separated scopes, PKCE refused, tokens under nested response
// paths, no expires_in, extra response members and redirect parameters,
// a dead grant as a bare status or every error in a 200 body, and the
// header the protected resource reads the token from. The server refuses
// requests that do not follow the personality, so that a client that gets
// a quirk wrong fails its test.
//
// # Refresh token families
//
// Every refresh token belongs to a family, started by IssueRefreshToken or by
// an authorization_code grant. With rotation (WithRotation) each refresh
// issues a new refresh token and retires the one presented. With reuse
// detection (WithReuseDetection), presenting a retired refresh token revokes
// the whole family, every refresh and access token in it, and answers
// invalid_grant (RFC 9700 §4.14.2), unless the token was retired less than
// the grace period ago: then the request is accepted as if the token were
// current, the family's current refresh token is retired in its turn, and a
// new one is issued. Without reuse detection a retired token only gets
// invalid_grant. Without rotation a refresh token keeps working, and a
// refresh response carries no refresh_token (the client keeps the one it
// has). With WithRevokePrevious every new access token revokes the previous
// one of its grant at once, as strict providers do at each refresh: a client
// that keeps using a replaced token gets 401 from the resource endpoint.
//
// # Times
//
// All expiry decisions use the clock given with WithNow, at the token
// endpoint and at the resource endpoint alike. expires_in is a whole number
// of seconds rounded up (a 1.5 s lifetime reports 2, a 500 ms lifetime
// reports 1), while the server keeps and enforces the precise expiry; a
// client therefore sees a token expire up to one second before it thinks it
// should, and must rely on its 401 handling, as it must with real providers.
//
// # Secrets
//
// The server stores only SHA-256 digests of tokens, authorization and
// device codes, consent form tokens and client secrets (user codes, typed
// by a person, are kept as they are to be looked up), compares secrets in
// constant time, and never writes a token, code, user code or secret to its
// log or to an error description.
//
// # Concurrency
//
// All methods of Server are safe for concurrent use, including while it
// serves requests. Memory stays bounded by the tokens issued: access tokens
// and authorization codes are pruned lazily a while after they expire.
package oauthtest
