-- Webhooks: endpoints and the outbox of deliveries. A delivery row is
-- written in the same transaction as the credential change that causes it,
-- claimed like a refresh (lease and fencing version), and kept afterwards
-- as the endpoint's delivery log.

CREATE TABLE webhook_endpoints (
	id         text PRIMARY KEY,
	url        text NOT NULL,
	events     text NOT NULL DEFAULT '[]',         -- JSON array of event types
	secret     bytea NOT NULL,                     -- sealed signing secret
	created_at timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- commit order per credential
	message_id       text NOT NULL,                -- the webhook-id header
	endpoint_id      text NOT NULL,
	credential_id    text NOT NULL DEFAULT '',
	event_type       text NOT NULL,
	payload          text NOT NULL,                -- the JSON body; never a secret
	status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts         integer NOT NULL DEFAULT 0,
	next_attempt_at  timestamptz NOT NULL,
	last_attempt_at  timestamptz,
	last_status_code integer NOT NULL DEFAULT 0,
	last_error       text NOT NULL DEFAULT '',
	created_at       timestamptz NOT NULL,
	finished_at      timestamptz,
	version          bigint NOT NULL DEFAULT 1,    -- fencing version
	lease_owner      text NOT NULL DEFAULT '',
	lease_expires_at timestamptz
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
	WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, credential_id, id)
	WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, id);
