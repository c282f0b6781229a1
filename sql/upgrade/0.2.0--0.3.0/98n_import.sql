
-- 98n_import.sql (issue 16): bulk import (ocx.import_begin, ocx.import_staging,
-- ocx.import_commit) and export (ocx.export); docs/migrating.md.  A copy of
-- sql/parts/89a_import.sql, then the privilege rule restated whole (copy of
-- sql/parts/90_security.sql): ocx.export is granted to ocx_reader, and
-- ocx_admin may INSERT into ocx.import_staging (the COPY of an import).
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
-- import_commit parses and checks every row (src/import.c), checks the batch
-- as a set (versions per stream, ids, tenancy), locks its streams and writes
-- every event with one INSERT ... SELECT, the hash chain computed by a window
-- function; the first bad line raises, and nothing of the batch is written.
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

-- The batch as ocx._import_row parsed it (internal; ocx_owner only).
CREATE UNLOGGED TABLE ocx.import_rows (
    line            bigint NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL,
    source          text NOT NULL,
    type            text NOT NULL,
    schema_version  integer NOT NULL,
    "time"          timestamptz NOT NULL,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    correlation_id  uuid,
    causation_id    uuid,
    tags            text[]
);
COMMENT ON TABLE ocx.import_rows IS
    'internal: the import batch in progress as ocx.import_commit() parsed it; empty outside an import';

CREATE FUNCTION ocx._import_row(line bigint, stream_id text, stream_version text, type text, data text,
                                metadata text, event_id text, source text, "time" text,
                                schema_version text, correlation_id text, causation_id text,
                                tags text, cloudevent text,
                                OUT stream_id text, OUT stream_version bigint, OUT event_id uuid,
                                OUT source text, OUT type text, OUT schema_version integer,
                                OUT "time" timestamptz, OUT data jsonb, OUT metadata jsonb,
                                OUT correlation_id uuid, OUT causation_id uuid, OUT tags text[])
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_row';
COMMENT ON FUNCTION ocx._import_row(bigint, text, text, text, text, text, text, text, text, text, text, text, text, text) IS
    'internal: one staged import row parsed and checked as an append checks an event (defaults, size, contract); errors name the line';

CREATE FUNCTION ocx._import_chain(line bigint, current bigint, head bytea, stream_id text, stream_version bigint,
                                  event_id uuid, source text, type text, schema_version integer,
                                  "time" timestamptz, data jsonb, metadata jsonb, correlation_id uuid,
                                  causation_id uuid, tenant_id text, tags text[])
    RETURNS bytea
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_chain';
COMMENT ON FUNCTION ocx._import_chain(bigint, bigint, bytea, text, bigint, uuid, text, text, integer, timestamptz, jsonb, jsonb, uuid, uuid, text, text[]) IS
    'internal: over a batch''s rows in line order: checks that each stream''s rows are consecutive versions after current (OX001 names the line) and returns each event''s hash (ocx._event_hash) chained from the stream''s previous row, the first from head; NULL with ocx.chain off';

-- The streams of the batch in progress (internal; ocx_owner only).
CREATE UNLOGGED TABLE ocx.import_streams (
    stream_id   text NOT NULL,
    first_line  bigint NOT NULL,
    min_version bigint NOT NULL,
    max_version bigint NOT NULL
);
COMMENT ON TABLE ocx.import_streams IS
    'internal: the streams of the import batch in progress (ocx.import_commit()); empty outside an import';

CREATE FUNCTION ocx._import_lock_tags(tags text[]) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_lock_tags';
COMMENT ON FUNCTION ocx._import_lock_tags(text[]) IS
    'internal: the tag locks an append of events with these tags takes (ocx.append_if waits for the import)';

CREATE FUNCTION ocx._import_lock_streams(stream_ids text[]) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_import_lock_streams';
COMMENT ON FUNCTION ocx._import_lock_streams(text[]) IS
    'internal: the stream-order lock an append takes, on each stream of the import batch in the order given (an append of a new stream waits for the import)';

CREATE FUNCTION ocx.import_begin() RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- an appender from here on (ocx.horizon = 'appenders'): before the xid
    PERFORM ocx.log_txid();
    -- one batch at a time: waits for an import in progress in another session
    TRUNCATE ocx.import_staging, ocx.import_rows, ocx.import_streams;
    PERFORM ocx._import_line(true);
