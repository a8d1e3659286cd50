-- Connect sessions: one attempt each to obtain a grant from a provider in
-- the end user's browser (authorization code with PKCE) or on a device
-- (RFC 8628), for a new credential or, for a reconnect, in place of an
-- existing credential's grant. The link token and the state are kept only
-- as SHA-256 digests; the PKCE verifier and the device code are sealed.
CREATE TABLE connect_sessions (
	id                        text PRIMARY KEY,
	kind                      text NOT NULL CHECK (kind IN ('authorization_code', 'device')),
	provider_id               text NOT NULL REFERENCES providers (id),
	credential_name           text NOT NULL,
	reconnect                 integer NOT NULL DEFAULT 0,
	end_user_id               text NOT NULL DEFAULT '',
	scopes                    jsonb NOT NULL DEFAULT '[]',  -- array of strings
	return_to                 text NOT NULL DEFAULT '',
	link_hash                 text UNIQUE,                  -- SHA-256 (hex) of the link token; NULL for a device session
	state_hash                text UNIQUE,                  -- SHA-256 (hex) of the state; NULL for a device session
	code_verifier             bytea,                        -- sealed
	nonce                     text NOT NULL DEFAULT '',
	redirect_uri              text NOT NULL DEFAULT '',
	device_code               bytea,                        -- sealed
	user_code                 text NOT NULL DEFAULT '',
	verification_uri          text NOT NULL DEFAULT '',
	verification_uri_complete text NOT NULL DEFAULT '',
	poll_interval             bigint NOT NULL DEFAULT 0,    -- nanoseconds
	poll_owner                text NOT NULL DEFAULT '',     -- the process polling a device session ('' when none)
	poll_lease_until          timestamptz,                  -- until when poll_owner holds it
	status                    text NOT NULL CHECK (status IN ('pending', 'connected', 'failed')),
	reason                    text NOT NULL DEFAULT '',
	message                   text NOT NULL DEFAULT '',
	credential_id             text NOT NULL DEFAULT '',
	link_used_at              timestamptz,
	state_used_at             timestamptz,
	created_by                text NOT NULL DEFAULT '',
	expires_at                timestamptz NOT NULL,
	created_at                timestamptz NOT NULL,
	updated_at                timestamptz NOT NULL
);

CREATE INDEX connect_sessions_pending ON connect_sessions (kind, expires_at) WHERE status = 'pending';
CREATE INDEX connect_sessions_provider ON connect_sessions (provider_id);

CREATE TABLE connect_events (
	id         bigserial PRIMARY KEY,
	session_id text NOT NULL REFERENCES connect_sessions (id) ON DELETE CASCADE,
	time       timestamptz NOT NULL,
	kind       text NOT NULL,
	outcome    text NOT NULL DEFAULT '',
	error_code text NOT NULL DEFAULT '',
	message    text NOT NULL DEFAULT ''
);

CREATE INDEX connect_events_session ON connect_events (session_id, id);
