-- The broker's own accounts: users, refresh-token families, revocations of
-- their access tokens, service clients, JWT signing keys and the audit log.
-- Times are timestamptz (microsecond precision). Hashes are SHA-256 digests;
-- only signing_keys.secret is a sealed value (bound to the row id and the
-- column name).

CREATE TABLE users (
	id            text PRIMARY KEY,
	username      text NOT NULL UNIQUE,
	password_hash text NOT NULL,                   -- argon2id PHC string
	role          text NOT NULL CHECK (role IN ('admin', 'viewer')),
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL
);

-- One row per refresh token ever issued; a family is the chain of rotations
-- from one login. Rows stay after rotation (reuse detection) and are deleted
-- once their family is past its absolute expiry.
CREATE TABLE refresh_tokens (
	id                text PRIMARY KEY,
	family_id         text NOT NULL,
	user_id           text NOT NULL,
	hash              bytea NOT NULL UNIQUE,       -- SHA-256 of the opaque token
	auth_time         timestamptz NOT NULL,
	created_at        timestamptz NOT NULL,
	expires_at        timestamptz NOT NULL,        -- inactivity expiry of this token
	family_expires_at timestamptz NOT NULL,        -- absolute expiry of the family
	rotated_at        timestamptz,                 -- NULL while current
	revoked_at        timestamptz                  -- NULL unless the family was revoked
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_expires_at ON refresh_tokens (family_expires_at);

-- Access tokens of a revoked family are rejected until expires_at; rows past
-- it are deleted as new families are created.
CREATE TABLE revocations (
	family_id  text PRIMARY KEY,
	revoked_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);

CREATE INDEX revocations_expires_at ON revocations (expires_at);

CREATE TABLE service_clients (
	id          text PRIMARY KEY,
	client_id   text NOT NULL UNIQUE,
	secret_hash bytea NOT NULL,                    -- SHA-256 of the client secret
	credentials jsonb NOT NULL DEFAULT '[]',       -- array of credential names
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
);

CREATE TABLE signing_keys (
	id         text PRIMARY KEY,                   -- the JWT "kid"
	algorithm  text NOT NULL,
	secret     bytea NOT NULL,                     -- sealed
	created_at timestamptz NOT NULL
);

-- The audit log is append-only and unbounded: nothing prunes it. Reads page
-- by id, newest first, optionally filtered by actor or action; the indexes
-- keep those reads and a future time-based retention cheap.
CREATE TABLE audit (
	id          bigserial PRIMARY KEY,
	time        timestamptz NOT NULL,
	actor       text NOT NULL DEFAULT '',
	action      text NOT NULL,
	target      text NOT NULL DEFAULT '',
	outcome     text NOT NULL DEFAULT '',
	remote_addr text NOT NULL DEFAULT '',
	detail      text NOT NULL DEFAULT ''
);

CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_action ON audit (action, id);
