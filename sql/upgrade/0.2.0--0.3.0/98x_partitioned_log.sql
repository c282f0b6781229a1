-- A partitioned log (issue 15; docs/scaling.md, "A partitioned log"): the
-- archive schema and table (sql/parts/11_log_archive.sql), the reads with
-- include_archived (21_reads.sql, 22_reader.sql, 30_aggregates.sql: the
-- signatures gain a last parameter with a default, so they are dropped and
-- created again).  ocx.partition_log, partition_ahead, archive and
-- log_partitions follow in 98y_partitioned_log.sql, which is the part
-- sql/parts/88p_partitioned_log.sql itself (a link), then the grants on the
-- new schemas (91_log_archive_privileges.sql) in 98yb.  ocx.distribute()'s read_stream with the
-- new signature (88_citus.sql) is in its last restatement, 98z2_citus.sql.
-- ---------------------------------------------------------------------------
-- The archive of a partitioned log (docs/scaling.md, "A partitioned log").
--
-- ocx.partition_log() (88p_partitioned_log.sql) turns ocx.events into a table
-- partitioned by ranges of global_position; ocx.archive() detaches the
-- partitions wholly before a cursor and attaches them here, to
-- ocx_archive.events, partitioned the same way and empty until then.  Reads
-- with include_archived => true read both through ocx._log_events.  The
-- schemas exist in every database so that the reads can name the archive;
-- until a log is partitioned they hold nothing but the empty parent.
-- ---------------------------------------------------------------------------

-- live partitions (ocx_partitions) and archived ones (ocx_archive): reached
-- only through their parents ocx.events and ocx_archive.events
CREATE SCHEMA ocx_partitions;
CREATE SCHEMA ocx_archive;
COMMENT ON SCHEMA ocx_partitions IS 'the partitions of a partitioned ocx.events (ocx.partition_log)';
COMMENT ON SCHEMA ocx_archive IS 'the archived partitions of the log (ocx.archive), read through ocx_archive.events';

CREATE TABLE ocx_archive.events (LIKE ocx.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (global_position);
-- the same keys as the live log; uniqueness of (stream_id, stream_version)
-- and (source, event_id) is the append's (ocx._log_unique), as on ocx.events
ALTER TABLE ocx_archive.events ADD CONSTRAINT events_pkey PRIMARY KEY (global_position);
CREATE INDEX events_stream_version_idx ON ocx_archive.events (stream_id, stream_version);
CREATE INDEX events_source_event_id_idx ON ocx_archive.events (source, event_id);
CREATE INDEX events_log_order_idx ON ocx_archive.events (txid, global_position);
COMMENT ON TABLE ocx_archive.events IS
    'the archived events: the partitions ocx.archive() detached from ocx.events (read with include_archived => true)';

CREATE TRIGGER events_immutable_row BEFORE UPDATE OR DELETE ON ocx_archive.events
    FOR EACH ROW EXECUTE FUNCTION ocx._refuse_modification();
CREATE TRIGGER events_immutable_truncate BEFORE TRUNCATE ON ocx_archive.events
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._refuse_modification();
ALTER TABLE ocx_archive.events ENABLE ALWAYS TRIGGER events_immutable_row;
ALTER TABLE ocx_archive.events ENABLE ALWAYS TRIGGER events_immutable_truncate;

ALTER TABLE ocx_archive.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx_archive.events FORCE ROW LEVEL SECURITY;
CREATE POLICY events_tenant ON ocx_archive.events FOR ALL
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
COMMENT ON POLICY events_tenant ON ocx_archive.events IS
    'a session reads the archived events of its ocx.tenant (none set: untenanted events)';
REVOKE ALL ON ocx_archive.events FROM PUBLIC;

-- The events a read sees: the live log, and with include_archived the
-- archive too.  Inlined into each read; a constant false drops the archive
-- from the plan, so a read of the live log costs what it did.
CREATE FUNCTION ocx._log_events(include_archived boolean)
    RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint, event_id uuid,
                   source text, type text, schema_version integer, "time" timestamptz, data jsonb,
                   metadata jsonb, correlation_id uuid, causation_id uuid, tenant_id text, txid xid8)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           e.schema_version, e.time, e.data, e.metadata, e.correlation_id, e.causation_id,
           e.tenant_id, e.txid
      FROM ocx.events e
    UNION ALL
    SELECT a.global_position, a.stream_id, a.stream_version, a.event_id, a.source, a.type,
           a.schema_version, a.time, a.data, a.metadata, a.correlation_id, a.causation_id,
           a.tenant_id, a.txid
      FROM ocx_archive.events a
     WHERE _log_events.include_archived;
END;
COMMENT ON FUNCTION ocx._log_events(boolean) IS
    'internal: the rows of ocx.events, and with include_archived those of ocx_archive.events too (inlined into the reads)';

DROP FUNCTION ocx.read_category(text, ocx.cursor, integer, boolean, timestamptz);
DROP FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[], boolean, timestamptz);
DROP FUNCTION ocx.read_stream(text, bigint, integer, text, text[]);
DROP FUNCTION ocx.load(text, text, bigint, timestamptz);

