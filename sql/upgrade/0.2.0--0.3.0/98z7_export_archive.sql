-- ocx.export() as 0.3.0 has it: each CloudEvent built by
-- ocx._export_cloudevent (98z6), and include_archived (as read_all has it):
-- with true, the partitions ocx.archive() moved to ocx_archive.events are
-- exported too, so that an export of an archived log imports into an
-- identical log; the tags are looked up by (txid, global_position), in the
-- archive only for an event the live log has no row of.  A new argument, so
-- the three-argument function of 98n_import.sql is dropped first.  See
-- sql/parts/89a_import.sql.
DROP FUNCTION ocx.export(text, ocx.cursor, integer);

CREATE FUNCTION ocx.export(category text DEFAULT NULL, "after" ocx.cursor DEFAULT NULL,
                           max_count integer DEFAULT NULL, include_archived boolean DEFAULT false)
    RETURNS TABLE ("cursor" ocx.cursor, cloudevent jsonb)
    LANGUAGE sql STABLE PARALLEL RESTRICTED
BEGIN ATOMIC
    SELECT e."cursor",
           -- the event's row: in the live log, else (include_archived) in
           -- the archive; the archive is not probed for a live event
           ocx._export_cloudevent(e, (SELECT r.tags
                                        FROM (SELECT t.tags FROM ocx.events t
                                               WHERE t.txid OPERATOR(pg_catalog.=) e.txid
                                                 AND t.global_position OPERATOR(pg_catalog.=) e.global_position
                                              UNION ALL
                                              SELECT a.tags FROM ocx_archive.events a
                                               WHERE export.include_archived
                                                 AND a.txid OPERATOR(pg_catalog.=) e.txid
                                                 AND a.global_position OPERATOR(pg_catalog.=) e.global_position) r
                                       LIMIT 1))
      FROM ocx._read_log(export."after", export.max_count, NULL,
                         CASE WHEN export.category IS NOT NULL THEN ARRAY[ocx._stream_arg(export.category)] END,
                         false, NULL, NULL, COALESCE(export.include_archived, false)) e;
END;
COMMENT ON FUNCTION ocx.export(text, ocx.cursor, integer, boolean) IS
    'the log, or one category, in log order after a cursor as CloudEvents (as stored: not upcast), with the extension attributes ocxstream, ocxversion and ocxtags that ocx.import_commit() reads back; include_archived: the partitions ocx.archive() moved too (the whole log); COPY (SELECT cloudevent FROM ocx.export()) TO ... writes newline-delimited JSON';
