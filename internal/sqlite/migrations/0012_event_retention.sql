-- Events are pruned by age in the background (PruneEvents): refresh
-- attempts after 12 hours, operator events after 90 days by default; the
-- events_kind_time index of 0011 finds the oldest of each class. The index
-- on (credential_id, time) of 0001 is dropped: events_credential_kind_time
-- (0004) serves every query by credential, and one index fewer is one
-- write fewer per event.
DROP INDEX events_credential_time;
