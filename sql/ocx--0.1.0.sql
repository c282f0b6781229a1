-- ocx 0.1.0 install script (frozen at release; the current version is built from sql/parts/).
-- Frozen at release: never edit this file; later changes go into an upgrade script.

\echo Use "CREATE EXTENSION ocx" to load this file. \quit

-- CREATE EXTENSION creates schema ocx (ocx.control: schema = ocx).
COMMENT ON SCHEMA ocx IS 'ocx event store: the log, definitions, state and API';
-- ---------------------------------------------------------------------------
-- The event log: tables, types, append and the immutability contract.
-- ---------------------------------------------------------------------------

CREATE SEQUENCE ocx.events_global_position_seq AS bigint;

CREATE TABLE ocx.events (
    global_position bigint NOT NULL DEFAULT pg_catalog.nextval('ocx.events_global_position_seq'),
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL,
    source          text NOT NULL,
    type            text NOT NULL,
    schema_version  integer NOT NULL DEFAULT 1,
    time            timestamptz NOT NULL,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    correlation_id  uuid,
    causation_id    uuid,
    tenant_id       text,
    txid            xid8 NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (global_position),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_source_event_id_key UNIQUE (source, event_id),
    CONSTRAINT events_stream_version_check CHECK (stream_version > 0),
    CONSTRAINT events_schema_version_check CHECK (schema_version > 0)
);
ALTER SEQUENCE ocx.events_global_position_seq OWNED BY ocx.events.global_position;

-- The log order (txid, global_position): see docs/architecture.md.
CREATE INDEX events_log_order_idx ON ocx.events (txid, global_position);

COMMENT ON TABLE ocx.events IS 'the append-only event log; write it only through ocx.append*';
COMMENT ON COLUMN ocx.events.global_position IS 'unique position from a sequence; not commit order';
COMMENT ON COLUMN ocx.events.txid IS 'the writer''s top-level transaction; log order is (txid, global_position)';

CREATE TABLE ocx.streams (
    stream_id   text PRIMARY KEY,
    version     bigint NOT NULL CHECK (version >= 0),
    category    text NOT NULL,
    tenant_id   text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    deleted     boolean NOT NULL DEFAULT false
);
CREATE INDEX streams_category_idx ON ocx.streams (category);

COMMENT ON TABLE ocx.streams IS 'one row per stream: its version; the row is the stream''s append lock';

