-- The broker's own accounts: users, refresh-token families, revocations of
-- their access tokens, service clients, JWT signing keys and the audit log.
-- Times are UTC text in the same fixed-width form as 0001 (text order is
-- time order). Hashes are SHA-256 digests; only signing_keys.secret is a
-- sealed value (bound to the row id and the column name).

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	username      TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,                   -- argon2id PHC string
	role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
) STRICT;

-- One row per refresh token ever issued; a family is the chain of rotations
-- from one login. Rows stay after rotation (reuse detection) and are deleted
-- once their family is past its absolute expiry.
CREATE TABLE refresh_tokens (
	id                TEXT PRIMARY KEY,
	family_id         TEXT NOT NULL,
	user_id           TEXT NOT NULL,
	hash              BLOB NOT NULL UNIQUE,        -- SHA-256 of the opaque token
	auth_time         TEXT NOT NULL,
	created_at        TEXT NOT NULL,
	expires_at        TEXT NOT NULL,               -- inactivity expiry of this token
	family_expires_at TEXT NOT NULL,               -- absolute expiry of the family
	rotated_at        TEXT,                        -- NULL while current
	revoked_at        TEXT                         -- NULL unless the family was revoked
) STRICT;

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_expires_at ON refresh_tokens (family_expires_at);

-- Access tokens of a revoked family are rejected until expires_at; rows past
-- it are deleted as new families are created.
CREATE TABLE revocations (
	family_id  TEXT PRIMARY KEY,
	revoked_at TEXT NOT NULL,
	expires_at TEXT NOT NULL
) STRICT;

CREATE INDEX revocations_expires_at ON revocations (expires_at);

CREATE TABLE service_clients (
	id          TEXT PRIMARY KEY,
	client_id   TEXT NOT NULL UNIQUE,
	secret_hash BLOB NOT NULL,                     -- SHA-256 of the client secret
	credentials TEXT NOT NULL DEFAULT '[]',        -- JSON array of credential names
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE signing_keys (
	id         TEXT PRIMARY KEY,                   -- the JWT "kid"
	algorithm  TEXT NOT NULL,
	secret     BLOB NOT NULL,                      -- sealed
	created_at TEXT NOT NULL
) STRICT;

-- The audit log is append-only and unbounded: nothing prunes it. Reads page
-- by id, newest first, optionally filtered by actor or action; the indexes
-- keep those reads and a future time-based retention cheap.
CREATE TABLE audit (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	time        TEXT NOT NULL,
	actor       TEXT NOT NULL DEFAULT '',
	action      TEXT NOT NULL,
	target      TEXT NOT NULL DEFAULT '',
	outcome     TEXT NOT NULL DEFAULT '',
	remote_addr TEXT NOT NULL DEFAULT '',
	detail      TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_action ON audit (action, id);
