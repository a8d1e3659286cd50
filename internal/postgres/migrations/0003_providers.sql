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
	id                       text PRIMARY KEY,
	name                     text NOT NULL UNIQUE,
	authorization_url        text NOT NULL DEFAULT '',
	token_url                text NOT NULL,
	device_authorization_url text NOT NULL DEFAULT '',
	revocation_url           text NOT NULL DEFAULT '',
	client_id                text NOT NULL,
	client_secret            bytea,                         -- sealed
	client_secret_ad         text NOT NULL DEFAULT '',      -- a credentials row id the secret is still sealed for
	auth_style               text NOT NULL CHECK (auth_style IN ('header', 'body')),
	scopes                   jsonb NOT NULL DEFAULT '[]',   -- array of strings
	authorize_params         jsonb NOT NULL DEFAULT '{}',   -- object of strings
	token_params             jsonb NOT NULL DEFAULT '{}',   -- object of strings
	pkce                     text NOT NULL DEFAULT 'S256' CHECK (pkce IN ('S256', 'none')),
	version                  bigint NOT NULL,
	created_at               timestamptz NOT NULL,
	updated_at               timestamptz NOT NULL
);

INSERT INTO providers (id, name, token_url, client_id, client_secret, client_secret_ad, auth_style, version, created_at, updated_at)
	SELECT id, name, token_url, client_id, client_secret, CASE WHEN client_secret IS NULL THEN '' ELSE id END,
		auth_style, 1, created_at, updated_at
	FROM credentials;

ALTER TABLE credentials
	ADD COLUMN provider_id text REFERENCES providers (id),
	ADD COLUMN end_user_id text NOT NULL DEFAULT '',
	ADD COLUMN end_user_name text NOT NULL DEFAULT '',
	ADD COLUMN end_user_email text NOT NULL DEFAULT '';
UPDATE credentials SET provider_id = id;
ALTER TABLE credentials
	ALTER COLUMN provider_id SET NOT NULL,
	DROP COLUMN token_url,
	DROP COLUMN client_id,
	DROP COLUMN client_secret,
	DROP COLUMN auth_style;

CREATE INDEX credentials_provider ON credentials (provider_id);
CREATE INDEX credentials_end_user ON credentials (end_user_id) WHERE end_user_id <> '';
