-- Security round 2. Events of a credential are trimmed in two classes,
-- refresh attempts (kind 'refresh') and operator events (every other
-- kind), each to its own cap: this index serves both trims and the
-- listing of one class. The audit log, pruned by age (PruneAudit), uses
-- the audit_time index of 0002.
CREATE INDEX events_credential_kind_time ON events (credential_id, kind, time);

-- When the user's sessions were last revoked (a password change or
-- revoke-sessions); NULL if never. A login that read the user before it
-- stores no family (CreateRefreshToken compares its auth_time).
ALTER TABLE users ADD COLUMN sessions_revoked_at timestamptz;
