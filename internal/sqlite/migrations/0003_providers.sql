-- Providers: what every grant of one OAuth2 client shares. The client
-- secret moves from each credential to its provider, so that it is stored
-- once and rotated with one update.
--
-- Each existing credential gets a provider of its own, with the same id and
-- name as the credential. Its client secret is copied as sealed: it stays
-- bound to the credential's row (client_secret_ad names that row) until the
-- store, on open, re-seals it for the provider row and merges providers that
-- are the same client (see sqlstore.Store.upgradeProviders).

CREATE TABLE providers (
	id                       TEXT PRIMARY KEY,
	name                     TEXT NOT NULL UNIQUE,
	authorization_url        TEXT NOT NULL DEFAULT '',
	token_url                TEXT NOT NULL,
	device_authorization_url TEXT NOT NULL DEFAULT '',
	revocation_url           TEXT NOT NULL DEFAULT '',
	client_id                TEXT NOT NULL,
	client_secret            BLOB,                        -- sealed
	client_secret_ad         TEXT NOT NULL DEFAULT '',    -- a credentials row id the secret is still sealed for
	auth_style               TEXT NOT NULL CHECK (auth_style IN ('header', 'body')),
	scopes                   TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
	authorize_params         TEXT NOT NULL DEFAULT '{}',  -- JSON object of strings
	token_params             TEXT NOT NULL DEFAULT '{}',  -- JSON object of strings
	pkce                     TEXT NOT NULL DEFAULT 'S256' CHECK (pkce IN ('S256', 'none')),
	version                  INTEGER NOT NULL,
	created_at               TEXT NOT NULL,
	updated_at               TEXT NOT NULL
) STRICT;

INSERT INTO providers (id, name, token_url, client_id, client_secret, client_secret_ad, auth_style, version, created_at, updated_at)
	SELECT id, name, token_url, client_id, client_secret, CASE WHEN client_secret IS NULL THEN '' ELSE id END,
		auth_style, 1, created_at, updated_at
	FROM credentials;

CREATE TABLE credentials_new (
	id               TEXT PRIMARY KEY,
	name             TEXT NOT NULL UNIQUE,
	provider_id      TEXT NOT NULL REFERENCES providers (id),
	grant_type       TEXT NOT NULL CHECK (grant_type IN ('client_credentials', 'refresh_token')),
	refresh_token    BLOB,                        -- sealed
	scopes           TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
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
	updated_at       TEXT NOT NULL,
	end_user_id      TEXT NOT NULL DEFAULT '',
	end_user_name    TEXT NOT NULL DEFAULT '',
	end_user_email   TEXT NOT NULL DEFAULT ''
) STRICT;

INSERT INTO credentials_new (id, name, provider_id, grant_type, refresh_token, scopes, params, refresh_lead,
		access_token, token_type, expires_at, status, failure_count, last_error, last_error_code, last_refresh_at,
		next_refresh_at, version, lease_owner, lease_expires_at, created_at, updated_at)
	SELECT id, name, id, grant_type, refresh_token, scopes, params, refresh_lead,
		access_token, token_type, expires_at, status, failure_count, last_error, last_error_code, last_refresh_at,
		next_refresh_at, version, lease_owner, lease_expires_at, created_at, updated_at
	FROM credentials;

DROP TABLE credentials;
ALTER TABLE credentials_new RENAME TO credentials;

CREATE INDEX credentials_next_refresh_at ON credentials (next_refresh_at)
	WHERE status IN ('active', 'error');
CREATE INDEX credentials_leased ON credentials (lease_owner)
	WHERE lease_owner <> '';
CREATE INDEX credentials_provider ON credentials (provider_id);
CREATE INDEX credentials_end_user ON credentials (end_user_id) WHERE end_user_id <> '';
