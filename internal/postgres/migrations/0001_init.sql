-- Initial schema. Times are timestamptz (microsecond precision), durations
-- bigint nanoseconds. Columns marked "sealed" hold internal/seal ciphertexts
-- bound to the row id and the column name; NULL means empty.

CREATE TABLE credentials (
	id               text PRIMARY KEY,
	name             text NOT NULL UNIQUE,
	token_url        text NOT NULL,
	grant_type       text NOT NULL CHECK (grant_type IN ('client_credentials', 'refresh_token')),
	client_id        text NOT NULL,
	client_secret    bytea,                         -- sealed
	refresh_token    bytea,                         -- sealed
	scopes           jsonb NOT NULL DEFAULT '[]',   -- array of strings
	auth_style       text NOT NULL CHECK (auth_style IN ('header', 'body')),
	params           jsonb NOT NULL DEFAULT '{}',   -- object of strings
	refresh_lead     bigint NOT NULL DEFAULT 0,     -- nanoseconds
	access_token     bytea,                         -- sealed; NULL before the first token
	token_type       text NOT NULL DEFAULT '',
	expires_at       timestamptz,
	status           text NOT NULL CHECK (status IN ('active', 'error', 'needs_reauth', 'disabled')),
	failure_count    integer NOT NULL DEFAULT 0,
	last_error       text NOT NULL DEFAULT '',
	last_error_code  text NOT NULL DEFAULT '',
	last_refresh_at  timestamptz,
	next_refresh_at  timestamptz NOT NULL,
	version          bigint NOT NULL,               -- fencing version
	lease_owner      text NOT NULL DEFAULT '',      -- '' when not leased
	lease_expires_at timestamptz,
	created_at       timestamptz NOT NULL,
	updated_at       timestamptz NOT NULL
);

-- The refresher's schedule: only refreshable credentials are indexed. Queries
-- repeat the predicate verbatim so that the planner uses the index.
CREATE INDEX credentials_next_refresh_at ON credentials (next_refresh_at)
	WHERE status IN ('active', 'error');
-- Leased credentials are few; NextRefreshAt looks at them separately.
CREATE INDEX credentials_leased ON credentials (lease_owner)
	WHERE lease_owner <> '';

CREATE TABLE events (
	id              bigserial PRIMARY KEY,
	credential_id   text NOT NULL DEFAULT '',
	credential_name text NOT NULL DEFAULT '',
	time            timestamptz NOT NULL,
	kind            text NOT NULL,
	outcome         text NOT NULL DEFAULT '',
	error_code      text NOT NULL DEFAULT '',
	message         text NOT NULL DEFAULT '',
	latency         bigint NOT NULL DEFAULT 0,     -- nanoseconds
	actor           text NOT NULL DEFAULT ''
);

CREATE INDEX events_credential_time ON events (credential_id, time);

CREATE TABLE api_keys (
	id          text PRIMARY KEY,
	name        text NOT NULL UNIQUE,
	prefix      text NOT NULL,
	hash        bytea NOT NULL UNIQUE,              -- SHA-256 of the key
	role        text NOT NULL CHECK (role IN ('admin', 'consumer')),
	credentials jsonb NOT NULL DEFAULT '[]',        -- array of credential names
	created_at  timestamptz NOT NULL,
	revoked_at  timestamptz
);

-- Data keys wrapped by the master key; the highest id is the active key.
CREATE TABLE data_keys (
	id         bigint PRIMARY KEY,
	wrapped    bytea NOT NULL,
	created_at timestamptz NOT NULL
);
