// Package client keeps an OAuth2 access token valid for its callers.
//
// A TokenSource obtains tokens with the client_credentials grant
// (ClientCredentials), with a refresh token (RefreshToken), from a
// tokenkeeper broker (Broker), or from any golang.org/x/oauth2 TokenSource
// (Wrap). It implements oauth2.TokenSource, so it composes with x/oauth2,
// and adds what x/oauth2 lacks:
//
//   - It refreshes in the background before the token expires, so callers
//     never wait for the token endpoint while the current token has more
//     than a small leeway left. No lock is held during a request.
//   - When no valid token exists, any number of concurrent callers share one
//     request and its result, success or error.
//   - Temporary failures (5xx, 429, network errors, timeouts) are retried in
//     the background with exponential backoff and jitter, honouring
//     Retry-After. Permanent failures (invalid_grant, invalid_client,
//     unauthorized_client, unsupported_grant_type) stop all attempts and reach
//     callers as typed errors: errors.Is(err, client.ErrInvalidGrant).
//   - Every new token, including a rotated refresh token, is saved to a
//     TokenStore before any caller receives it (MemoryStore, or FileStore,
//     written atomically with mode 0600). If saving fails the token is used
//     anyway, since it may be the only copy, and the save is retried; the
//     failure is reported through WithOnSaveError and the logger.
//   - Transport sets the Authorization header and, on a 401, invalidates the
//     token it used (only if it is still current, so many concurrent 401s
//     cause one refresh) and replays the request once with a new token.
//   - TokenContext takes a context; Close stops the background work.
//
// # Timing
//
// A token is refreshed in the background when its remaining life falls below
// the lead. The lead is the smaller of a duration (WithLead, default
// DefaultLead = 5 min) and a fraction of the token's lifetime
// (WithLeadFraction, default DefaultLeadFraction = 1/3, as in the broker).
// Giving only one of
// the two options switches the other bound off. Whatever the options, the
// lead is at most 9/10 of the lifetime, so a token is always used for a
// while before it is replaced. By default a 1-hour token is refreshed 5
// minutes before it expires, a 10-minute token 3 min 20 s before, and a
// 2-second token 667 ms before.
//
// A token is handed out while it has more than the leeway left: WithLeeway
// (default DefaultLeeway = 10 s), but never more than 1/20 of the lifetime
// (100 ms for a 2-second token). Below that, callers wait for the request in
// flight (which refresh ahead has normally made unnecessary).
//
// The lifetime is measured when a token arrives, from its expires_in; a
// response without expires_in gets WithDefaultLifetime (default 1 hour),
// and a 401 is then what reveals the expiry.
//
// After the n-th consecutive temporary failure the next attempt waits a
// random delay between half and all of min·2ⁿ⁻¹, capped at max
// (WithBackoff, defaults 1 s and 1 min), and at least the Retry-After the
// server sent. Meanwhile the current token is still handed out while it is
// valid; once none is, callers get the last failure at once, without a
// request.
//
// # Concurrency
//
// A TokenSource, a Transport and the stores are safe for concurrent use. The
// hooks (WithOnToken, WithOnSaveError) are called from the source's own
// goroutines, never concurrently with each other.
//
// # Secrets
//
// Nothing in this package writes an access token, refresh token, client
// secret or API key to a log or an error message.
package client