SELECT pg_catalog.pg_extension_config_dump('ocx.events', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.events_global_position_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.streams', '');

-- A place in log order: a base type written "txid/global_position".
CREATE TYPE ocx.cursor;
CREATE FUNCTION ocx.cursor_in(cstring) RETURNS ocx.cursor
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_in';
CREATE FUNCTION ocx.cursor_out(ocx.cursor) RETURNS cstring
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_out';
CREATE FUNCTION ocx.cursor_recv(internal) RETURNS ocx.cursor
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_recv';
CREATE FUNCTION ocx.cursor_send(ocx.cursor) RETURNS bytea
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_send';
CREATE TYPE ocx.cursor (
    INPUT = ocx.cursor_in, OUTPUT = ocx.cursor_out,
    RECEIVE = ocx.cursor_recv, SEND = ocx.cursor_send,
    INTERNALLENGTH = 16, ALIGNMENT = double, STORAGE = plain
);
COMMENT ON TYPE ocx.cursor IS 'a place in log order: (writer txid, global_position), written txid/global_position';
COMMENT ON FUNCTION ocx.cursor_in(cstring) IS 'input function of ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_out(ocx.cursor) IS 'output function of ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_recv(internal) IS 'binary input function of ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_send(ocx.cursor) IS 'binary output function of ocx.cursor';

CREATE FUNCTION ocx.cursor(txid xid8, global_position bigint) RETURNS ocx.cursor
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_make';
COMMENT ON FUNCTION ocx.cursor(xid8, bigint) IS 'the cursor of (txid, global_position)';
CREATE FUNCTION ocx.txid(ocx.cursor) RETURNS xid8
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_txid';
COMMENT ON FUNCTION ocx.txid(ocx.cursor) IS 'the writer transaction of a cursor';
CREATE FUNCTION ocx.global_position(ocx.cursor) RETURNS bigint
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_position';
COMMENT ON FUNCTION ocx.global_position(ocx.cursor) IS 'the global position of a cursor';

CREATE FUNCTION ocx.cursor_cmp(ocx.cursor, ocx.cursor) RETURNS integer
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_cmp';
COMMENT ON FUNCTION ocx.cursor_cmp(ocx.cursor, ocx.cursor) IS 'btree support: log order of two cursors';
CREATE FUNCTION ocx.cursor_lt(ocx.cursor, ocx.cursor) RETURNS boolean
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_lt';
CREATE FUNCTION ocx.cursor_le(ocx.cursor, ocx.cursor) RETURNS boolean
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_le';
CREATE FUNCTION ocx.cursor_eq(ocx.cursor, ocx.cursor) RETURNS boolean
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_eq';
CREATE FUNCTION ocx.cursor_ne(ocx.cursor, ocx.cursor) RETURNS boolean
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_ne';
CREATE FUNCTION ocx.cursor_ge(ocx.cursor, ocx.cursor) RETURNS boolean
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_ge';
CREATE FUNCTION ocx.cursor_gt(ocx.cursor, ocx.cursor) RETURNS boolean
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ocx_cursor_gt';
COMMENT ON FUNCTION ocx.cursor_lt(ocx.cursor, ocx.cursor) IS 'implements < on ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_le(ocx.cursor, ocx.cursor) IS 'implements <= on ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_eq(ocx.cursor, ocx.cursor) IS 'implements = on ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_ne(ocx.cursor, ocx.cursor) IS 'implements <> on ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_ge(ocx.cursor, ocx.cursor) IS 'implements >= on ocx.cursor';
COMMENT ON FUNCTION ocx.cursor_gt(ocx.cursor, ocx.cursor) IS 'implements > on ocx.cursor';

CREATE OPERATOR ocx.< (LEFTARG = ocx.cursor, RIGHTARG = ocx.cursor, FUNCTION = ocx.cursor_lt,
    COMMUTATOR = OPERATOR(ocx.>), NEGATOR = OPERATOR(ocx.>=), RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR ocx.<= (LEFTARG = ocx.cursor, RIGHTARG = ocx.cursor, FUNCTION = ocx.cursor_le,
    COMMUTATOR = OPERATOR(ocx.>=), NEGATOR = OPERATOR(ocx.>), RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR ocx.= (LEFTARG = ocx.cursor, RIGHTARG = ocx.cursor, FUNCTION = ocx.cursor_eq,
    COMMUTATOR = OPERATOR(ocx.=), NEGATOR = OPERATOR(ocx.<>), RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR ocx.<> (LEFTARG = ocx.cursor, RIGHTARG = ocx.cursor, FUNCTION = ocx.cursor_ne,
    COMMUTATOR = OPERATOR(ocx.<>), NEGATOR = OPERATOR(ocx.=), RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR ocx.>= (LEFTARG = ocx.cursor, RIGHTARG = ocx.cursor, FUNCTION = ocx.cursor_ge,
    COMMUTATOR = OPERATOR(ocx.<=), NEGATOR = OPERATOR(ocx.<), RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR ocx.> (LEFTARG = ocx.cursor, RIGHTARG = ocx.cursor, FUNCTION = ocx.cursor_gt,
    COMMUTATOR = OPERATOR(ocx.<), NEGATOR = OPERATOR(ocx.<=), RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR CLASS ocx.cursor_ops DEFAULT FOR TYPE ocx.cursor USING btree AS
    OPERATOR 1 ocx.<, OPERATOR 2 ocx.<=, OPERATOR 3 ocx.=, OPERATOR 4 ocx.>=, OPERATOR 5 ocx.>,
    FUNCTION 1 ocx.cursor_cmp(ocx.cursor, ocx.cursor);

-- What every read returns and every handler receives.
CREATE TYPE ocx.event AS (
    global_position bigint,
    stream_id       text,
    stream_version  bigint,
    event_id        uuid,
    source          text,
    type            text,
    schema_version  integer,
    time            timestamptz,
    data            jsonb,
    metadata        jsonb,
    correlation_id  uuid,
    causation_id    uuid,
    tenant_id       text,
    txid            xid8,
    "cursor"        ocx.cursor
);
COMMENT ON TYPE ocx.event IS 'an event as reads return it (upcast to its type''s current schema version)';

CREATE FUNCTION ocx.category(stream_id text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.split_part($1, '-', 1);
COMMENT ON FUNCTION ocx.category(text) IS 'the category of a stream: the text before the first "-"';

CREATE FUNCTION ocx.append(stream_id text, expected_version bigint, events jsonb)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_append';
COMMENT ON FUNCTION ocx.append(text, bigint, jsonb) IS
    'append one event object or an array of them; expected_version NULL = any, 0 = new stream, N = exactly N; returns the new version';

CREATE FUNCTION ocx.append_event(stream_id text, expected_version bigint, type text, data jsonb,
                                 metadata jsonb DEFAULT '{}', event_id uuid DEFAULT NULL)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_append_event';
COMMENT ON FUNCTION ocx.append_event(text, bigint, text, jsonb, jsonb, uuid) IS
    'append a single event (the fast path); returns the new version';

CREATE FUNCTION ocx.append_cloudevents(stream_id text, expected_version bigint, ce jsonb)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_append_cloudevents';
COMMENT ON FUNCTION ocx.append_cloudevents(text, bigint, jsonb) IS
    'append structured-mode CloudEvents 1.0 JSON (one event or a batch array); returns the new version';

CREATE FUNCTION ocx.to_cloudevent(e ocx.event) RETURNS jsonb
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_to_cloudevent';
COMMENT ON FUNCTION ocx.to_cloudevent(ocx.event) IS 'the event as a structured-mode CloudEvents 1.0 JSON object';

CREATE FUNCTION ocx.stream_version(stream_id text) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN COALESCE((SELECT s.version FROM ocx.streams s
                     WHERE s.stream_id OPERATOR(pg_catalog.=) $1), 0);
COMMENT ON FUNCTION ocx.stream_version(text) IS 'the current version of a stream, 0 when it does not exist';

-- Immutability: nobody, the owner and superusers included, updates, deletes
-- or truncates the log.  ENABLE ALWAYS keeps the triggers firing under
-- session_replication_role = replica too.
CREATE FUNCTION ocx._refuse_modification() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_refuse_modification';
COMMENT ON FUNCTION ocx._refuse_modification() IS 'trigger: the event log is append-only';

CREATE TRIGGER events_immutable_row BEFORE UPDATE OR DELETE ON ocx.events
    FOR EACH ROW EXECUTE FUNCTION ocx._refuse_modification();
CREATE TRIGGER events_immutable_truncate BEFORE TRUNCATE ON ocx.events
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._refuse_modification();
ALTER TABLE ocx.events ENABLE ALWAYS TRIGGER events_immutable_row;
ALTER TABLE ocx.events ENABLE ALWAYS TRIGGER events_immutable_truncate;

REVOKE ALL ON ocx.events FROM PUBLIC;
REVOKE ALL ON ocx.streams FROM PUBLIC;
-- ---------------------------------------------------------------------------
-- Reading: streams, the whole log in gap-free log order, categories.
--
-- These are SQL functions with pre-parsed (BEGIN ATOMIC) bodies: the planner
-- inlines them into the caller's query, so a read costs what the indexed
-- SELECT costs, and names were resolved at CREATE EXTENSION time, so nothing
-- planted on the caller's search_path is ever called.
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

CREATE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT 1, max_count integer DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           e.schema_version, e.time, e.data, e.metadata, e.correlation_id, e.causation_id,
           e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.stream_id = ocx._stream_arg(read_stream.stream_id)
       AND e.stream_version >= ocx._version_arg(read_stream.from_version)
     ORDER BY e.stream_version
     LIMIT ocx._count_arg(read_stream.max_count);
END;
COMMENT ON FUNCTION ocx.read_stream(text, bigint, integer) IS
    'the events of one stream from from_version on, in stream order';

CREATE FUNCTION ocx.read_all("after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                             types text[] DEFAULT NULL, categories text[] DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           e.schema_version, e.time, e.data, e.metadata, e.correlation_id, e.causation_id,
           e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(read_all."after"), '0'::xid8),
                                          COALESCE(ocx.global_position(read_all."after"), 0))
       AND (read_all.types IS NULL OR e.type = ANY (read_all.types))
       AND (read_all.categories IS NULL OR ocx.category(e.stream_id) = ANY (read_all.categories))
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(read_all.max_count);
END;
COMMENT ON FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[]) IS
    'events after a cursor in gap-free log order (only transactions below the snapshot''s xmin); NULL max_count = no limit';

CREATE FUNCTION ocx.read_category(category text, "after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx.read_all(read_category."after", read_category.max_count, NULL,
                               ARRAY[ocx._stream_arg(read_category.category)]);
END;
COMMENT ON FUNCTION ocx.read_category(text, ocx.cursor, integer) IS
    'the events of one category (stream ids "category-...") in gap-free log order';
