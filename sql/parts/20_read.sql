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

-- The first version a stream read returns: after the soft-deleted ones
-- (ocx.delete_stream, 86_removal.sql).  C (src/reads.c): one probe of
-- ocx.streams' primary key, run once per read from the read's index
-- condition.  Not a SQL function (one with a subquery is never inlined: the
-- SQL function executor parsed and planned it on every read) and not a
-- scalar subquery in the reads' bodies (an InitPlan, an executor node per
-- read): docs/performance.md, "Issue 13 reads and append_if".
CREATE FUNCTION ocx._hidden_through(stream_id text) RETURNS bigint
    LANGUAGE C STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_hidden_through';
COMMENT ON FUNCTION ocx._hidden_through(text) IS
    'internal: the last soft-deleted version of a stream (0 when none): stream reads return only the versions after it';

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

-- Personal data on read (src/privacy.c, docs/privacy.md): every reader
-- passes data through ocx._reveal before upcasting and metadata through
-- ocx._reveal_metadata.  Both return their argument untouched when no event
-- type has personal data, or this one has none.
CREATE FUNCTION ocx._reveal(type text, data jsonb, event_id uuid) RETURNS jsonb
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_reveal';
COMMENT ON FUNCTION ocx._reveal(text, jsonb, uuid) IS
    'internal: data with its encrypted personal fields in clear (members of ocx_personal_data) or null (others, or erased)';

CREATE FUNCTION ocx._reveal_metadata(type text, data jsonb, metadata jsonb) RETURNS jsonb
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_reveal_metadata';
COMMENT ON FUNCTION ocx._reveal_metadata(text, jsonb, jsonb) IS
    'internal: metadata with "erased": true when personal fields of the data were erased (ocx.forget_subject)';

-- ocx.read_stream is in 21_reads.sql (directions and a type filter).

-- Where read_all starts: the later of its cursor and, for after_time, the
-- time map's start (src/reads.c, tables in 21_reads.sql).
CREATE FUNCTION ocx._read_start("after" ocx.cursor, after_time timestamptz) RETURNS ocx.cursor
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_read_start';
COMMENT ON FUNCTION ocx._read_start(ocx.cursor, timestamptz) IS
    'internal: the later of after and a cursor before every event whose time is >= after_time (the time map); after when after_time is NULL';

-- read_all and read_category: sql/parts/22_reader.sql (over the one reader).
