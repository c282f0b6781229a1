-- Reads of the live log plan as cheaply as before the log could be
-- partitioned (docs/scaling.md, "A partitioned log"): read_stream and
-- _read_log get two forms each, over the live log and over the live log and
-- the archive, and a planner support function (src/livereads.c) that plans
-- the form a constant include_archived selects alone.  Restates, after
-- 98x_partitioned_log.sql, what sql/parts/11_log_archive.sql, 21_reads.sql
-- and 22_reader.sql say of them.

-- The planner support function of the reads that take include_archived
-- (ocx.read_stream, ocx._read_log): a call with include_archived a constant
-- becomes a call of the form it selects, "_<name>_live" (false or NULL) or
-- "_<name>_archived" (true), so that the planner inlines that form alone
-- (src/livereads.c).
CREATE FUNCTION ocx._read_form_support(internal) RETURNS internal
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_read_form_support';
COMMENT ON FUNCTION ocx._read_form_support(internal) IS
    'internal: planner support of the reads with include_archived: a constant plans the form it selects alone (_<name>_live or _<name>_archived)';

-- read_stream's two forms: over the live log (what a read with
-- include_archived false or NULL plans), and over the live log and the
-- archive (include_archived true); ocx._read_form_support (src/livereads.c)
-- replaces a call with a constant include_archived by the form it selects.
CREATE FUNCTION ocx._read_stream_live(stream_id text, from_version bigint, max_count integer,
                                      direction text, types text[])
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
                       FROM ocx.events e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_live.stream_id)
                        AND e.stream_version >= ocx._version_arg(_read_stream_live.from_version)
                        AND e.stream_version > ocx._hidden_through(_read_stream_live.stream_id)
                        AND (_read_stream_live.types IS NULL OR e.type = ANY (_read_stream_live.types))
                      ORDER BY e.stream_version
                      LIMIT ocx._count_arg(_read_stream_live.max_count)) f)
            UNION ALL
            (SELECT true AS backward, b.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx.events e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_live.stream_id)
                        AND e.stream_version <= CASE WHEN _read_stream_live.from_version IS NULL THEN 9223372036854775807
                                                     ELSE ocx._version_arg(_read_stream_live.from_version) END
                        AND e.stream_version > ocx._hidden_through(_read_stream_live.stream_id)
                        AND (_read_stream_live.types IS NULL OR e.type = ANY (_read_stream_live.types))
                      ORDER BY e.stream_version DESC
                      LIMIT ocx._count_arg(_read_stream_live.max_count)) b)) r
     WHERE r.backward = ocx._direction_arg(_read_stream_live.direction);
END;
COMMENT ON FUNCTION ocx._read_stream_live(text, bigint, integer, text, text[]) IS
    'internal: ocx.read_stream over the live log only (what a read with include_archived false plans)';

CREATE FUNCTION ocx._read_stream_archived(stream_id text, from_version bigint, max_count integer,
                                          direction text, types text[])
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
                       FROM ocx._log_events(true) e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_archived.stream_id)
                        AND e.stream_version >= ocx._version_arg(_read_stream_archived.from_version)
                        AND e.stream_version > ocx._hidden_through(_read_stream_archived.stream_id)
                        AND (_read_stream_archived.types IS NULL OR e.type = ANY (_read_stream_archived.types))
                      ORDER BY e.stream_version
                      LIMIT ocx._count_arg(_read_stream_archived.max_count)) f)
            UNION ALL
            (SELECT true AS backward, b.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx._log_events(true) e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_archived.stream_id)
                        AND e.stream_version <= CASE WHEN _read_stream_archived.from_version IS NULL THEN 9223372036854775807
                                                     ELSE ocx._version_arg(_read_stream_archived.from_version) END
                        AND e.stream_version > ocx._hidden_through(_read_stream_archived.stream_id)
                        AND (_read_stream_archived.types IS NULL OR e.type = ANY (_read_stream_archived.types))
                      ORDER BY e.stream_version DESC
                      LIMIT ocx._count_arg(_read_stream_archived.max_count)) b)) r
     WHERE r.backward = ocx._direction_arg(_read_stream_archived.direction);
END;
COMMENT ON FUNCTION ocx._read_stream_archived(text, bigint, integer, text, text[]) IS
    'internal: ocx.read_stream over the live log and the archive (what a read with include_archived true plans)';

-- With a constant include_archived the planner calls the form it selects
-- instead (ocx._read_form_support); this body runs otherwise (a generic
-- plan's parameter): both forms, one selected by a constant column as
-- direction is, so the parameter becomes a one-time filter.
CREATE OR REPLACE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT NULL, max_count integer DEFAULT NULL,
                                direction text DEFAULT 'forward', types text[] DEFAULT NULL,
                                include_archived boolean DEFAULT false)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
    SUPPORT ocx._read_form_support