-- The one reader: the events after a cursor, in log order, below the
-- horizon (ocx.log_horizon() once for the read, or the horizon a consumer
-- took for its whole pass), that the filter selects, upcast or as stored.
-- Filters apply before upcasting: an event left out is never upcast.
-- include_archived: the archived partitions too (ocx.archive, 88p_partitioned_log.sql).
CREATE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[], categories text[],
                              upcast boolean, horizon xid8, after_time timestamptz, include_archived boolean)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN _read_log.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN _read_log.upcast IS FALSE THEN ocx._reveal(e.type, e.data, e.event_id)
                ELSE ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) END,
           ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx._log_events(_read_log.include_archived) e
     WHERE e.txid < COALESCE(_read_log.horizon, (SELECT ocx.log_horizon()))
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(CASE WHEN _read_log.after_time IS NULL THEN _read_log."after"
                                                                  ELSE ocx._read_start(_read_log."after", _read_log.after_time) END),
                                                   '0'::xid8),
                                          COALESCE(ocx.global_position(CASE WHEN _read_log.after_time IS NULL THEN _read_log."after"
                                                                            ELSE ocx._read_start(_read_log."after", _read_log.after_time) END),
                                                   0))
       AND (_read_log.after_time IS NULL OR e.time >= _read_log.after_time)
       AND ocx._log_selects(e.type, e.stream_id, _read_log.types, _read_log.categories)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log.max_count);
END;
COMMENT ON FUNCTION ocx._read_log(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz, boolean) IS
    'internal: the one reader of the log (include_archived: the archive too, ocx.archive): events after a cursor in gap-free log order, below the horizon (given, or ocx.log_horizon() once), selected by types and categories, upcast or as stored; after_time: only events whose time is >= it, started through the time map (ocx._read_start)';

-- The one reader over the live log: what every consumer runs (src/reader.c).
CREATE OR REPLACE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[], categories text[],
                              upcast boolean, horizon xid8 DEFAULT NULL, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx._read_log(_read_log."after", _read_log.max_count, _read_log.types, _read_log.categories,
                                _read_log.upcast, _read_log.horizon, _read_log.after_time, false);
END;
COMMENT ON FUNCTION ocx._read_log(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader of the live log: events after a cursor in gap-free log order, below the horizon (given, or ocx.log_horizon() once), selected by types and categories, upcast or as stored; after_time: only events whose time is >= it, started through the time map (ocx._read_start)';

CREATE FUNCTION ocx.read_all("after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                             types text[] DEFAULT NULL, categories text[] DEFAULT NULL,
                             upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL,
                             include_archived boolean DEFAULT false)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx._read_log(read_all."after", read_all.max_count, read_all.types,
                                read_all.categories, read_all.upcast, NULL, read_all.after_time,
                                COALESCE(read_all.include_archived, false));
END;
COMMENT ON FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[], boolean, timestamptz, boolean) IS
    'events after a cursor in gap-free log order (only transactions below the snapshot''s xmin); NULL max_count = no limit; upcast => false returns them as stored (schema_version and data as written), for events whose upcaster fails (OX121); after_time: only events whose time is >= it, found through the time map without scanning the log; include_archived: the archived partitions too (ocx.archive)';

CREATE FUNCTION ocx.read_category(category text, "after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                                  upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL,
                                  include_archived boolean DEFAULT false)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx.read_all(read_category."after", read_category.max_count, NULL,
                               ARRAY[ocx._stream_arg(read_category.category)], read_category.upcast,
                               read_category.after_time, read_category.include_archived);
END;
COMMENT ON FUNCTION ocx.read_category(text, ocx.cursor, integer, boolean, timestamptz, boolean) IS
    'the events of one category (stream ids "category-...") in gap-free log order; upcast => false returns them as stored; after_time: only events whose time is >= it; include_archived: the archived partitions too (ocx.archive)';

CREATE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT NULL, max_count integer DEFAULT NULL,
                                direction text DEFAULT 'forward', types text[] DEFAULT NULL,
                                include_archived boolean DEFAULT false)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.global_position, r.stream_id, r.stream_version, r.event_id, r.source, r.type,
           r.schema_version, r.time, r.data, r.metadata, r.correlation_id, r.causation_id,
           r.tenant_id, r.txid, r.cursor
      FROM ((SELECT false AS backward, f.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx._log_events(COALESCE(read_stream.include_archived, false)) e
                      WHERE e.stream_id = ocx._stream_arg(read_stream.stream_id)
                        AND e.stream_version >= ocx._version_arg(read_stream.from_version)
                        AND e.stream_version > ocx._hidden_through(read_stream.stream_id)
                        AND (read_stream.types IS NULL OR e.type = ANY (read_stream.types))
                      ORDER BY e.stream_version
                      LIMIT ocx._count_arg(read_stream.max_count)) f)
            UNION ALL
            (SELECT true AS backward, b.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx._log_events(COALESCE(read_stream.include_archived, false)) e
                      WHERE e.stream_id = ocx._stream_arg(read_stream.stream_id)
                        AND e.stream_version <= CASE WHEN read_stream.from_version IS NULL THEN 9223372036854775807
                                                     ELSE ocx._version_arg(read_stream.from_version) END
                        AND e.stream_version > ocx._hidden_through(read_stream.stream_id)
                        AND (read_stream.types IS NULL OR e.type = ANY (read_stream.types))
                      ORDER BY e.stream_version DESC
                      LIMIT ocx._count_arg(read_stream.max_count)) b)) r
     WHERE r.backward = ocx._direction_arg(read_stream.direction);
END;
COMMENT ON FUNCTION ocx.read_stream(text, bigint, integer, text, text[], boolean) IS
    'the events of one stream in stream order: forward from from_version up (NULL: from the first), or with direction => ''backward'' from from_version down (NULL: from the last); types: only events of these types; include_archived: the archived partitions too (ocx.archive)';

CREATE FUNCTION ocx.load(type text, stream_id text, as_of_version bigint DEFAULT NULL,
                         as_of_time timestamptz DEFAULT NULL, include_archived boolean DEFAULT false,
                         OUT state jsonb, OUT version bigint)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_load';
COMMENT ON FUNCTION ocx.load(text, text, bigint, timestamptz, boolean) IS
    'the aggregate''s state after replaying the stream (from the newest usable snapshot), optionally as of a version or a time; include_archived: replay archived events too (ocx.archive)';
