-- Webhooks: endpoints and the outbox of deliveries. A delivery row is
-- written in the same transaction as the credential change that causes it,
-- claimed like a refresh (lease and fencing version), and kept afterwards
-- as the endpoint's delivery log. Times are UTC text as in 0001.

CREATE TABLE webhook_endpoints (
	id         TEXT PRIMARY KEY,
	url        TEXT NOT NULL,
	events     TEXT NOT NULL DEFAULT '[]',         -- JSON array of event types
	secret     BLOB NOT NULL,                      -- sealed signing secret
	created_at TEXT NOT NULL
) STRICT;

CREATE TABLE webhook_deliveries (
	id               INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order per credential
	message_id       TEXT NOT NULL,                -- the webhook-id header
	endpoint_id      TEXT NOT NULL,
	credential_id    TEXT NOT NULL DEFAULT '',
	event_type       TEXT NOT NULL,
	payload          TEXT NOT NULL,                -- the JSON body; never a secret
	status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts         INTEGER NOT NULL DEFAULT 0,
	next_attempt_at  TEXT NOT NULL,
	last_attempt_at  TEXT,
	last_status_code INTEGER NOT NULL DEFAULT 0,
	last_error       TEXT NOT NULL DEFAULT '',
	created_at       TEXT NOT NULL,
	finished_at      TEXT,
	version          INTEGER NOT NULL DEFAULT 1,   -- fencing version
	lease_owner      TEXT NOT NULL DEFAULT '',
	lease_expires_at TEXT
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
	WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, credential_id, id)
	WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, id);