BEGIN ATOMIC
    SELECT s.global_position, s.stream_id, s.stream_version, s.event_id, s.source, s.type,
           s.schema_version, s.time, s.data, s.metadata, s.correlation_id, s.causation_id,
           s.tenant_id, s.txid, s.cursor
      FROM ((SELECT false AS archived, l.*
               FROM ocx._read_stream_live(read_stream.stream_id, read_stream.from_version, read_stream.max_count,
                                          read_stream.direction, read_stream.types) l)
            UNION ALL
            (SELECT true AS archived, a.*
               FROM ocx._read_stream_archived(read_stream.stream_id, read_stream.from_version, read_stream.max_count,
                                              read_stream.direction, read_stream.types) a)) s
     WHERE s.archived = COALESCE(read_stream.include_archived, false);
END;
COMMENT ON FUNCTION ocx.read_stream(text, bigint, integer, text, text[], boolean) IS
    'the events of one stream in stream order: forward from from_version up (NULL: from the first), or with direction => ''backward'' from from_version down (NULL: from the last); types: only events of these types; include_archived: the archived partitions too (ocx.archive)';

-- Two forms: over the live log, and over the live log and the archive
-- (include_archived, ocx.archive, 88p_partitioned_log.sql).
CREATE FUNCTION ocx._read_log_live("after" ocx.cursor, max_count integer, types text[], categories text[],
                                   upcast boolean, horizon xid8, after_time timestamptz)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN _read_log_live.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN _read_log_live.upcast IS FALSE THEN ocx._reveal(e.type, e.data, e.event_id)
                ELSE ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) END,
           ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < (SELECT b.below FROM ocx._log_bounds(NULL, _read_log_live.horizon) b)
       AND (e.txid, e.global_position) > (SELECT b.after_txid, b.after_position
                                            FROM ocx._log_bounds(CASE WHEN _read_log_live.after_time IS NULL THEN _read_log_live."after"
                                                                      ELSE ocx._read_start(_read_log_live."after", _read_log_live.after_time) END,
                                                                 _read_log_live.horizon) b)
       AND (_read_log_live.after_time IS NULL OR e.time >= _read_log_live.after_time)
       AND ocx._log_selects(e.type, e.stream_id, _read_log_live.types, _read_log_live.categories)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log_live.max_count);
END;
COMMENT ON FUNCTION ocx._read_log_live(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader over the live log only (what ocx._read_log with include_archived false plans)';

CREATE FUNCTION ocx._read_log_archived("after" ocx.cursor, max_count integer, types text[], categories text[],
                                       upcast boolean, horizon xid8, after_time timestamptz)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN _read_log_archived.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN _read_log_archived.upcast IS FALSE THEN ocx._reveal(e.type, e.data, e.event_id)
                ELSE ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) END,
           ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx._log_events(true) e
     WHERE e.txid < (SELECT b.below FROM ocx._log_bounds(NULL, _read_log_archived.horizon) b)
       AND (e.txid, e.global_position) > (SELECT b.after_txid, b.after_position
                                            FROM ocx._log_bounds(CASE WHEN _read_log_archived.after_time IS NULL THEN _read_log_archived."after"
                                                                      ELSE ocx._read_start(_read_log_archived."after", _read_log_archived.after_time) END,
                                                                 _read_log_archived.horizon) b)
       AND (_read_log_archived.after_time IS NULL OR e.time >= _read_log_archived.after_time)
       AND ocx._log_selects(e.type, e.stream_id, _read_log_archived.types, _read_log_archived.categories)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log_archived.max_count);
END;
COMMENT ON FUNCTION ocx._read_log_archived(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader over the live log and the archive (what ocx._read_log with include_archived true plans)';

-- With a constant include_archived the planner calls the form it selects
-- instead (ocx._read_form_support, src/livereads.c); this body runs
-- otherwise (a generic plan's parameter): both forms, one selected by a
-- constant column, so the parameter becomes a one-time filter.
CREATE OR REPLACE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[], categories text[],
                              upcast boolean, horizon xid8, after_time timestamptz, include_archived boolean)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
    SUPPORT ocx._read_form_support
BEGIN ATOMIC
    SELECT s.global_position, s.stream_id, s.stream_version, s.event_id, s.source, s.type,
           s.schema_version, s.time, s.data, s.metadata, s.correlation_id, s.causation_id,
           s.tenant_id, s.txid, s.cursor
      FROM ((SELECT false AS archived, l.*
               FROM ocx._read_log_live(_read_log."after", _read_log.max_count, _read_log.types,
                                       _read_log.categories, _read_log.upcast, _read_log.horizon,
                                       _read_log.after_time) l)
            UNION ALL
            (SELECT true AS archived, a.*
               FROM ocx._read_log_archived(_read_log."after", _read_log.max_count, _read_log.types,
                                           _read_log.categories, _read_log.upcast, _read_log.horizon,
                                           _read_log.after_time) a)) s
     WHERE s.archived = COALESCE(_read_log.include_archived, false);
END;
COMMENT ON FUNCTION ocx._read_log(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz, boolean) IS
    'internal: the one reader of the log (include_archived: the archive too, ocx.archive): events after a cursor in gap-free log order, below the horizon (given, or ocx.log_horizon() once), selected by types and categories, upcast or as stored; after_time: only events whose time is >= it, started through the time map (ocx._read_start)';
