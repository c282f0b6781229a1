-- Bulk import written in bulk from C (issue 16): ocx.import_commit() calls
-- ocx._import_write(), which parses, checks and writes the batch itself
-- (src/import.c); the parsed-row and stream tables and the SQL helpers of the
-- set-based import (98n_import.sql) go.
DROP FUNCTION ocx._import_row(bigint, text, text, text, text, text, text, text, text, text, text, text, text, text);
DROP FUNCTION ocx._import_chain(bigint, bigint, bytea, text, bigint, uuid, text, text, integer, timestamptz, jsonb, jsonb, uuid, uuid, text, text[]);
DROP FUNCTION ocx._import_lock_tags(text[]);
DROP FUNCTION ocx._import_lock_streams(text[]);
DROP TABLE ocx.import_rows, ocx.import_streams;

CREATE FUNCTION ocx._import_write(OUT events bigint, OUT skipped bigint, OUT streams bigint)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_write';
COMMENT ON FUNCTION ocx._import_write() IS
    'internal: the batch in ocx.import_staging written to the log (ocx.import_commit): every row parsed and checked, the locks an append takes, the events written in bulk with their hash chain; one error lists every refused line';

CREATE OR REPLACE FUNCTION ocx.import_begin() RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- an appender from here on (ocx.horizon = 'appenders'): before the xid
    PERFORM ocx.log_txid();
    -- one batch at a time: waits for an import in progress in another session
    TRUNCATE ocx.import_staging;
    PERFORM ocx._import_line(true);
END
$fn$;
COMMENT ON FUNCTION ocx.import_begin() IS
    'begin a bulk import in this transaction: empties ocx.import_staging (waiting for another import in progress) and numbers its lines from 1; then COPY into it and call ocx.import_commit()';

CREATE OR REPLACE FUNCTION ocx.import_commit(OUT events bigint, OUT skipped bigint, OUT streams bigint)
    RETURNS record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    -- the parsed batch is held in memory up to work_mem, then in a temporary file
    SET work_mem = '256MB'
AS $fn$
BEGIN
    IF NOT ocx._import_begun() THEN
        RAISE EXCEPTION 'no import was begun in this transaction' USING ERRCODE = 'OX660',
            HINT = 'Call ocx.import_begin(), COPY into ocx.import_staging and call ocx.import_commit() in one transaction.';
    END IF;
    -- an appender (ocx.horizon = 'appenders'): before the write takes the xid
    PERFORM ocx.log_txid();
    SELECT w.events, w.skipped, w.streams INTO events, skipped, streams FROM ocx._import_write() w;
    TRUNCATE ocx.import_staging;
    PERFORM ocx._wake_worker();
END
$fn$;
COMMENT ON FUNCTION ocx.import_commit() IS
    'write the batch in ocx.import_staging to the log (after ocx.import_begin(), in its transaction): checked row by row and as a set; a refused batch raises one error that lists every bad line, and nothing is written; returns the events written, the rows skipped (stored already: an idempotent repeat) and the streams written';

-- ocx.export without SET max_parallel_workers_per_gather = 0: the parallel
-- plan's failure was ocx.log_horizon() taking a new snapshot in the leader
-- (src/logspace.c, fixed); the function is inlined again
-- Export: the log (or a category) as CloudEvents, in log order, through the
-- one reader as stored (not upcast), resumable after a cursor.  Each event
-- carries its stream and version (and tags) as extension attributes, so
-- that ocx.import_commit() gives back the same log.
CREATE OR REPLACE FUNCTION ocx.export(category text DEFAULT NULL, "after" ocx.cursor DEFAULT NULL,
                           max_count integer DEFAULT NULL)
    RETURNS TABLE ("cursor" ocx.cursor, cloudevent jsonb)
    LANGUAGE sql STABLE PARALLEL RESTRICTED
BEGIN ATOMIC
    SELECT e."cursor",
           ocx.to_cloudevent(e)
             OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('ocxstream', e.stream_id,
                                                                   'ocxversion', e.stream_version,
                                                                   'schemaversion', e.schema_version)
             OPERATOR(pg_catalog.||) COALESCE((SELECT pg_catalog.jsonb_build_object('ocxtags',
                                                        pg_catalog.array_to_json(t.tags)::text)
                                                 FROM ocx.events t
                                                WHERE t.global_position OPERATOR(pg_catalog.=) e.global_position
                                                  AND t.tags IS NOT NULL), '{}'::jsonb)
      FROM ocx._read_log(export."after", export.max_count, NULL,
                         CASE WHEN export.category IS NOT NULL THEN ARRAY[ocx._stream_arg(export.category)] END,
                         false) e;
END;
COMMENT ON FUNCTION ocx.export(text, ocx.cursor, integer) IS
    'the log, or one category, in log order after a cursor as CloudEvents (as stored: not upcast), with the extension attributes ocxstream, ocxversion and ocxtags that ocx.import_commit() reads back; COPY (SELECT cloudevent FROM ocx.export()) TO ... writes newline-delimited JSON';
