-- ---------------------------------------------------------------------------
-- Reading: streams, the whole log in gap-free log order, categories.
--
-- These are SQL functions with pre-parsed (BEGIN ATOMIC) bodies: the planner
-- inlines them into the caller's query, so a read costs what the indexed
-- SELECT costs, and names were resolved at CREATE EXTENSION time, so nothing
-- planted on the caller's search_path is ever called.
--
-- Every row passes through ocx._upcast / ocx._upcast_version (C, over the
-- cached definitions of 30_aggregates.sql): events are stored as written and
-- read at their type's current schema version.  Both return their argument
-- untouched when the type needs no upcasting.  Filters apply before
-- upcasting: a read filtered to other types never upcasts (so never fails
-- on) an event it leaves out.  read_all and read_category take upcast =>
-- false to return events as stored, the way to read past an event whose
-- upcaster fails (OX121) until the upcaster is fixed.
-- ---------------------------------------------------------------------------

-- Argument checks that raise ocx errors (IMMUTABLE: folded at plan time when
-- the argument is a constant).
CREATE FUNCTION ocx._stream_arg(stream_id text) RETURNS text
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_stream_arg';
COMMENT ON FUNCTION ocx._stream_arg(text) IS 'internal: returns a valid stream id or raises OX003';

CREATE FUNCTION ocx._count_arg(max_count integer) RETURNS bigint
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_count_arg';
COMMENT ON FUNCTION ocx._count_arg(integer) IS 'internal: NULL (no limit) or a count >= 0, else raises OX010';

CREATE FUNCTION ocx._version_arg(from_version bigint) RETURNS bigint
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_version_arg';
COMMENT ON FUNCTION ocx._version_arg(bigint) IS 'internal: a version >= 1 (NULL means 1), else raises OX010';

-- Upcasting on read (C, cached definitions; returns its input untouched when
-- the type needs no upcasting, so reads stay as cheap as the SELECT).
CREATE FUNCTION ocx._upcast(type text, schema_version integer, data jsonb) RETURNS jsonb
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_upcast';
COMMENT ON FUNCTION ocx._upcast(text, integer, jsonb) IS 'internal: data upcast to its type''s current schema version';

CREATE FUNCTION ocx._upcast_version(type text, schema_version integer) RETURNS integer
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_upcast_version';
COMMENT ON FUNCTION ocx._upcast_version(text, integer) IS 'internal: the schema version ocx._upcast brings an event to';

-- ocx.read_stream is in 21_reads.sql (directions and a type filter).

-- Where read_all starts: the later of its cursor and, for after_time, the
-- time map's start (src/reads.c, tables in 21_reads.sql).
CREATE FUNCTION ocx._read_start("after" ocx.cursor, after_time timestamptz) RETURNS ocx.cursor
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_read_start';
COMMENT ON FUNCTION ocx._read_start(ocx.cursor, timestamptz) IS
    'internal: the later of after and a cursor before every event whose time is >= after_time (the time map); after when after_time is NULL';

CREATE FUNCTION ocx.read_all("after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                             types text[] DEFAULT NULL, categories text[] DEFAULT NULL,
                             upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN read_all.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN read_all.upcast IS FALSE THEN e.data
                ELSE ocx._upcast(e.type, e.schema_version, e.data) END, e.metadata, e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < ocx.log_horizon()
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(ocx._read_start(read_all."after", read_all.after_time)), '0'::xid8),
                                          COALESCE(ocx.global_position(ocx._read_start(read_all."after", read_all.after_time)), 0))
       AND (read_all.after_time IS NULL OR e.time >= read_all.after_time)
       AND (read_all.types IS NULL OR e.type = ANY (read_all.types))
       AND (read_all.categories IS NULL OR ocx.category(e.stream_id) = ANY (read_all.categories))
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(read_all.max_count);
END;
COMMENT ON FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[], boolean, timestamptz) IS
    'events after a cursor in gap-free log order (only transactions below the snapshot''s xmin); NULL max_count = no limit; upcast => false returns them as stored (schema_version and data as written), for events whose upcaster fails (OX121); after_time: only events whose time is >= it, found through the time map without scanning the log';

CREATE FUNCTION ocx.read_category(category text, "after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                                  upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx.read_all(read_category."after", read_category.max_count, NULL,
                               ARRAY[ocx._stream_arg(read_category.category)], read_category.upcast,
                               read_category.after_time);
END;
COMMENT ON FUNCTION ocx.read_category(text, ocx.cursor, integer, boolean, timestamptz) IS
    'the events of one category (stream ids "category-...") in gap-free log order; upcast => false returns them as stored; after_time: only events whose time is >= it';