END
$fn$;
COMMENT ON FUNCTION ocx.import_begin() IS
    'begin a bulk import in this transaction: empties ocx.import_staging (waiting for another import in progress) and numbers its lines from 1; then COPY into it and call ocx.import_commit()';

CREATE FUNCTION ocx.import_commit(OUT events bigint, OUT skipped bigint, OUT streams bigint)
    RETURNS record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET work_mem = '256MB'
AS $fn$
DECLARE
    tenant text := NULLIF(current_setting('ocx.tenant', true), '');
    me     xid8;
    rows   bigint;
    bad    record;
BEGIN
    IF NOT ocx._import_begun() THEN
        RAISE EXCEPTION 'no import was begun in this transaction' USING ERRCODE = 'OX660',
            HINT = 'Call ocx.import_begin(), COPY into ocx.import_staging and call ocx.import_commit() in one transaction.';
    END IF;
    me := ocx.log_txid();

    -- every row on its own, as an append checks an event: the first bad line raises
    TRUNCATE ocx.import_rows, ocx.import_streams;
    INSERT INTO ocx.import_rows (line, stream_id, stream_version, event_id, source, type, schema_version,
                                 "time", data, metadata, correlation_id, causation_id, tags)
    SELECT x.line, (x.r).stream_id, (x.r).stream_version, (x.r).event_id, (x.r).source, (x.r).type,
           (x.r).schema_version, (x.r)."time", (x.r).data, (x.r).metadata, (x.r).correlation_id,
           (x.r).causation_id, (x.r).tags
      FROM (SELECT s.line,
                   ocx._import_row(s.line, s.stream_id, s.stream_version, s.type, s.data, s.metadata,
                                   s.event_id, s.source, s."time", s.schema_version, s.correlation_id,
                                   s.causation_id, s.tags, s.cloudevent) AS r
              FROM ocx.import_staging s OFFSET 0) x;
    GET DIAGNOSTICS rows = ROW_COUNT;
    IF rows = 0 THEN
        RAISE EXCEPTION 'the import batch is empty' USING ERRCODE = 'OX008',
            HINT = 'COPY the events into ocx.import_staging after ocx.import_begin().';
    END IF;

    INSERT INTO ocx.import_streams (stream_id, first_line, min_version, max_version)
    SELECT r.stream_id, min(r.line), min(r.stream_version), max(r.stream_version)
      FROM ocx.import_rows r GROUP BY r.stream_id;
    -- the plans below join the batch's streams: give the planner their number
    ANALYZE ocx.import_streams;

    -- what the import does not do: encrypt personal data, run inline projections
    IF EXISTS (SELECT FROM ocx.personal_data p WHERE p.dropped_at IS NULL) THEN
        SELECT r.line, r.type INTO bad FROM ocx.import_rows r
          JOIN ocx.personal_data p ON p.type = r.type AND p.dropped_at IS NULL
         ORDER BY r.line LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'line %: events of type "%" hold personal data', bad.line, bad.type
                USING ERRCODE = 'OX661',
                DETAIL = 'The import does not encrypt personal fields (ocx.define_personal_data).',
                HINT = 'Append the events of this type with ocx.append, or import them before defining their personal data.';
        END IF;
    END IF;
    IF EXISTS (SELECT FROM ocx.projections p WHERE p.mode = 'inline' AND p.state = 'running') THEN
        SELECT r.line, p.name INTO bad FROM ocx.import_rows r
          JOIN ocx.projections p ON p.mode = 'inline' AND p.state = 'running'
                                AND ocx._log_selects(r.type, r.stream_id, p.types, p.categories)
         ORDER BY r.line LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'line %: the inline projection "%" selects this event', bad.line, bad.name
                USING ERRCODE = 'OX661',
                DETAIL = 'The import does not run inline projections in its transaction.',
                HINT = 'Redefine the projection as async for the import (ocx.define_projection(mode => ''async'')), or append these events.';
        END IF;
    END IF;

    -- the locks an append takes: its tags', then its streams' (created at
    -- version 0 when new), in stream id order
    IF EXISTS (SELECT FROM ocx.import_rows r WHERE r.tags IS NOT NULL) THEN
        PERFORM ocx._import_lock_tags(ARRAY(SELECT DISTINCT t FROM ocx.import_rows r, unnest(r.tags) t));
    END IF;
    PERFORM ocx._import_lock_streams(ARRAY(SELECT i.stream_id FROM ocx.import_streams i
                                            ORDER BY i.stream_id));
    INSERT INTO ocx.streams (stream_id, category, version, tenant_id)
    SELECT i.stream_id, ocx.category(i.stream_id), 0, tenant FROM ocx.import_streams i
     ORDER BY i.stream_id
        ON CONFLICT (stream_id) DO NOTHING;
    PERFORM FROM ocx.streams s JOIN ocx.import_streams i ON i.stream_id = s.stream_id
     ORDER BY s.stream_id FOR UPDATE OF s;

    -- every stream: this tenant's (visible), not deleted
    SELECT i.first_line AS line, i.stream_id, s.deleted, s.version AS cur, i.min_version INTO bad
      FROM ocx.import_streams i LEFT JOIN ocx.streams s ON s.stream_id = i.stream_id
     WHERE s.stream_id IS NULL OR s.deleted OR i.min_version > s.version + 1
     ORDER BY i.first_line LIMIT 1;
    IF FOUND THEN
        IF bad.deleted IS NULL THEN
            RAISE EXCEPTION 'line %: stream "%" belongs to another tenant', bad.line, bad.stream_id
                USING ERRCODE = 'OX012',
                DETAIL = 'Stream ids are global; this one is taken by a tenant other than the session''s ocx.tenant.';
        ELSIF bad.deleted THEN
            RAISE EXCEPTION 'line %: stream "%" was deleted', bad.line, bad.stream_id
                USING ERRCODE = 'OX641', DETAIL = 'Its tombstone refuses every new event.';
        END IF;
    END IF;
    -- rows at stored versions: an idempotent repeat of the stored event, skipped
    skipped := 0;
    IF EXISTS (SELECT FROM ocx.import_streams i JOIN ocx.streams s ON s.stream_id = i.stream_id
                WHERE i.min_version <= s.version) THEN
        SELECT v.line, v.stream_id, v.stream_version, e.event_id AS stored, v.prev, v.cur INTO bad
          FROM (SELECT r.line, r.stream_id, r.stream_version, r.event_id, r.source, r.type, r.data,
                       s.version AS cur,
                       lag(r.stream_version) OVER (PARTITION BY r.stream_id ORDER BY r.line) AS prev
                  FROM ocx.import_rows r
                  JOIN ocx.import_streams i ON i.stream_id = r.stream_id
                  JOIN ocx.streams s ON s.stream_id = r.stream_id AND i.min_version <= s.version) v
          LEFT JOIN ocx.events e ON e.stream_id = v.stream_id AND e.stream_version = v.stream_version
         WHERE v.stream_version <= v.cur
           AND (e.event_id IS DISTINCT FROM v.event_id OR e.source <> v.source OR e.type <> v.type
                OR e.data <> v.data OR (v.prev IS NOT NULL AND v.stream_version <> v.prev + 1))
         ORDER BY v.line LIMIT 1;
        IF FOUND THEN
            IF bad.prev IS NOT NULL AND bad.stream_version <> bad.prev + 1 THEN
                RAISE EXCEPTION 'line %: version % of stream "%" does not follow version %', bad.line,
                    bad.stream_version, bad.stream_id, bad.prev USING ERRCODE = 'OX001',
                    DETAIL = 'A stream''s rows must be consecutive versions in line order.';
            END IF;
            RAISE EXCEPTION 'line %: version % of stream "%" is stored already, as another event', bad.line,
                bad.stream_version, bad.stream_id USING ERRCODE = 'OX001',
                DETAIL = CASE WHEN bad.stored IS NULL THEN 'The stored version was removed.'
                              ELSE format('The stored event is %s; a repeated import must repeat it exactly (id, source, type, data).', bad.stored) END;
        END IF;
        SELECT COALESCE(sum(LEAST(s.version, i.max_version) - i.min_version + 1), 0) INTO skipped
          FROM ocx.import_streams i JOIN ocx.streams s ON s.stream_id = i.stream_id
         WHERE i.min_version <= s.version;
    END IF;
    -- log order within a stream (as append.c's CheckStreamOrder): this
    -- transaction must not be older than the last append to a stream it continues
    SELECT s.stream_id INTO bad FROM ocx.import_streams i
      JOIN ocx.streams s ON s.stream_id = i.stream_id
      JOIN ocx.events e ON e.stream_id = s.stream_id AND e.stream_version = s.version
     WHERE s.version > 0 AND e.txid > me
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'this transaction is older than the last append to stream "%"', bad.stream_id
            USING ERRCODE = '40001',
            DETAIL = 'Another transaction appended to the stream and committed after this import took its transaction id; the imported events would sort before it in log order.',
            HINT = 'Roll back and retry the import.';
    END IF;

    -- the write: one statement, log positions in line order; _import_chain
    -- checks the versions of each stream and chains its hashes in that order
    BEGIN
        WITH ins AS (
            INSERT INTO ocx.events (stream_id, stream_version, event_id, source, type, schema_version, "time",
                                    data, metadata, correlation_id, causation_id, tenant_id, txid, tags, hash)
            SELECT x.stream_id, x.stream_version, x.event_id, x.source, x.type, x.schema_version, x."time",
                   x.data, x.metadata, x.correlation_id, x.causation_id, tenant, me, x.tags,
                   ocx._import_chain(x.line, x.cur, x.head, x.stream_id, x.stream_version, x.event_id,
                                     x.source, x.type, x.schema_version, x."time", x.data, x.metadata,
                                     x.correlation_id, x.causation_id, tenant, x.tags)
              FROM (SELECT r.*, s.version AS cur, s.head
                      FROM ocx.import_rows r JOIN ocx.streams s ON s.stream_id = r.stream_id
                     WHERE r.stream_version > s.version
                     ORDER BY r.line) x
            RETURNING stream_id, stream_version, hash
        ), upd AS (
            UPDATE ocx.streams s SET version = n.stream_version, head = COALESCE(n.hash, s.head),
                   updated_at = now()
              FROM ocx.import_streams i JOIN ins n ON n.stream_id = i.stream_id
                                                  AND n.stream_version = i.max_version
             WHERE s.stream_id = i.stream_id
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd) INTO events, streams;
    EXCEPTION WHEN unique_violation THEN
        -- an event id twice in the batch, or stored already (its stream the caller may not see)
        SELECT max(r.line) AS line, min(r.line) AS first, r.event_id INTO bad
          FROM ocx.import_rows r GROUP BY r.source, r.event_id HAVING count(*) > 1
         ORDER BY 1 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'line %: event id % is also on line %', bad.line, bad.event_id, bad.first
                USING ERRCODE = 'OX004', DETAIL = 'Event ids are unique per source.';
        END IF;
        SELECT r.line, r.event_id, e.stream_id, e.stream_version INTO bad
          FROM ocx.import_rows r JOIN ocx.events e ON e.source = r.source AND e.event_id = r.event_id
          JOIN ocx.streams s ON s.stream_id = r.stream_id
         WHERE r.stream_version > s.version
         ORDER BY r.line LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'line %: event id % is already stored in stream "%" at version %', bad.line,
                bad.event_id, bad.stream_id, bad.stream_version USING ERRCODE = 'OX004',
                DETAIL = 'Event ids are unique per source, across streams and tenants.';
        END IF;
        RAISE EXCEPTION 'an event id of the batch is already stored' USING ERRCODE = 'OX004',
            DETAIL = 'Event ids are unique per source, across streams and tenants.';
    END;

    TRUNCATE ocx.import_staging, ocx.import_rows, ocx.import_streams;
    PERFORM ocx._wake_worker();
END
$fn$;
COMMENT ON FUNCTION ocx.import_commit() IS
    'write the batch in ocx.import_staging to the log (after ocx.import_begin(), in its transaction): checked row by row and as a set, the first bad line raises and nothing is written; returns the events written, the rows skipped (stored already: an idempotent repeat) and the streams written';

-- Export: the log (or a category) as CloudEvents, in log order, through the
-- one reader as stored (not upcast), resumable after a cursor.  Each event
-- carries its stream and version (and tags) as extension attributes, so
-- that ocx.import_commit() gives back the same log.
CREATE FUNCTION ocx.export(category text DEFAULT NULL, "after" ocx.cursor DEFAULT NULL,
                           max_count integer DEFAULT NULL)
    RETURNS TABLE ("cursor" ocx.cursor, cloudevent jsonb)
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    -- a parallel plan of the reader failed at 200,000 events (t/196) with "cannot
    -- update SecondarySnapshot during a parallel operation": no parallel workers
    SET max_parallel_workers_per_gather = 0
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

