-- Room in the index pages that refreshes add row versions to without
-- changing the key. PostgreSQL cannot update a credential in place when an
-- indexed column changes, and a refresh changes next_refresh_at and
-- expires_at: each claim and each commit writes a new row version, and
-- with it a new entry in every index of the table, beside the entry of the
-- old version, which stays until a vacuum or a page's bottom-up deletion
-- removes it. In an index whose pages were filled up when its rows were
-- loaded in key order (the name-ordered indexes after an import, all of
-- them after a restore or a REINDEX), a full page splits instead: at a
-- million credentials with 1 h tokens, the indexes on name and (status,
-- name) grew by 75 MiB an hour, a third of the database's growth. With a
-- third of each page left free (as 0013 left in credentials_next_refresh_at
-- and credentials_expires_at), the old versions are deleted before a page
-- fills: with it, the two stayed level (+0.0 MiB over the same window).
-- Existing pages keep their fill until the next REINDEX; the setting
-- applies to pages filled from now on.
ALTER INDEX credentials_pkey SET (fillfactor = 70);
ALTER INDEX credentials_leased SET (fillfactor = 70);
ALTER INDEX credentials_name_key SET (fillfactor = 70);
ALTER INDEX credentials_provider SET (fillfactor = 70);
ALTER INDEX credentials_end_user SET (fillfactor = 70);
ALTER INDEX credentials_status_name SET (fillfactor = 70);
ALTER INDEX credentials_updated_at SET (fillfactor = 70);
ALTER INDEX credentials_status_updated_at SET (fillfactor = 70);
