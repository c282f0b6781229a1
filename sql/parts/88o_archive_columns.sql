-- ---------------------------------------------------------------------------
-- The archive of a partitioned log (11_log_archive.sql) gains the columns
-- ocx.events gained after 10_log.sql, in the same order, before
-- 88p_partitioned_log.sql indexes them.  (An upgrade has them already:
-- its archive table is created LIKE the ocx.events of that time, 98x.)
-- ---------------------------------------------------------------------------

ALTER TABLE ocx_archive.events ADD COLUMN tags text[];
ALTER TABLE ocx_archive.events ADD COLUMN hash bytea;
