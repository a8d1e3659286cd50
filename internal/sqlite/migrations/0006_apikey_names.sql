-- A revoked API key's name may be given to a new key: names are unique
-- among unrevoked keys only. SQLite cannot drop a column's UNIQUE, so the
-- table is rebuilt (nothing references it).
CREATE TABLE api_keys_0006 (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	prefix      TEXT NOT NULL,
	hash        BLOB NOT NULL UNIQUE,             -- SHA-256 of the key
	role        TEXT NOT NULL CHECK (role IN ('admin', 'consumer')),
	credentials TEXT NOT NULL DEFAULT '[]',       -- JSON array of credential names
	created_at  TEXT NOT NULL,
	revoked_at  TEXT
) STRICT;
INSERT INTO api_keys_0006 (id, name, prefix, hash, role, credentials, created_at, revoked_at)
	SELECT id, name, prefix, hash, role, credentials, created_at, revoked_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_0006 RENAME TO api_keys;
CREATE UNIQUE INDEX api_keys_unrevoked_name ON api_keys (name) WHERE revoked_at IS NULL;
