-- ---------------------------------------------------------------------------
-- Bulk import and export (issue 16; docs/migrating.md).
--
-- An import is one transaction:
--     BEGIN;
--     SELECT ocx.import_begin();
--     COPY ocx.import_staging (stream_id, stream_version, type, data, ...) FROM STDIN (FORMAT csv);
--     SELECT * FROM ocx.import_commit();
--     COMMIT;
-- The staging table is UNLOGGED, all text (every value is parsed by
-- ocx.import_commit(), so that a bad value is refused with its line and an
-- ocx SQLSTATE), and holds one batch at a time per database: import_begin
-- truncates it, which waits for an import in progress elsewhere.
-- import_commit (ocx._import_write, src/import.c) parses and checks every
-- row, checks the batch as a set (versions per stream, ids, tenancy), locks
-- its streams as an append does and writes every event in bulk, as COPY
-- writes a table, with its hash chain; a refused batch raises one error that
-- lists every bad line, and nothing of the batch is written.
-- ---------------------------------------------------------------------------

CREATE FUNCTION ocx._import_line(reset boolean DEFAULT false) RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_line';
COMMENT ON FUNCTION ocx._import_line(boolean) IS
    'internal: the next line number of this session''s import batch (the default of ocx.import_staging.line); reset: start at 1, in this transaction';

CREATE FUNCTION ocx._import_begun() RETURNS boolean
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_begun';
COMMENT ON FUNCTION ocx._import_begun() IS
    'internal: whether this transaction called ocx.import_begin()';

CREATE UNLOGGED TABLE ocx.import_staging (
    stream_id       text,
    stream_version  text,
    type            text,
    data            text,
    metadata        text,
    event_id        text,
    source          text,
    "time"          text,
    schema_version  text,
    correlation_id  text,
    causation_id    text,
    tags            text,
    cloudevent      text,
    line            bigint NOT NULL DEFAULT ocx._import_line()
);
COMMENT ON TABLE ocx.import_staging IS
    'the rows of the import batch in progress (ocx.import_begin, COPY, ocx.import_commit in one transaction); every column is text, parsed by import_commit; line numbers the rows in the order they came';
COMMENT ON COLUMN ocx.import_staging.cloudevent IS
    'a structured-mode CloudEvent as ocx.export() writes it (ocxstream, ocxversion, ocxtags); the other columns stay empty';

CREATE FUNCTION ocx._import_write(OUT events bigint, OUT skipped bigint, OUT streams bigint)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_write';
COMMENT ON FUNCTION ocx._import_write() IS
    'internal: the batch in ocx.import_staging written to the log (ocx.import_commit): every row parsed and checked, the locks an append takes, the events written in bulk with their hash chain; one error lists every refused line';

CREATE FUNCTION ocx.import_begin() RETURNS void
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

CREATE FUNCTION ocx.import_commit(OUT events bigint, OUT skipped bigint, OUT streams bigint)
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

-- Export: the log (or a category) as CloudEvents, in log order, through the
-- one reader as stored (not upcast), resumable after a cursor.  Each event
-- carries its stream and version (and tags) as extension attributes, so
-- that ocx.import_commit() gives back the same log.  One C call per event
-- builds the whole CloudEvent (src/cloudevents.c).  include_archived, as
-- for read_all: the partitions ocx.archive() moved are exported too (their
-- tags looked up in ocx_archive.events).
CREATE FUNCTION ocx._export_cloudevent(e ocx.event, tags text[]) RETURNS jsonb
    LANGUAGE C STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_export_cloudevent';
COMMENT ON FUNCTION ocx._export_cloudevent(ocx.event, text[]) IS
    'internal: what ocx.export() writes for an event: ocx.to_cloudevent(e) with the attributes ocxstream, ocxversion, schemaversion and (when tagged) ocxtags';

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
