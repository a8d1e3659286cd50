-- Connect sessions: one attempt each to obtain a grant from a provider in
-- the end user's browser (authorization code with PKCE) or on a device
-- (RFC 8628), for a new credential or, for a reconnect, in place of an
-- existing credential's grant. The link token and the state are kept only
-- as SHA-256 digests; the PKCE verifier and the device code are sealed.
CREATE TABLE connect_sessions (
	id                        TEXT PRIMARY KEY,
	kind                      TEXT NOT NULL CHECK (kind IN ('authorization_code', 'device')),
	provider_id               TEXT NOT NULL REFERENCES providers (id),
	credential_name           TEXT NOT NULL,
	reconnect                 INTEGER NOT NULL DEFAULT 0,
	end_user_id               TEXT NOT NULL DEFAULT '',
	scopes                    TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
	return_to                 TEXT NOT NULL DEFAULT '',
	link_hash                 TEXT UNIQUE,                 -- SHA-256 (hex) of the link token; NULL for a device session
	state_hash                TEXT UNIQUE,                 -- SHA-256 (hex) of the state; NULL for a device session
	code_verifier             BLOB,                        -- sealed
	nonce                     TEXT NOT NULL DEFAULT '',
	redirect_uri              TEXT NOT NULL DEFAULT '',
	device_code               BLOB,                        -- sealed
	user_code                 TEXT NOT NULL DEFAULT '',
	verification_uri          TEXT NOT NULL DEFAULT '',
	verification_uri_complete TEXT NOT NULL DEFAULT '',
	poll_interval             INTEGER NOT NULL DEFAULT 0,  -- nanoseconds
	poll_owner                TEXT NOT NULL DEFAULT '',    -- the process polling a device session ('' when none)
	poll_lease_until          TEXT,                        -- until when poll_owner holds it
	status                    TEXT NOT NULL CHECK (status IN ('pending', 'connected', 'failed')),
	reason                    TEXT NOT NULL DEFAULT '',
	message                   TEXT NOT NULL DEFAULT '',
	credential_id             TEXT NOT NULL DEFAULT '',
	link_used_at              TEXT,
	state_used_at             TEXT,
	created_by                TEXT NOT NULL DEFAULT '',
	expires_at                TEXT NOT NULL,
	created_at                TEXT NOT NULL,
	updated_at                TEXT NOT NULL
) STRICT;

CREATE INDEX connect_sessions_pending ON connect_sessions (kind, expires_at) WHERE status = 'pending';
CREATE INDEX connect_sessions_provider ON connect_sessions (provider_id);

CREATE TABLE connect_events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	session_id TEXT NOT NULL REFERENCES connect_sessions (id) ON DELETE CASCADE,
	time       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	outcome    TEXT NOT NULL DEFAULT '',
	error_code TEXT NOT NULL DEFAULT '',
	message    TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX connect_events_session ON connect_events (session_id, id);
