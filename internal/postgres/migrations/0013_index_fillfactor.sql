-- Room in the index pages that refreshes insert into out of key order.
-- A refresh moves its credential's entries in credentials_next_refresh_at
-- and credentials_expires_at to about an hour ahead, among the entries of
-- the credentials due then, and adds its event to its credential's range
-- of events_credential_kind_time. A full page splits in two, and an index
-- whose pages were filled up when its rows were loaded in key order (an
-- import, a restore, a REINDEX) splits nearly every page once before its
-- size levels off: at a million credentials that was most of the
-- database's growth in the first hours. With a third of each page left
-- free, the entries that vacuum frees make room for the new ones before a
-- page fills. Existing pages keep their fill until the next REINDEX; the
-- setting applies to pages filled from now on.
ALTER INDEX credentials_next_refresh_at SET (fillfactor = 70);
ALTER INDEX credentials_expires_at SET (fillfactor = 70);
ALTER INDEX events_credential_kind_time SET (fillfactor = 70);
