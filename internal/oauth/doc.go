// Package oauth is tokenkeeper's one implementation of the OAuth 2.0 token
// endpoint wire protocol (RFC 6749 §3.2, §4, §5, §6). Package client and the
// broker's refresher both obtain tokens through it.
//
// A Config names a token endpoint and a client registration. Its methods send
// one grant request each:
//
//   - ClientCredentials: grant_type=client_credentials (RFC 6749 §4.4);
//   - Refresh: grant_type=refresh_token (RFC 6749 §6);
//   - Exchange: grant_type=authorization_code with a PKCE code_verifier
//     (RFC 6749 §4.1.3, RFC 7636 §4.5);
//   - Grant: any grant, for extensions such as token exchange.
//
// Config.Params (audience, resource, ...) are sent with every grant and
// Config.Scopes are space-joined into the scope parameter.
//
// # One request, never probed
//
// The client authentication style (client_secret_basic or client_secret_post)
// is chosen explicitly in Config.AuthStyle; its zero value is rejected by
// Validate. Each call sends exactly one POST: a failed request, even a
// timeout, is never sent again with another style, and redirects are not
// followed, so a refresh token is presented once and only to the configured
// endpoint. Retrying is the caller's decision, guided by IsPermanent,
// RetryAfter and Class.
//
// # Responses seen in the wild
//
// ParseTokenResponse accepts what real providers send: expires_in as a number
// or a numeric string, or missing (the token then lives
// Config.DefaultLifetime); a missing refresh_token (Token.RefreshToken is ""
// and the caller keeps the old one); JSON or form-encoded bodies, whatever the
// Content-Type says; a missing token_type ("Bearer"). It turns into an *Error
// an HTTP 200 carrying an error member, a body without access_token, an HTML
// page (keeping a short excerpt), any non-2xx status (with Retry-After in
// seconds or as an HTTP date) and a body larger than MaxResponseSize, of
// which at most MaxResponseSize bytes are read.
//
// # Errors
//
// Every failure of a grant method is an *Error. errors.Is matches the
// sentinels by OAuth error code (errors.Is(err, oauth.ErrInvalidGrant)) and
// reaches the underlying network or context error through Unwrap. Permanent
// failures (invalid_grant, invalid_client, unauthorized_client,
// unsupported_grant_type, and a Config that is invalid) need someone to act;
// everything else (5xx, 429, network errors, timeouts, malformed responses) is
// temporary.
//
// # Secrets
//
// No error message, excerpt or description produced by this package contains
// a client secret, refresh token, authorization code, PKCE verifier or a token
// from the response, even when a provider echoes one back: the values the
// request carried are scrubbed, the values of token-like keys are redacted,
// and long random-looking strings are redacted as well. Token and Config
// redact their secrets when formatted with fmt or log/slog.
//
// # Concurrency
//
// A Config is safe for concurrent use by multiple goroutines as long as it is
// not modified. ParseTokenResponse and the error helpers are pure functions.
package oauth
