// Package auth manages the broker's own accounts: users who log in with a
// password, the access and refresh tokens a login yields, and the service
// clients that use the OAuth2 token endpoint.
//
// A login returns a short-lived JWT access token that is fresh and an
// opaque refresh token (256 random bits, stored as a SHA-256). A refresh
// rotates the refresh token and yields an access token that is not fresh;
// presenting a rotated refresh token again revokes the whole family (RFC
// 9700 §4.14.2). Passwords are hashed with argon2id; a wrong username and a
// wrong password get the same answer after the same work, and logins are
// rate limited per username and per client address.
//
// Access tokens are HS256 JWTs signed with keys kept sealed in the store,
// so every replica shares them. Verification pins the algorithm and checks
// exp, iss, aud, nbf, iat and the token type, and costs no database query:
// Service.Run keeps the signing keys and the revoked families in memory,
// reloading them every second.
//
// Every Service method is safe for concurrent use. The store is any
// tokenkeeper.AuthStore (internal/sqlite, internal/postgres).
package auth
