-- Initial schema. Times are UTC text in the fixed-width form
-- 2006-01-02T15:04:05.000000Z, so that text order is time order. Durations
-- are integer nanoseconds. Columns marked "sealed" hold internal/seal
-- ciphertexts bound to the row id and the column name; NULL means empty.

CREATE TABLE credentials (
	id               TEXT PRIMARY KEY,
	name             TEXT NOT NULL UNIQUE,
	token_url        TEXT NOT NULL,
	grant_type       TEXT NOT NULL CHECK (grant_type IN ('client_credentials', 'refresh_token')),
	client_id        TEXT NOT NULL,
	client_secret    BLOB,                        -- sealed
	refresh_token    BLOB,                        -- sealed
	scopes           TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
	auth_style       TEXT NOT NULL CHECK (auth_style IN ('header', 'body')),
	params           TEXT NOT NULL DEFAULT '{}',  -- JSON object of strings
	refresh_lead     INTEGER NOT NULL DEFAULT 0,  -- nanoseconds
	access_token     BLOB,                        -- sealed; NULL before the first token
	token_type       TEXT NOT NULL DEFAULT '',
	expires_at       TEXT,
	status           TEXT NOT NULL CHECK (status IN ('active', 'error', 'needs_reauth', 'disabled')),
	failure_count    INTEGER NOT NULL DEFAULT 0,
	last_error       TEXT NOT NULL DEFAULT '',
	last_error_code  TEXT NOT NULL DEFAULT '',
	last_refresh_at  TEXT,
	next_refresh_at  TEXT NOT NULL,
	version          INTEGER NOT NULL,            -- fencing version
	lease_owner      TEXT NOT NULL DEFAULT '',    -- '' when not leased
	lease_expires_at TEXT,
	created_at       TEXT NOT NULL,
	updated_at       TEXT NOT NULL
) STRICT;

-- The refresher's schedule: only refreshable credentials are indexed. Queries
-- repeat the predicate verbatim so that the planner uses the index.
CREATE INDEX credentials_next_refresh_at ON credentials (next_refresh_at)
	WHERE status IN ('active', 'error');
-- Leased credentials are few; NextRefreshAt looks at them separately.
CREATE INDEX credentials_leased ON credentials (lease_owner)
	WHERE lease_owner <> '';

CREATE TABLE events (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	credential_id   TEXT NOT NULL DEFAULT '',
	credential_name TEXT NOT NULL DEFAULT '',
	time            TEXT NOT NULL,
	kind            TEXT NOT NULL,
	outcome         TEXT NOT NULL DEFAULT '',
	error_code      TEXT NOT NULL DEFAULT '',
	message         TEXT NOT NULL DEFAULT '',
	latency         INTEGER NOT NULL DEFAULT 0,  -- nanoseconds
	actor           TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX events_credential_time ON events (credential_id, time);

CREATE TABLE api_keys (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	prefix      TEXT NOT NULL,
	hash        BLOB NOT NULL UNIQUE,             -- SHA-256 of the key
	role        TEXT NOT NULL CHECK (role IN ('admin', 'consumer')),
	credentials TEXT NOT NULL DEFAULT '[]',       -- JSON array of credential names
	created_at  TEXT NOT NULL,
	revoked_at  TEXT
) STRICT;

-- Data keys wrapped by the master key; the highest id is the active key.
CREATE TABLE data_keys (
	id         INTEGER PRIMARY KEY,
	wrapped    BLOB NOT NULL,
	created_at TEXT NOT NULL
) STRICT;
