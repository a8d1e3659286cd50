-- The web console's lists and overview: credentials by status and by
-- expiry, the latest change (the console's change cursor), and the refresh
-- attempts of the last hour, each read through an index at any scale.
CREATE INDEX credentials_status_name ON credentials (status, name);
CREATE INDEX credentials_expires_at ON credentials (expires_at) WHERE access_token IS NOT NULL;
CREATE INDEX credentials_updated_at ON credentials (updated_at);
CREATE INDEX credentials_status_updated_at ON credentials (status, updated_at);
CREATE INDEX events_kind_time ON events (kind, time);
