-- ocx 0.2.0 install script: frozen at release (generated once from sql/parts/ as they were then).

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

-- Multi-tenancy: a session sees and writes only the rows of its tenant, the
-- setting ocx.tenant; with ocx.tenant empty or unset, only the rows without a
-- tenant (tenant_id IS NULL).  FORCE applies the policies to the tables'
-- owner too; superusers and BYPASSRLS roles are not subject to them.  The
-- sub-select makes the setting an InitPlan, read once per query.  The events
-- policy covers UPDATE and DELETE too, so that they meet the immutability
-- trigger (OX009) instead of silently matching no row.
ALTER TABLE ocx.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.events FORCE ROW LEVEL SECURITY;
ALTER TABLE ocx.streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.streams FORCE ROW LEVEL SECURITY;
CREATE POLICY events_tenant ON ocx.events FOR ALL
    USING (tenant_id IS NOT DISTINCT FROM
           (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
CREATE POLICY streams_tenant ON ocx.streams FOR ALL
    USING (tenant_id IS NOT DISTINCT FROM
           (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
COMMENT ON POLICY events_tenant ON ocx.events IS
    'a session reads and appends the events of its ocx.tenant (none set: untenanted events); UPDATE and DELETE reach the immutability trigger';
COMMENT ON POLICY streams_tenant ON ocx.streams IS 'a session sees and advances the streams of its ocx.tenant only';
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
-- untouched when the type needs no upcasting.
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

CREATE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT 1, max_count integer DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           ocx._upcast_version(e.type, e.schema_version), e.time,
           ocx._upcast(e.type, e.schema_version, e.data), e.metadata, e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
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
           ocx._upcast_version(e.type, e.schema_version), e.time,
           ocx._upcast(e.type, e.schema_version, e.data), e.metadata, e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
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
-- ---------------------------------------------------------------------------
-- Aggregates, snapshots, time travel; event types (contracts), upcasters and
-- modules.  See docs/aggregates.md and docs/contracts.md.
--
-- The definition tables are read by C code (src/defcache.c) into a
-- per-backend cache; a statement trigger on each of them sends a relcache
-- invalidation, so every backend drops its cache when a definition changes
-- (at the next command in this transaction, at commit in the others).
-- ---------------------------------------------------------------------------

CREATE TABLE ocx.event_types (
    type            text PRIMARY KEY,
    schema_version  integer NOT NULL CHECK (schema_version > 0),
    schema          jsonb,
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ocx.event_types IS 'event contracts: the current schema version (and JSON Schema) of each registered event type';

CREATE TABLE ocx.upcasters (
    type                text NOT NULL REFERENCES ocx.event_types ON DELETE CASCADE,
    from_schema_version integer NOT NULL CHECK (from_schema_version > 0),
    transform           regprocedure,
    spec                jsonb,
    defined_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (type, from_schema_version),
    CHECK ((transform IS NULL) OPERATOR(pg_catalog.<>) (spec IS NULL))
);
COMMENT ON TABLE ocx.upcasters IS 'upcasters: each turns data of from_schema_version into from_schema_version + 1 (a function or declarative steps)';

CREATE TABLE ocx.aggregates (
    aggregate_type      text PRIMARY KEY,
    apply               regprocedure,
    reducer             jsonb,
    initial_state       jsonb NOT NULL DEFAULT '{}',
    snapshot_every      integer CHECK (snapshot_every > 0),
    definition_version  bigint NOT NULL DEFAULT 1,
    defined_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((apply IS NULL) OPERATOR(pg_catalog.<>) (reducer IS NULL))
);
COMMENT ON TABLE ocx.aggregates IS 'aggregate types: an apply function or a declarative reducer, the initial state and the snapshot interval';
COMMENT ON COLUMN ocx.aggregates.definition_version IS 'bumped whenever the definition changes; snapshots of older definitions are never used';

CREATE TABLE ocx.snapshots (
    aggregate_type      text NOT NULL REFERENCES ocx.aggregates ON DELETE CASCADE,
    stream_id           text NOT NULL,
    version             bigint NOT NULL CHECK (version > 0),
    state               jsonb NOT NULL,
    definition_version  bigint NOT NULL,
    fingerprint         bigint NOT NULL,
    taken_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (aggregate_type, stream_id, version)
);
COMMENT ON TABLE ocx.snapshots IS 'aggregate state after version events of a stream, under one definition of the aggregate';
COMMENT ON COLUMN ocx.snapshots.fingerprint IS 'hash of the apply function''s body and of the upcasters when the snapshot was taken';

CREATE TABLE ocx.modules (
    name            text PRIMARY KEY,
    definition      jsonb NOT NULL,
    installed_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ocx.modules IS 'modules installed with ocx.define_module: a domain''s event types, upcasters and aggregates';

SELECT pg_catalog.pg_extension_config_dump('ocx.event_types', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.upcasters', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.aggregates', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.modules', '');

REVOKE ALL ON ocx.event_types, ocx.upcasters, ocx.aggregates, ocx.snapshots, ocx.modules FROM PUBLIC;

-- Definition changes reach every backend's cache through relcache invalidation.
CREATE FUNCTION ocx._definitions_changed() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_definitions_changed';
COMMENT ON FUNCTION ocx._definitions_changed() IS 'trigger: invalidates the per-backend definition caches';

CREATE TRIGGER event_types_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.event_types
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._definitions_changed();
CREATE TRIGGER upcasters_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.upcasters
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._definitions_changed();
CREATE TRIGGER aggregates_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.aggregates
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._definitions_changed();

-- Checks of declarative definitions, in C with json-c (raise OX101/OX111/OX120).
CREATE FUNCTION ocx._check_schema(schema jsonb) RETURNS void
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_schema';
COMMENT ON FUNCTION ocx._check_schema(jsonb) IS 'internal: raises OX111 unless schema is in the supported JSON Schema subset';

CREATE FUNCTION ocx._check_upcaster_spec(spec jsonb) RETURNS void
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_upcaster_spec';
COMMENT ON FUNCTION ocx._check_upcaster_spec(jsonb) IS 'internal: raises OX120 unless spec is a valid list of declarative upcaster steps';

CREATE FUNCTION ocx._check_reducer(reducer jsonb) RETURNS void
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_reducer';
COMMENT ON FUNCTION ocx._check_reducer(jsonb) IS 'internal: raises OX101 unless reducer is a valid set of reducer rules';

CREATE FUNCTION ocx._check_function(fn regprocedure, argtypes regtype[], rettype regtype,
                                    errcode text, what text) RETURNS void
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p pg_catalog.pg_proc;
BEGIN
    IF fn IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = errcode, MESSAGE = pg_catalog.format('%s must not be null', what);
    END IF;
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid OPERATOR(pg_catalog.=) fn;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = errcode, MESSAGE = pg_catalog.format('%s %s does not exist', what, fn);
    END IF;
    IF p.prokind OPERATOR(pg_catalog.<>) 'f' OR p.proretset
       OR p.prorettype OPERATOR(pg_catalog.<>) rettype
       OR p.proargtypes::pg_catalog.text OPERATOR(pg_catalog.<>)
          pg_catalog.array_to_string(argtypes::pg_catalog.oid[], ' ') THEN
        RAISE EXCEPTION USING ERRCODE = errcode,
            MESSAGE = pg_catalog.format('%s %s has the wrong signature', what, fn),
            DETAIL = pg_catalog.format('It must be a plain function (%s) returning %s.',
                                       pg_catalog.array_to_string(argtypes, ', '), rettype),
            HINT = 'Create a function with exactly that signature and name it with its argument types.';
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx._check_function(regprocedure, regtype[], regtype, text, text) IS
    'internal: raises errcode unless fn is a plain function with exactly these argument types and result type';

-- Event types ---------------------------------------------------------------

CREATE FUNCTION ocx.define_event_type(type text, schema_version integer, schema jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old ocx.event_types;
BEGIN
    IF type IS NULL OR type OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX111', MESSAGE = 'event type must not be empty';
    END IF;
    IF pg_catalog.octet_length(type) OPERATOR(pg_catalog.>) 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX111', MESSAGE = 'event type is too long',
            DETAIL = 'Event types are limited to 256 bytes, as in ocx.append.';
    END IF;
    IF schema_version IS NULL OR schema_version OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX111',
            MESSAGE = pg_catalog.format('schema version of event type "%s" must be a positive integer', type),
            DETAIL = pg_catalog.format('Got %s.', COALESCE(schema_version::text, 'NULL'));
    END IF;
    IF schema IS NOT NULL THEN
        PERFORM ocx._check_schema(schema);
    END IF;
    SELECT * INTO old FROM ocx.event_types t WHERE t.type OPERATOR(pg_catalog.=) define_event_type.type FOR UPDATE;
    IF FOUND THEN
        IF schema_version OPERATOR(pg_catalog.<) old.schema_version THEN
            RAISE EXCEPTION USING ERRCODE = 'OX111',
                MESSAGE = pg_catalog.format('event type "%s" is at schema version %s already', type, old.schema_version),
                DETAIL = pg_catalog.format('Schema versions only move forward; got %s.', schema_version),
                HINT = 'Define a new version with an upcaster from the previous one.';
        END IF;
        IF old.schema_version OPERATOR(pg_catalog.=) schema_version
           AND old.schema IS NOT DISTINCT FROM schema THEN
            RETURN;     -- unchanged: idempotent
        END IF;
        UPDATE ocx.event_types t
           SET schema_version = define_event_type.schema_version,
               schema = define_event_type.schema,
               defined_at = pg_catalog.now()
         WHERE t.type OPERATOR(pg_catalog.=) define_event_type.type;
    ELSE
        INSERT INTO ocx.event_types (type, schema_version, schema)
        VALUES (define_event_type.type, define_event_type.schema_version, define_event_type.schema);
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx.define_event_type(text, integer, jsonb) IS
    'register (or move forward) an event type''s current schema version and JSON Schema; appends of the type are validated against it';

-- Upcasters ------------------------------------------------------------------

CREATE FUNCTION ocx._define_upcaster(type text, from_schema_version integer,
                                     transform regprocedure, spec jsonb)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur integer;
BEGIN
    IF from_schema_version IS NULL OR from_schema_version OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = 'from_schema_version must be a positive integer',
            DETAIL = pg_catalog.format('Got %s.', COALESCE(from_schema_version::text, 'NULL'));
    END IF;
    SELECT t.schema_version INTO cur FROM ocx.event_types t
     WHERE t.type OPERATOR(pg_catalog.=) _define_upcaster.type FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = pg_catalog.format('event type "%s" is not defined', COALESCE(type, 'NULL')),
            HINT = 'Define the event type and its current schema version with ocx.define_event_type first.';
    END IF;
    IF from_schema_version OPERATOR(pg_catalog.>=) cur THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = pg_catalog.format('upcaster from version %s of "%s" goes beyond the current schema version %s',
                                        from_schema_version, type, cur),
            HINT = 'Move the event type forward with ocx.define_event_type first.';
    END IF;
    IF from_schema_version OPERATOR(pg_catalog.>) 1 AND NOT EXISTS (
        SELECT FROM ocx.upcasters u
         WHERE u.type OPERATOR(pg_catalog.=) _define_upcaster.type
           AND u.from_schema_version OPERATOR(pg_catalog.=) (_define_upcaster.from_schema_version OPERATOR(pg_catalog.-) 1)) THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = pg_catalog.format('gap in the upcaster chain of "%s"', type),
            DETAIL = pg_catalog.format('There is no upcaster from version %s to %s.',
                                       from_schema_version OPERATOR(pg_catalog.-) 1, from_schema_version),
            HINT = 'Define upcasters in order, starting at version 1.';
    END IF;
    IF transform IS NOT NULL THEN
        PERFORM ocx._check_function(transform, ARRAY['jsonb']::pg_catalog.regtype[], 'jsonb', 'OX120', 'upcaster function');
    ELSIF spec IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120', MESSAGE = 'upcaster needs a transform function or a spec';
    ELSE
        PERFORM ocx._check_upcaster_spec(spec);
    END IF;
    INSERT INTO ocx.upcasters AS u (type, from_schema_version, transform, spec)
    VALUES (type, from_schema_version, transform, spec)
    ON CONFLICT ON CONSTRAINT upcasters_pkey DO UPDATE
       SET transform = excluded.transform, spec = excluded.spec, defined_at = pg_catalog.now()
     WHERE u.transform IS DISTINCT FROM excluded.transform OR u.spec IS DISTINCT FROM excluded.spec;
END;
$$;
COMMENT ON FUNCTION ocx._define_upcaster(text, integer, regprocedure, jsonb) IS 'internal: both forms of ocx.define_upcaster';

CREATE FUNCTION ocx.define_upcaster(type text, from_schema_version integer, transform regprocedure)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT ocx._define_upcaster(define_upcaster.type, define_upcaster.from_schema_version,
                                define_upcaster.transform, NULL);
END;
COMMENT ON FUNCTION ocx.define_upcaster(text, integer, regprocedure) IS
    'upcast data of an event type from from_schema_version to the next with a jsonb -> jsonb function';

CREATE FUNCTION ocx.define_upcaster(type text, from_schema_version integer, spec jsonb)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT ocx._define_upcaster(define_upcaster.type, define_upcaster.from_schema_version,
                                NULL, define_upcaster.spec);
END;
COMMENT ON FUNCTION ocx.define_upcaster(text, integer, jsonb) IS
    'upcast data of an event type from from_schema_version to the next with declarative steps (rename, default, remove, move, cast)';

CREATE FUNCTION ocx.upcast(e ocx.event) RETURNS ocx.event
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
               ocx._upcast_version(e.type, e.schema_version), e.time,
               ocx._upcast(e.type, e.schema_version, e.data), e.metadata, e.correlation_id,
               e.causation_id, e.tenant_id, e.txid, e."cursor")::ocx.event;
COMMENT ON FUNCTION ocx.upcast(ocx.event) IS 'the event upcast to its type''s current schema version (reads do this already)';

-- Aggregates -----------------------------------------------------------------

CREATE FUNCTION ocx.define_aggregate(aggregate_type text, apply regprocedure DEFAULT NULL,
                                     initial_state jsonb DEFAULT '{}', snapshot_every integer DEFAULT NULL,
                                     reducer jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old ocx.aggregates;
BEGIN
    IF aggregate_type IS NULL OR aggregate_type OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101', MESSAGE = 'aggregate type must not be empty';
    END IF;
    IF pg_catalog.octet_length(aggregate_type) OPERATOR(pg_catalog.>) 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101', MESSAGE = 'aggregate type is too long',
            DETAIL = 'Aggregate types are limited to 256 bytes.';
    END IF;
    IF (apply IS NULL) OPERATOR(pg_catalog.=) (reducer IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101',
            MESSAGE = pg_catalog.format('aggregate "%s" needs exactly one of apply and reducer', aggregate_type),
            HINT = 'Pass an apply function (state jsonb, event ocx.event) -> jsonb, or reducer => ''{...}'' rules.';
    END IF;
    IF apply IS NOT NULL THEN
        PERFORM ocx._check_function(apply, ARRAY['jsonb', 'ocx.event']::pg_catalog.regtype[], 'jsonb',
                                    'OX101', 'apply function');
    ELSE
        PERFORM ocx._check_reducer(reducer);
    END IF;
    IF initial_state IS NULL OR pg_catalog.jsonb_typeof(initial_state) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101',
            MESSAGE = pg_catalog.format('initial state of aggregate "%s" must be a JSON object', aggregate_type);
    END IF;
    IF snapshot_every IS NOT NULL AND snapshot_every OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101',
            MESSAGE = pg_catalog.format('snapshot_every of aggregate "%s" must be positive', aggregate_type),
            DETAIL = pg_catalog.format('Got %s.', snapshot_every),
            HINT = 'Use NULL for no automatic snapshots.';
    END IF;
    SELECT * INTO old FROM ocx.aggregates a
     WHERE a.aggregate_type OPERATOR(pg_catalog.=) define_aggregate.aggregate_type FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ocx.aggregates (aggregate_type, apply, reducer, initial_state, snapshot_every)
        VALUES (aggregate_type, apply, reducer, initial_state, snapshot_every);
    ELSIF old.apply IS NOT DISTINCT FROM apply AND old.reducer IS NOT DISTINCT FROM reducer
          AND old.initial_state OPERATOR(pg_catalog.=) initial_state THEN
        -- the fold is unchanged: snapshots stay valid
        IF old.snapshot_every IS DISTINCT FROM snapshot_every THEN
            UPDATE ocx.aggregates a SET snapshot_every = define_aggregate.snapshot_every
             WHERE a.aggregate_type OPERATOR(pg_catalog.=) define_aggregate.aggregate_type;
        END IF;
    ELSE
        -- a changed fold: no stale state may ever be read again
        UPDATE ocx.aggregates a
           SET apply = define_aggregate.apply, reducer = define_aggregate.reducer,
               initial_state = define_aggregate.initial_state,
               snapshot_every = define_aggregate.snapshot_every,
               definition_version = a.definition_version OPERATOR(pg_catalog.+) 1,
               defined_at = pg_catalog.now()
         WHERE a.aggregate_type OPERATOR(pg_catalog.=) define_aggregate.aggregate_type;
        DELETE FROM ocx.snapshots s
         WHERE s.aggregate_type OPERATOR(pg_catalog.=) define_aggregate.aggregate_type;
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx.define_aggregate(text, regprocedure, jsonb, integer, jsonb) IS
    'define (or redefine) an aggregate type: apply(state jsonb, event ocx.event) -> jsonb or declarative reducer rules; redefinition drops its snapshots';

CREATE FUNCTION ocx.load(aggregate_type text, stream_id text, as_of_version bigint DEFAULT NULL,
                         as_of_time timestamptz DEFAULT NULL,
                         OUT state jsonb, OUT version bigint)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_load';
COMMENT ON FUNCTION ocx.load(text, text, bigint, timestamptz) IS
    'the aggregate''s state after replaying the stream (from the newest usable snapshot), optionally as of a version or a time';

CREATE FUNCTION ocx.snapshot(aggregate_type text, stream_id text) RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_snapshot';
COMMENT ON FUNCTION ocx.snapshot(text, text) IS 'store a snapshot of the aggregate''s current state; returns its version';

-- Modules ----------------------------------------------------------------------

CREATE FUNCTION ocx.define_module(name text, definition jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    x jsonb;
BEGIN
    IF name IS NULL OR name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX130', MESSAGE = 'module name must not be empty';
    END IF;
    IF definition IS NULL OR pg_catalog.jsonb_typeof(definition) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX130',
            MESSAGE = pg_catalog.format('definition of module "%s" must be a JSON object', name);
    END IF;
    FOR k IN SELECT pg_catalog.jsonb_object_keys(definition) LOOP
        IF k OPERATOR(pg_catalog.<>) ALL (ARRAY['event_types', 'upcasters', 'aggregates', 'description']) THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('unknown key "%s" in module "%s"', k, name),
                HINT = 'A module has the keys event_types, upcasters, aggregates and description.';
        END IF;
        IF k OPERATOR(pg_catalog.<>) 'description'
           AND pg_catalog.jsonb_typeof(definition OPERATOR(pg_catalog.->) k) OPERATOR(pg_catalog.<>) 'array' THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('"%s" of module "%s" must be an array', k, name);
        END IF;
    END LOOP;

    FOR x IN SELECT pg_catalog.jsonb_array_elements(COALESCE(definition OPERATOR(pg_catalog.->) 'event_types', '[]')) LOOP
        IF pg_catalog.jsonb_typeof(x) OPERATOR(pg_catalog.<>) 'object'
           OR NOT x OPERATOR(pg_catalog.?&) ARRAY['type', 'schema_version'] THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('event type entry of module "%s" needs "type" and "schema_version"', name),
                DETAIL = pg_catalog.format('Got %s.', x);
        END IF;
        PERFORM ocx.define_event_type(x OPERATOR(pg_catalog.->>) 'type',
                                      (x OPERATOR(pg_catalog.->>) 'schema_version')::integer,
                                      NULLIF(x OPERATOR(pg_catalog.->) 'schema', 'null'));
    END LOOP;

    FOR x IN SELECT u FROM pg_catalog.jsonb_array_elements(COALESCE(definition OPERATOR(pg_catalog.->) 'upcasters', '[]')) u
             ORDER BY u OPERATOR(pg_catalog.->>) 'type', (u OPERATOR(pg_catalog.->>) 'from_schema_version')::integer LOOP
        IF pg_catalog.jsonb_typeof(x) OPERATOR(pg_catalog.<>) 'object'
           OR NOT x OPERATOR(pg_catalog.?&) ARRAY['type', 'from_schema_version']
           OR (x OPERATOR(pg_catalog.?) 'transform') OPERATOR(pg_catalog.=) (x OPERATOR(pg_catalog.?) 'spec') THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('upcaster entry of module "%s" needs "type", "from_schema_version" and one of "transform" and "spec"', name),
                DETAIL = pg_catalog.format('Got %s.', x);
        END IF;
        PERFORM ocx._define_upcaster(x OPERATOR(pg_catalog.->>) 'type',
                                     (x OPERATOR(pg_catalog.->>) 'from_schema_version')::integer,
                                     (x OPERATOR(pg_catalog.->>) 'transform')::pg_catalog.regprocedure,
                                     NULLIF(x OPERATOR(pg_catalog.->) 'spec', 'null'));
    END LOOP;

    FOR x IN SELECT pg_catalog.jsonb_array_elements(COALESCE(definition OPERATOR(pg_catalog.->) 'aggregates', '[]')) LOOP
        IF pg_catalog.jsonb_typeof(x) OPERATOR(pg_catalog.<>) 'object'
           OR NOT x OPERATOR(pg_catalog.?) 'aggregate_type' THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('aggregate entry of module "%s" needs "aggregate_type"', name),
                DETAIL = pg_catalog.format('Got %s.', x);
        END IF;
        PERFORM ocx.define_aggregate(x OPERATOR(pg_catalog.->>) 'aggregate_type',
                                     (x OPERATOR(pg_catalog.->>) 'apply')::pg_catalog.regprocedure,
                                     COALESCE(NULLIF(x OPERATOR(pg_catalog.->) 'initial_state', 'null'), '{}'),
                                     (x OPERATOR(pg_catalog.->>) 'snapshot_every')::integer,
                                     NULLIF(x OPERATOR(pg_catalog.->) 'reducer', 'null'));
    END LOOP;

    INSERT INTO ocx.modules AS m (name, definition) VALUES (name, definition)
    ON CONFLICT ON CONSTRAINT modules_pkey DO UPDATE
       SET definition = excluded.definition, installed_at = pg_catalog.now()
     WHERE m.definition OPERATOR(pg_catalog.<>) excluded.definition;
EXCEPTION
    WHEN invalid_text_representation OR numeric_value_out_of_range OR undefined_function
         OR invalid_parameter_value OR syntax_error OR invalid_name THEN
        RAISE EXCEPTION USING ERRCODE = 'OX130',
            MESSAGE = pg_catalog.format('invalid module "%s"', name),
            DETAIL = SQLERRM;
END;
$$;
COMMENT ON FUNCTION ocx.define_module(text, jsonb) IS
    'install a domain''s event types, upcasters and aggregates in one call; installing the same definition again changes nothing';

CREATE FUNCTION ocx.last_load(OUT aggregate_type text, OUT stream_id text, OUT version bigint,
                              OUT snapshot_version bigint, OUT replayed bigint, OUT snapshot_saved boolean)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_last_load';
COMMENT ON FUNCTION ocx.last_load() IS
    'what this session''s last ocx.load or ocx.snapshot did: the version loaded, the snapshot it started from (0: none), events replayed, whether it stored a snapshot';
-- ---------------------------------------------------------------------------
-- Projections: read models kept by handlers, run by the background worker
-- (async) or in the appending transaction (inline).  See docs/projections.md.
-- ---------------------------------------------------------------------------

CREATE FUNCTION ocx._wake_worker() RETURNS boolean
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_wake_worker';
COMMENT ON FUNCTION ocx._wake_worker() IS
    'internal: wake this database''s ocx worker when the transaction commits; false when workers are not loaded';

CREATE FUNCTION ocx._require_workers(what text) RETURNS void
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_require_workers';
COMMENT ON FUNCTION ocx._require_workers(text) IS
    'internal: raises OX210 unless ocx is in shared_preload_libraries';

CREATE FUNCTION ocx.worker_status(
    OUT datid oid, OUT datname text, OUT state text, OUT pid integer,
    OUT launcher_pid integer, OUT worker_restarts bigint)
    RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_worker_status';
COMMENT ON FUNCTION ocx.worker_status() IS
    'the ocx database workers the launcher tracks (cluster-wide); raises OX210 without shared_preload_libraries';

-- Definitions and per-projection state.  handler and reset are stored as
-- schema-qualified signatures (text, not regprocedure, so pg_upgrade and
-- pg_dump keep them) and resolved when the projection runs.
CREATE TABLE ocx.projections (
    name                text PRIMARY KEY,
    handler             text NOT NULL,
    types               text[],
    categories          text[],
    mode                text NOT NULL DEFAULT 'async' CHECK (mode IN ('async', 'inline')),
    retry               jsonb NOT NULL,
    reset               text,
    owner               name NOT NULL DEFAULT CURRENT_USER,
    state               text NOT NULL DEFAULT 'running'
                        CHECK (state IN ('running', 'paused', 'stopped', 'rebuilding')),
    checkpoint_txid     xid8 NOT NULL DEFAULT '0',
    checkpoint_position bigint NOT NULL DEFAULT 0,
    checkpoint_time     timestamptz,
    events_applied      bigint NOT NULL DEFAULT 0,
    failing_position    bigint,
    failing_attempts    integer NOT NULL DEFAULT 0,
    retry_at            timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    rebuild_started_at  timestamptz,
    rebuild_finished_at timestamptz,
    rebuild_total       bigint,
    rebuild_done        bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at          timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ocx.projections IS
    'projection definitions and their state: checkpoint (txid, position), retries, rebuild progress';

CREATE TABLE ocx.dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL DEFAULT 'projection',
    projection      text REFERENCES ocx.projections (name) ON DELETE CASCADE,
    global_position bigint,
    txid            xid8,
    stream_id       text,
    stream_version  bigint,
    event_id        uuid,
    type            text,
    attempts        integer NOT NULL,
    error           text NOT NULL,
    sqlstate        text,
    state           text NOT NULL DEFAULT 'parked' CHECK (state IN ('parked', 'resolved')),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    resolved_at     timestamptz
);
CREATE INDEX dead_letters_projection_idx ON ocx.dead_letters (projection, state);
COMMENT ON TABLE ocx.dead_letters IS
    'events a handler failed on after every retry, with the error; ocx.retry_dead_letter(id) runs them again';

SELECT pg_catalog.pg_extension_config_dump('ocx.projections', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('ocx.dead_letters', 'id')::pg_catalog.regclass, '');
REVOKE ALL ON ocx.projections FROM PUBLIC;
REVOKE ALL ON ocx.dead_letters FROM PUBLIC;

-- Backends cache the running inline projections; a change to what they
-- cache invalidates the cache everywhere (the worker's checkpoint updates
-- touch none of these columns, so they do not).
CREATE FUNCTION ocx._projections_changed() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_projections_changed';
COMMENT ON FUNCTION ocx._projections_changed() IS
    'trigger: invalidate the backends'' inline projection caches';
CREATE TRIGGER projections_changed
    AFTER INSERT OR DELETE OR UPDATE OF handler, types, categories, mode, state, owner
    ON ocx.projections FOR EACH STATEMENT EXECUTE FUNCTION ocx._projections_changed();

-- Argument checks shared by the definition functions.
CREATE FUNCTION ocx._projection_retry(retry jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb := '{"attempts": 3, "base_delay_ms": 100, "max_delay_ms": 10000, "on_exhausted": "dead_letter"}';
    k text;
BEGIN
    IF retry IS NULL THEN
        RETURN r;
    END IF;
    IF jsonb_typeof(retry) <> 'object' THEN
        RAISE EXCEPTION 'retry policy must be a JSON object' USING ERRCODE = 'OX201',
            DETAIL = format('Got %s.', jsonb_typeof(retry)),
            HINT = 'Pass for example {"attempts": 5, "base_delay_ms": 200, "max_delay_ms": 60000, "on_exhausted": "dead_letter"}.';
    END IF;
    FOR k IN SELECT jsonb_object_keys(retry) LOOP
        IF k NOT IN ('attempts', 'base_delay_ms', 'max_delay_ms', 'on_exhausted') THEN
            RAISE EXCEPTION 'unknown retry policy key "%"', k USING ERRCODE = 'OX201',
                DETAIL = 'The keys are attempts, base_delay_ms, max_delay_ms and on_exhausted.';
        END IF;
    END LOOP;
    FOREACH k IN ARRAY ARRAY['attempts', 'base_delay_ms', 'max_delay_ms'] LOOP
        IF retry ? k AND (jsonb_typeof(retry -> k) <> 'number'
                          OR (retry ->> k)::numeric <> trunc((retry ->> k)::numeric)
                          OR (retry ->> k)::numeric < CASE k WHEN 'attempts' THEN 1 ELSE 0 END
                          OR (retry ->> k)::numeric > 86400000) THEN
            RAISE EXCEPTION 'retry policy "%" must be a whole number %', k,
                CASE k WHEN 'attempts' THEN 'from 1' ELSE 'from 0' END || ' to 86400000'
                USING ERRCODE = 'OX201', DETAIL = format('Got %s.', retry -> k);
        END IF;
    END LOOP;
    IF retry ? 'on_exhausted' AND (retry -> 'on_exhausted') NOT IN ('"dead_letter"', '"stop"') THEN
        RAISE EXCEPTION 'retry policy "on_exhausted" must be "dead_letter" or "stop"' USING ERRCODE = 'OX201',
            DETAIL = format('Got %s.', retry -> 'on_exhausted');
    END IF;
    r := r || retry;
    IF (r ->> 'max_delay_ms')::bigint < (r ->> 'base_delay_ms')::bigint THEN
        RAISE EXCEPTION 'retry policy max_delay_ms is below base_delay_ms' USING ERRCODE = 'OX201',
            DETAIL = format('Got base_delay_ms %s and max_delay_ms %s.', r -> 'base_delay_ms', r -> 'max_delay_ms');
    END IF;
    RETURN r;
END;
$$;
COMMENT ON FUNCTION ocx._projection_retry(jsonb) IS 'internal: a checked retry policy with defaults filled in';

CREATE FUNCTION ocx._projection_row(name text, lock boolean DEFAULT true) RETURNS ocx.projections
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections;
BEGIN
    IF lock THEN
        SELECT * INTO p FROM ocx.projections WHERE projections.name = _projection_row.name FOR UPDATE;
    ELSE
        SELECT * INTO p FROM ocx.projections WHERE projections.name = _projection_row.name;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" does not exist', name USING ERRCODE = 'OX200',
            HINT = 'See ocx.projection_status for the defined projections.';
    END IF;
    RETURN p;
END;
$$;
COMMENT ON FUNCTION ocx._projection_row(text, boolean) IS 'internal: the projection''s row (locked), or raises OX200';

CREATE FUNCTION ocx._count_matching(types text[], categories text[]) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT pg_catalog.count(*) FROM ocx.events e
     WHERE (_count_matching.types IS NULL OR e.type = ANY (_count_matching.types))
       AND (_count_matching.categories IS NULL OR ocx.category(e.stream_id) = ANY (_count_matching.categories));
END;
COMMENT ON FUNCTION ocx._count_matching(text[], text[]) IS 'internal: how many events a projection filter selects';

CREATE FUNCTION ocx.define_projection(name text, handler regprocedure, types text[] DEFAULT NULL,
                                      categories text[] DEFAULT NULL, mode text DEFAULT 'async',
                                      retry jsonb DEFAULT NULL, reset regprocedure DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    policy jsonb;
    h pg_proc;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_.:-]*$' OR length(name) > 63 THEN
        RAISE EXCEPTION 'invalid projection name %', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'OX201',
            DETAIL = 'A projection name is 1 to 63 letters, digits, "_", ".", ":" or "-", starting with a letter or "_".';
    END IF;
    IF mode IS NULL OR mode NOT IN ('async', 'inline') THEN
        RAISE EXCEPTION 'invalid projection mode %', coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'OX201', DETAIL = 'The mode is "async" (the worker) or "inline" (the appending transaction).';
    END IF;
    IF handler IS NULL THEN
        RAISE EXCEPTION 'projection handler must not be null' USING ERRCODE = 'OX201',
            HINT = 'Pass a function handler(e ocx.event) returning void.';
    END IF;
    SELECT * INTO h FROM pg_proc WHERE oid = handler;
    IF h.pronargs <> 1 OR h.proargtypes[0] <> 'ocx.event'::regtype OR h.prokind <> 'f' THEN
        RAISE EXCEPTION 'projection handler % must take one ocx.event argument', handler
            USING ERRCODE = 'OX201', HINT = 'Declare it as handler(e ocx.event) RETURNS void.';
    END IF;
    IF NOT has_function_privilege(handler, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for projection handler %', handler USING ERRCODE = '42501';
    END IF;
    IF reset IS NOT NULL AND (SELECT pronargs FROM pg_proc WHERE oid = reset) <> 0 THEN
        RAISE EXCEPTION 'projection reset function % must take no arguments', reset
            USING ERRCODE = 'OX201', HINT = 'Declare it as reset() RETURNS void; it empties the read model.';
    END IF;
    IF cardinality(types) = 0 OR cardinality(categories) = 0 OR array_position(types, NULL) IS NOT NULL
       OR array_position(categories, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'projection filters must not be empty or contain nulls' USING ERRCODE = 'OX201',
            HINT = 'Pass NULL to select every type or category.';
    END IF;
    policy := ocx._projection_retry(retry);
    PERFORM ocx._require_workers('ocx.define_projection()');

    -- an inline projection first catches up in the worker (state rebuilding)
    -- and is applied by appends from the moment it has
    INSERT INTO ocx.projections AS p (name, handler, types, categories, mode, retry, reset, state,
                                      rebuild_started_at, rebuild_total)
    VALUES (name, handler::text, types, categories, mode, policy, reset::text,
            CASE mode WHEN 'inline' THEN 'rebuilding' ELSE 'running' END,
            CASE mode WHEN 'inline' THEN now() END,
            CASE mode WHEN 'inline' THEN ocx._count_matching(types, categories) END)
    ON CONFLICT ON CONSTRAINT projections_pkey DO UPDATE
       SET handler = excluded.handler, types = excluded.types, categories = excluded.categories,
           retry = excluded.retry, reset = excluded.reset, owner = excluded.owner,
           updated_at = now();
    IF (SELECT p.mode FROM ocx.projections p WHERE p.name = define_projection.name) <> mode THEN
        RAISE EXCEPTION 'projection "%" already exists with another mode', name USING ERRCODE = 'OX201',
            HINT = 'Drop it first, or keep its mode.';
    END IF;
    PERFORM ocx._wake_worker();
END;
$$;
COMMENT ON FUNCTION ocx.define_projection(text, regprocedure, text[], text[], text, jsonb, regprocedure) IS
    'define (or redefine, keeping its checkpoint) a projection: handler(e ocx.event) per matching event, async in the worker or inline in the append';

CREATE FUNCTION ocx.drop_projection(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._projection_row(name);
    DELETE FROM ocx.projections p WHERE p.name = drop_projection.name;
END;
$$;
COMMENT ON FUNCTION ocx.drop_projection(text) IS
    'remove a projection, its checkpoint and its dead letters (the read model tables are yours to drop)';

CREATE FUNCTION ocx.pause_projection(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections := ocx._projection_row(name);
BEGIN
    IF p.mode = 'inline' THEN
        RAISE EXCEPTION 'inline projection "%" cannot be paused', name USING ERRCODE = 'OX201',
            DETAIL = 'An inline projection runs in every append; events appended while paused would be missed.',
            HINT = 'Drop it, or define it as async.';
    END IF;
    UPDATE ocx.projections SET state = 'paused', updated_at = now()
     WHERE projections.name = pause_projection.name AND state <> 'paused';
END;
$$;
COMMENT ON FUNCTION ocx.pause_projection(text) IS 'stop applying events to an async projection until resumed';

CREATE FUNCTION ocx.resume_projection(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections := ocx._projection_row(name);
BEGIN
    IF p.state IN ('paused', 'stopped') THEN
        UPDATE ocx.projections
           SET state = CASE WHEN rebuild_started_at IS NOT NULL AND rebuild_finished_at IS NULL
                            THEN 'rebuilding' ELSE 'running' END,
               failing_attempts = 0, failing_position = NULL, retry_at = NULL, updated_at = now()
         WHERE projections.name = resume_projection.name;
        PERFORM ocx._wake_worker();
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx.resume_projection(text) IS
    'resume a paused projection, or one stopped by its retry policy (the failed event is tried again)';

-- No SET search_path: the reset function runs with the caller's.
CREATE FUNCTION ocx.rebuild_projection(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    p ocx.projections := ocx._projection_row(name);
BEGIN
    PERFORM ocx._require_workers('ocx.rebuild_projection()');
    -- An inline projection: no append may be in flight while its read model
    -- is reset (one that still saw it running would survive the reset and be
    -- replayed again); appends after our commit see it rebuilding.
    IF p.mode OPERATOR(pg_catalog.=) 'inline' THEN
        LOCK TABLE ocx.streams IN SHARE MODE;
    END IF;
    IF p.reset IS NOT NULL THEN
        EXECUTE pg_catalog.format('SELECT %s()', p.reset::pg_catalog.regprocedure::pg_catalog.regproc);
    END IF;
    DELETE FROM ocx.dead_letters d
     WHERE d.projection OPERATOR(pg_catalog.=) p.name AND d.state OPERATOR(pg_catalog.=) 'parked';
    UPDATE ocx.projections
       SET state = 'rebuilding', checkpoint_txid = '0', checkpoint_position = 0, checkpoint_time = NULL,
           events_applied = 0, failing_position = NULL, failing_attempts = 0, retry_at = NULL,
           rebuild_started_at = pg_catalog.now(), rebuild_finished_at = NULL,
           rebuild_total = ocx._count_matching(p.types, p.categories), rebuild_done = 0,
           updated_at = pg_catalog.now()
     WHERE projections.name OPERATOR(pg_catalog.=) p.name;
    PERFORM ocx._wake_worker();
END;
$$;
COMMENT ON FUNCTION ocx.rebuild_projection(text) IS
    'call the projection''s reset function and replay the whole log into it in the worker; progress in ocx.projection_status';

-- No SET search_path here: the handler runs with the caller's, as it would
-- in the worker with the database default; every name below is qualified.
CREATE FUNCTION ocx.retry_dead_letter(id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    d ocx.dead_letters;
    p ocx.projections;
    e ocx.event;
BEGIN
    SELECT * INTO d FROM ocx.dead_letters dl
     WHERE dl.id OPERATOR(pg_catalog.=) retry_dead_letter.id FOR UPDATE;
    IF NOT FOUND OR d.state OPERATOR(pg_catalog.<>) 'parked'
       OR d.kind OPERATOR(pg_catalog.<>) 'projection' THEN
        RAISE EXCEPTION 'no parked projection dead letter with id %', coalesce(id::pg_catalog.text, 'NULL')
            USING ERRCODE = 'OX220',
            HINT = 'SELECT id FROM ocx.dead_letters WHERE state = ''parked'' lists the ones you can retry.';
    END IF;
    p := ocx._projection_row(d.projection);
    -- the event is the first in log order after (txid, position - 1)
    SELECT * INTO e FROM ocx.read_all(ocx.cursor(d.txid, d.global_position OPERATOR(pg_catalog.-) 1), 1) r;
    IF e.global_position IS NULL OR e.global_position OPERATOR(pg_catalog.<>) d.global_position THEN
        RAISE EXCEPTION 'the event of dead letter % is not readable', id USING ERRCODE = 'OX220';
    END IF;
    EXECUTE pg_catalog.format('SELECT %s($1)', p.handler::pg_catalog.regprocedure::pg_catalog.regproc) USING e;
    UPDATE ocx.dead_letters dl SET state = 'resolved', resolved_at = pg_catalog.now()
     WHERE dl.id OPERATOR(pg_catalog.=) d.id;
END;
$$;
COMMENT ON FUNCTION ocx.retry_dead_letter(bigint) IS
    'run a dead-lettered event through its projection''s handler again, now, in this transaction; marks it resolved on success';

CREATE VIEW ocx.projection_status AS
SELECT p.name, p.mode, p.state,
       ocx.cursor(p.checkpoint_txid, p.checkpoint_position) AS "checkpoint",
       p.events_applied,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN lag.events ELSE 0 END AS lag_events,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN COALESCE(EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) lag.oldest)::float8, 0)
            ELSE 0 END AS lag_seconds,
       p.last_error, p.last_error_at, p.failing_attempts, p.retry_at,
       (SELECT pg_catalog.count(*) FROM ocx.dead_letters d
         WHERE d.projection OPERATOR(pg_catalog.=) p.name
           AND d.state OPERATOR(pg_catalog.=) 'parked') AS dead_letters,
       p.rebuild_done, p.rebuild_total,
       rb.rate AS rebuild_rate,
       CASE WHEN p.state OPERATOR(pg_catalog.=) 'rebuilding' AND rb.rate OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.make_interval(secs => GREATEST(p.rebuild_total OPERATOR(pg_catalog.-) p.rebuild_done, 0)
                                                  OPERATOR(pg_catalog./) rb.rate)
       END AS rebuild_eta,
       p.handler, p.types, p.categories, p.retry, p.owner
  FROM ocx.projections p
  LEFT JOIN LATERAL (
       SELECT pg_catalog.count(*) AS events, pg_catalog.min(e.time) AS oldest
         FROM ocx.events e
        WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) (p.checkpoint_txid, p.checkpoint_position)
          AND (p.types IS NULL OR e.type OPERATOR(pg_catalog.=) ANY (p.types))
          AND (p.categories IS NULL OR ocx.category(e.stream_id) OPERATOR(pg_catalog.=) ANY (p.categories))
       ) lag ON true
  LEFT JOIN LATERAL (
       SELECT p.rebuild_done::float8 OPERATOR(pg_catalog./)
              NULLIF(EXTRACT(epoch FROM COALESCE(p.rebuild_finished_at, pg_catalog.now())
                                        OPERATOR(pg_catalog.-) p.rebuild_started_at)::float8, 0) AS rate
       ) rb ON true;
COMMENT ON VIEW ocx.projection_status IS
    'every projection: state, checkpoint, lag in events and seconds, last error, dead letters, rebuild progress (done/total, events/s, ETA)';
REVOKE ALL ON ocx.projection_status FROM PUBLIC;

-- A database with ocx gets its worker as soon as the extension is created.
SELECT ocx._wake_worker();
-- ---------------------------------------------------------------------------
-- The message bus: wake-ups on LISTEN/NOTIFY, ephemeral messages, durable
-- subscriptions with consumer groups, and the command queue.  See docs/bus.md.
--
-- NOTIFY is a wake-up hint, never the data: the worker sends it (batched)
-- after events become readable in gap-free log order, so an append never
-- takes the cluster-wide notify lock and never fails because a listener is
-- stuck.  Durable state lives in the tables below.
-- ---------------------------------------------------------------------------

-- What the worker has already announced (one row).
CREATE TABLE ocx.bus_state (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    events_txid         xid8 NOT NULL DEFAULT '0',
    events_position     bigint NOT NULL DEFAULT 0,
    commands_txid       xid8 NOT NULL DEFAULT '0',
    commands_seq        bigint NOT NULL DEFAULT 0,
    notified_at         timestamptz
);
INSERT INTO ocx.bus_state DEFAULT VALUES;
COMMENT ON TABLE ocx.bus_state IS
    'the bus worker''s progress: the last event and command cursors it sent NOTIFY wake-ups for';
REVOKE ALL ON ocx.bus_state FROM PUBLIC;

-- Ephemeral messages.
CREATE FUNCTION ocx.publish(channel text, payload jsonb) RETURNS void
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_publish';
COMMENT ON FUNCTION ocx.publish(text, jsonb) IS
    'NOTIFY channel with a JSON payload at commit; payloads over 7900 bytes raise OX310, names starting with ocx_ are reserved (OX311)';

-- Immediate wake-ups (ocx.notify_mode = immediate): the appending
-- transaction itself sends the NOTIFY.  The WHEN clause keeps the trigger
-- from being queued at all in the default mode.
CREATE FUNCTION ocx._notify_immediate() RETURNS trigger
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_notify_immediate';
COMMENT ON FUNCTION ocx._notify_immediate() IS
    'internal trigger: NOTIFY from the appending transaction when ocx.notify_mode = immediate';
CREATE TRIGGER events_notify_immediate AFTER INSERT ON ocx.events
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('ocx.notify_mode', true) = 'immediate')
    EXECUTE FUNCTION ocx._notify_immediate();

-- The worker's tasks, callable for tests and for deployments without the worker.
CREATE FUNCTION ocx._bus_tick() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_bus_tick';
COMMENT ON FUNCTION ocx._bus_tick() IS
    'internal: one round of the worker''s bus task (NOTIFY wake-ups); true when more is pending';
REVOKE ALL ON FUNCTION ocx._bus_tick() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Durable subscriptions.
--
-- The PL/pgSQL functions below pin search_path to pg_catalog, pg_temp, so
-- their plain operators resolve to pg_catalog's; tables are schema-qualified.
-- ---------------------------------------------------------------------------

CREATE TABLE ocx.subscriptions (
    name        text PRIMARY KEY,
    types       text[],
    categories  text[],
    partitions  integer NOT NULL DEFAULT 1,
    lease       interval NOT NULL DEFAULT '30 seconds',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT subscriptions_name_check CHECK (pg_catalog.length(name) BETWEEN 1 AND 200),
    CONSTRAINT subscriptions_partitions_check CHECK (partitions BETWEEN 1 AND 1024),
    CONSTRAINT subscriptions_lease_check CHECK (lease > '0'::interval)
);
COMMENT ON TABLE ocx.subscriptions IS
    'durable subscriptions: filters, number of partitions (consumer groups) and the lease of a partition';

CREATE TABLE ocx.subscription_partitions (
    subscription        text NOT NULL REFERENCES ocx.subscriptions ON DELETE CASCADE,
    partition           integer NOT NULL,
    acked_txid          xid8 NOT NULL DEFAULT '0',
    acked_position      bigint NOT NULL DEFAULT 0,
    delivered_txid      xid8,
    delivered_position  bigint,
    owner               text,
    lease_until         timestamptz,
    acked_at            timestamptz,
    PRIMARY KEY (subscription, partition)
);
COMMENT ON TABLE ocx.subscription_partitions IS
    'one row per partition of a subscription: the acknowledged cursor, what was delivered after it, and which consumer holds it';

CREATE TABLE ocx.subscription_consumers (
    subscription    text NOT NULL REFERENCES ocx.subscriptions ON DELETE CASCADE,
    consumer        text NOT NULL,
    last_seen       timestamptz NOT NULL,
    PRIMARY KEY (subscription, consumer)
);
COMMENT ON TABLE ocx.subscription_consumers IS
    'consumers that polled a subscription; those seen within its lease share its partitions';

SELECT pg_catalog.pg_extension_config_dump('ocx.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.subscription_partitions', '');
REVOKE ALL ON ocx.subscriptions, ocx.subscription_partitions, ocx.subscription_consumers FROM PUBLIC;

-- The partition of a stream: every event of a stream lands in one partition,
-- so one consumer sees a stream's events in order.
CREATE FUNCTION ocx.stream_partition(stream_id text, partitions integer) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (pg_catalog.hashtext($1) & 2147483647) % $2;
COMMENT ON FUNCTION ocx.stream_partition(text, integer) IS
    'the partition (0 .. partitions - 1) of a subscription that a stream''s events belong to';

CREATE FUNCTION ocx._bus_name_arg(what text, val text) RETURNS text
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_bus_name_arg';
COMMENT ON FUNCTION ocx._bus_name_arg(text, text) IS
    'internal: a valid subscription or consumer name (1 to 200 bytes), else raises OX301';

CREATE FUNCTION ocx.create_subscription(name text, types text[] DEFAULT NULL,
                                        categories text[] DEFAULT NULL,
                                        partitions integer DEFAULT 1,
                                        "after" ocx.cursor DEFAULT NULL,
                                        lease interval DEFAULT '30 seconds')
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    IF partitions IS NULL OR partitions < 1 OR partitions > 1024 THEN
        RAISE EXCEPTION 'partitions must be between 1 and 1024'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(partitions::text, 'NULL')),
                  HINT = 'Use 1 for a single consumer, or at least as many partitions as consumers in the group.';
    END IF;
    IF lease IS NULL OR lease <= '0'::interval THEN
        RAISE EXCEPTION 'lease must be a positive interval'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(lease::text, 'NULL'));
    END IF;
    IF types IS NOT NULL AND (cardinality(types) = 0 OR array_position(types, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'types must be NULL (all types) or a non-empty array without NULLs'
            USING ERRCODE = 'OX301';
    END IF;
    IF categories IS NOT NULL AND (cardinality(categories) = 0 OR array_position(categories, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'categories must be NULL (all categories) or a non-empty array without NULLs'
            USING ERRCODE = 'OX301';
    END IF;
    INSERT INTO ocx.subscriptions AS s (name, types, categories, partitions, lease)
        VALUES (create_subscription.name, create_subscription.types, create_subscription.categories,
                create_subscription.partitions, create_subscription.lease)
        ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" already exists', name
            USING ERRCODE = 'OX302',
                  HINT = 'Drop it first with ocx.drop_subscription, or use another name.';
    END IF;
    INSERT INTO ocx.subscription_partitions (subscription, partition, acked_txid, acked_position)
        SELECT create_subscription.name, p, coalesce(ocx.txid("after"), '0'::xid8),
               coalesce(ocx.global_position("after"), 0)
          FROM generate_series(0, create_subscription.partitions - 1) p;
END
$$;
COMMENT ON FUNCTION ocx.create_subscription(text, text[], text[], integer, ocx.cursor, interval) IS
    'create a durable subscription (optionally filtered by types and categories; partitions > 1 for consumer groups)';

CREATE FUNCTION ocx.drop_subscription(name text, if_exists boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    DELETE FROM ocx.subscriptions s WHERE s.name = drop_subscription.name;
    IF NOT FOUND THEN
        IF coalesce(if_exists, false) THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Pass if_exists => true to ignore a missing subscription.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ocx.drop_subscription(text, boolean) IS
    'drop a subscription and its cursors; returns false when it did not exist and if_exists is true';

-- Poll: events after the acknowledged cursor of every partition this
-- consumer holds, in gap-free log order.  Polls of one subscription are
-- serialized by the lock on its row, which makes partition hand-over safe: a
-- partition changes hands only when everything delivered from it is
-- acknowledged, or when its holder's lease ran out.
CREATE FUNCTION ocx.poll(name text, max_count integer DEFAULT 100, consumer text DEFAULT 'default')
    RETURNS SETOF ocx.event
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub     ocx.subscriptions;
    live    text[];
    nlive   integer;
    me      integer;
    evs     ocx.event[];
    tail    ocx.cursor;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._bus_name_arg('consumer name', consumer);
    IF max_count IS NULL OR max_count < 0 OR max_count > 100000 THEN
        RAISE EXCEPTION 'max_count must be between 0 and 100000'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(max_count::text, 'NULL'));
    END IF;
    SELECT * INTO sub FROM ocx.subscriptions s
     WHERE s.name = poll.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.create_subscription.';
    END IF;

    -- forget consumers gone for long (their partitions were taken over long ago)
    DELETE FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name AND c.last_seen < now() - sub.lease * 10;
    INSERT INTO ocx.subscription_consumers AS c (subscription, consumer, last_seen)
        VALUES (sub.name, poll.consumer, now())
        ON CONFLICT ON CONSTRAINT subscription_consumers_pkey DO UPDATE SET last_seen = excluded.last_seen;
    SELECT array_agg(c.consumer ORDER BY c.consumer) INTO live
      FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name
       AND c.last_seen > now() - sub.lease;
    nlive := cardinality(live);
    me := array_position(live, poll.consumer) - 1;

    -- give back partitions that now belong to another consumer, once acknowledged
    UPDATE ocx.subscription_partitions p SET owner = NULL, lease_until = NULL, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name AND p.owner = poll.consumer
       AND p.partition % nlive <> me
       AND (p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));
    -- take this consumer's share when it is free, its holder's lease ran out,
    -- or its holder has nothing in flight
    UPDATE ocx.subscription_partitions p SET owner = poll.consumer, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name
       AND p.partition % nlive = me
       AND p.owner IS DISTINCT FROM poll.consumer
       AND (p.owner IS NULL OR p.lease_until < now()
            OR p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));

    SELECT array_agg(x ORDER BY (x).txid, (x).global_position) INTO evs FROM (
        SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
               e.schema_version, e.time, e.data, e.metadata, e.correlation_id, e.causation_id,
               e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
          FROM ocx.events e
          JOIN ocx.subscription_partitions p
            ON p.subscription = sub.name
           AND p.owner = poll.consumer
           AND p.partition = ocx.stream_partition(e.stream_id, sub.partitions)
         WHERE e.txid < pg_snapshot_xmin(pg_current_snapshot())
           AND (e.txid, e.global_position) > (p.acked_txid, p.acked_position)
           AND (e.txid, e.global_position) > (
                SELECT q.acked_txid, q.acked_position FROM ocx.subscription_partitions q
                 WHERE q.subscription = sub.name AND q.owner = poll.consumer
                 ORDER BY q.acked_txid, q.acked_position LIMIT 1)
           AND (sub.types IS NULL OR e.type = ANY (sub.types))
           AND (sub.categories IS NULL OR ocx.category(e.stream_id) = ANY (sub.categories))
         ORDER BY e.txid, e.global_position
         LIMIT max_count) x;

    IF evs IS NOT NULL THEN
        tail := (evs[cardinality(evs)])."cursor";
    END IF;
    -- what is in flight now: everything up to the last event handed out (a
    -- poll of 0 events only renews the lease)
    UPDATE ocx.subscription_partitions p
       SET lease_until = now() + sub.lease,
           (delivered_txid, delivered_position) =
               (SELECT ocx.txid(g), ocx.global_position(g) FROM (
                    SELECT greatest(tail, ocx.cursor(p.acked_txid, p.acked_position)) AS g
                     WHERE tail IS NOT NULL) s)
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count > 0;
    UPDATE ocx.subscription_partitions p SET lease_until = now() + sub.lease
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count = 0;

    IF evs IS NOT NULL THEN
        RETURN QUERY SELECT * FROM unnest(evs);
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.poll(text, integer, text) IS
    'up to max_count events after the acknowledged cursor, in gap-free log order, from the partitions this consumer holds';

CREATE FUNCTION ocx.ack(name text, "cursor" ocx.cursor, consumer text DEFAULT 'default') RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub ocx.subscriptions;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._bus_name_arg('consumer name', consumer);
    IF "cursor" IS NULL THEN
        RAISE EXCEPTION 'cursor must not be null'
            USING ERRCODE = 'OX301', HINT = 'Acknowledge the "cursor" of the last event you processed.';
    END IF;
    SELECT * INTO sub FROM ocx.subscriptions s
     WHERE s.name = ack.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.create_subscription.';
    END IF;
    -- never past what was delivered: acknowledging unseen events would skip them
    UPDATE ocx.subscription_partitions p
       SET (acked_txid, acked_position) =
               (SELECT ocx.txid(g), ocx.global_position(g) FROM (
                    SELECT greatest(ocx.cursor(p.acked_txid, p.acked_position),
                                    least(ack."cursor",
                                          ocx.cursor(p.delivered_txid, p.delivered_position))) AS g) s),
           acked_at = now(),
           lease_until = now() + sub.lease
     WHERE p.subscription = sub.name AND p.owner = ack.consumer
       AND p.delivered_txid IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer "%" holds no polled partition of subscription "%"', consumer, name
            USING ERRCODE = 'OX303',
                  DETAIL = 'Its lease ran out and another consumer took its partitions, or it has not polled.',
                  HINT = 'Poll again: unacknowledged events are delivered again.';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.ack(text, ocx.cursor, text) IS
    'acknowledge every event up to cursor that this consumer was given by poll';

CREATE VIEW ocx.subscription_status AS
    SELECT s.name, p.partition, s.partitions, s.types, s.categories, p.owner, p.lease_until,
           ocx.cursor(p.acked_txid, p.acked_position) AS acked,
           p.acked_at,
           CASE WHEN p.delivered_txid IS NULL THEN NULL
                ELSE ocx.cursor(p.delivered_txid, p.delivered_position) END AS delivered
      FROM ocx.subscriptions s
      JOIN ocx.subscription_partitions p ON p.subscription = s.name;
COMMENT ON VIEW ocx.subscription_status IS
    'each partition of each subscription: who holds it, the acknowledged and the delivered cursor';

-- ---------------------------------------------------------------------------
-- Commands: a durable queue with one handler per command type.
-- ---------------------------------------------------------------------------

CREATE TYPE ocx.command AS (
    command_id      uuid,
    type            text,
    data            jsonb,
    metadata        jsonb,
    correlation_id  uuid,
    causation_id    uuid,
    attempt         integer
);
COMMENT ON TYPE ocx.command IS 'a command as handlers receive it and claim_commands returns it';

CREATE TABLE ocx.command_handlers (
    command_type    text PRIMARY KEY,
    handler         regprocedure,
    handler_role    regrole NOT NULL DEFAULT current_user::regrole,
    max_attempts    integer NOT NULL DEFAULT 5,
    base_delay      interval NOT NULL DEFAULT '1 second',
    max_delay       interval NOT NULL DEFAULT '5 minutes',
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT command_handlers_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000)
);
COMMENT ON TABLE ocx.command_handlers IS
    'the one handler of each command type: a function the worker runs, or NULL when clients claim the commands';

CREATE TABLE ocx.commands (
    command_id      uuid PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    type            text NOT NULL,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    correlation_id  uuid NOT NULL,
    causation_id    uuid,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    run_after       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    claimed_by      text,
    claimed_until   timestamptz,
    result          jsonb,
    last_error      text,
    txid            xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    finished_at     timestamptz,
    CONSTRAINT commands_status_check
        CHECK (status IN ('pending', 'running', 'succeeded', 'dead_letter'))
);
-- the claim: pending commands of one type, or of several, in queue order;
-- expired claims
CREATE INDEX commands_pending_idx ON ocx.commands (type, seq) WHERE status = 'pending';
CREATE INDEX commands_pending_seq_idx ON ocx.commands (seq) WHERE status = 'pending';
CREATE INDEX commands_running_idx ON ocx.commands (claimed_until) WHERE status = 'running';
CREATE INDEX commands_log_order_idx ON ocx.commands (txid, seq);
COMMENT ON TABLE ocx.commands IS 'the command queue: every command, its status, attempts and result';

CREATE TABLE ocx.command_history (
    command_id  uuid NOT NULL REFERENCES ocx.commands ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    event       text NOT NULL,
    attempt     integer NOT NULL,
    actor       text,
    detail      text
);
CREATE INDEX command_history_command_idx ON ocx.command_history (command_id, at);
COMMENT ON TABLE ocx.command_history IS
    'what happened to each command: sent, claimed, succeeded, failed, retried, dead_letter';

SELECT pg_catalog.pg_extension_config_dump('ocx.command_handlers', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.commands', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.command_history', '');
REVOKE ALL ON ocx.command_handlers, ocx.commands, ocx.command_history FROM PUBLIC;

CREATE FUNCTION ocx._command_sent() RETURNS void
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_command_sent';
COMMENT ON FUNCTION ocx._command_sent() IS
    'internal: wake the worker at commit (and NOTIFY ocx_commands now when ocx.notify_mode = immediate)';

CREATE FUNCTION ocx.define_command_handler(command_type text, handler regprocedure,
                                           retry jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    attempts    integer := 5;
    base        interval := '1 second';
    maxd        interval := '5 minutes';
    k           text;
    nargs       integer;
    argtype     oid;
    rettype     oid;
BEGIN
    IF command_type IS NULL OR command_type = '' OR octet_length(command_type) > 256 THEN
        RAISE EXCEPTION 'command type must be a non-empty string of at most 256 bytes'
            USING ERRCODE = 'OX322';
    END IF;
    IF handler IS NOT NULL THEN
        SELECT pronargs, proargtypes[0], prorettype INTO nargs, argtype, rettype
          FROM pg_catalog.pg_proc WHERE oid = handler;
        IF nargs <> 1 OR argtype <> 'ocx.command'::regtype
           OR rettype NOT IN ('jsonb'::regtype, 'void'::regtype) THEN
            RAISE EXCEPTION 'command handler % has the wrong signature', handler
                USING ERRCODE = 'OX322',
                      DETAIL = 'A command handler takes one ocx.command and returns jsonb (the result) or void.',
                      HINT = 'CREATE FUNCTION my_handler(c ocx.command) RETURNS jsonb ...';
        END IF;
    END IF;
    IF retry IS NOT NULL THEN
        IF jsonb_typeof(retry) <> 'object' THEN
            RAISE EXCEPTION 'retry must be a JSON object' USING ERRCODE = 'OX322';
        END IF;
        FOR k IN SELECT jsonb_object_keys(retry) LOOP
            IF k NOT IN ('max_attempts', 'base_delay', 'max_delay') THEN
                RAISE EXCEPTION 'unknown key "%" in retry', k
                    USING ERRCODE = 'OX322', HINT = 'The keys are max_attempts, base_delay and max_delay.';
            END IF;
        END LOOP;
        BEGIN
            attempts := coalesce((retry->>'max_attempts')::integer, attempts);
            base := coalesce((retry->>'base_delay')::interval, base);
            maxd := coalesce((retry->>'max_delay')::interval, maxd);
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'invalid retry policy: %', SQLERRM
                USING ERRCODE = 'OX322',
                      HINT = 'Use {"max_attempts": 5, "base_delay": "1 second", "max_delay": "5 minutes"}.';
        END;
        IF attempts < 1 OR attempts > 1000 OR base < '0'::interval OR maxd < base THEN
            RAISE EXCEPTION 'invalid retry policy'
                USING ERRCODE = 'OX322',
                      DETAIL = 'max_attempts must be 1 to 1000 and 0 <= base_delay <= max_delay.';
        END IF;
    END IF;
    INSERT INTO ocx.command_handlers AS h (command_type, handler, max_attempts, base_delay, max_delay)
        VALUES (define_command_handler.command_type, define_command_handler.handler, attempts, base, maxd)
        ON CONFLICT ON CONSTRAINT command_handlers_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command type "%" already has a handler', command_type
            USING ERRCODE = 'OX321',
                  DETAIL = 'A command has exactly one handler.',
                  HINT = 'Drop the existing one with ocx.drop_command_handler first.';
    END IF;
    PERFORM ocx._command_sent();
END
$$;
COMMENT ON FUNCTION ocx.define_command_handler(text, regprocedure, jsonb) IS
    'the one handler of a command type: a function (ocx.command) -> jsonb|void the worker runs, or NULL for client-claimed commands; retry {"max_attempts", "base_delay", "max_delay"}';

CREATE FUNCTION ocx.drop_command_handler(command_type text) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM ocx.command_handlers h WHERE h.command_type = drop_command_handler.command_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command type "%" has no handler', command_type USING ERRCODE = 'OX320';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.drop_command_handler(text) IS 'remove the handler of a command type';

CREATE FUNCTION ocx.send_command(type text, data jsonb, correlation_id uuid DEFAULT NULL,
                                 causation_id uuid DEFAULT NULL, command_id uuid DEFAULT NULL,
                                 metadata jsonb DEFAULT '{}', run_at timestamptz DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id      uuid := coalesce(send_command.command_id, gen_random_uuid());
    corr    uuid := send_command.correlation_id;
    cause   uuid := send_command.causation_id;
    old     ocx.commands;
BEGIN
    IF type IS NULL OR type = '' OR octet_length(type) > 256 THEN
        RAISE EXCEPTION 'command type must be a non-empty string of at most 256 bytes'
            USING ERRCODE = 'OX322';
    END IF;
    IF data IS NULL OR jsonb_typeof(data) <> 'object' THEN
        RAISE EXCEPTION 'command data must be a JSON object'
            USING ERRCODE = 'OX322', HINT = 'Pass ''{}'' for a command without data.';
    END IF;
    IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'command metadata must be a JSON object' USING ERRCODE = 'OX322';
    END IF;
    IF corr IS NULL THEN
        corr := nullif(current_setting('ocx.correlation_id', true), '')::uuid;
    END IF;
    IF cause IS NULL THEN
        cause := nullif(current_setting('ocx.causation_id', true), '')::uuid;
    END IF;
    -- the trace continues through the command (and its handler, see commands.c)
    IF NOT metadata ? 'traceparent' AND coalesce(current_setting('ocx.traceparent', true), '') <> '' THEN
        metadata := metadata || jsonb_build_object('traceparent', current_setting('ocx.traceparent', true));
    END IF;
    INSERT INTO ocx.commands AS c (command_id, type, data, metadata, correlation_id, causation_id, run_after)
        VALUES (id, send_command.type, send_command.data, send_command.metadata, coalesce(corr, id), cause,
                coalesce(run_at, now()))
        ON CONFLICT ON CONSTRAINT commands_pkey DO NOTHING;
    IF NOT FOUND THEN
        -- an idempotent retry repeats the command exactly
        SELECT * INTO old FROM ocx.commands c WHERE c.command_id = id;
        IF old.type = send_command.type AND old.data = send_command.data THEN
            RETURN id;
        END IF;
        RAISE EXCEPTION 'command id % is already used by another command', id
            USING ERRCODE = 'OX322',
                  DETAIL = format('It is a "%s" command with different data.', old.type),
                  HINT = 'A retry must repeat the original command exactly; a new command needs a new id.';
    END IF;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor)
        VALUES (id, 'sent', 0, current_user);
    PERFORM ocx._command_sent();
    RETURN id;
END
$$;
COMMENT ON FUNCTION ocx.send_command(text, jsonb, uuid, uuid, uuid, jsonb, timestamptz) IS
    'put a command in the durable queue; returns its id (given ids make retries idempotent); correlation defaults to ocx.correlation_id, else the command id';

-- The claim both clients and the worker use: expired claims first (they come
-- back, or become dead letters when their attempts are used up), then pending
-- commands oldest first.  Each step is an index scan with SKIP LOCKED, so
-- competing claimers never wait for each other.
CREATE FUNCTION ocx._claim_commands(types text[], max_count integer, visibility_timeout interval,
                                    claimer text)
    RETURNS SETOF ocx.command
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids     uuid[];
    more    uuid[];
BEGIN
    IF types IS NULL OR cardinality(types) = 0 THEN
        RETURN;
    END IF;
    -- (COLLATE "default": parameters may carry the caller's collation, and
    -- only the column's own collation lets the planner use the indexes)

    -- expired claims are rare: look for them with a cheap index probe first
    IF EXISTS (SELECT 1 FROM ocx.commands c WHERE c.status = 'running' AND c.claimed_until < now()) THEN
        WITH dead AS (
            UPDATE ocx.commands c SET status = 'dead_letter', claimed_by = NULL, claimed_until = NULL,
                   updated_at = now(), finished_at = now(),
                   last_error = coalesce(c.last_error, 'the claim expired')
              FROM (SELECT c2.command_id FROM ocx.commands c2
                      LEFT JOIN ocx.command_handlers h ON h.command_type = c2.type
                     WHERE c2.status = 'running' AND c2.claimed_until < now()
                       AND c2.type = ANY (types COLLATE "default")
                       AND c2.attempts >= coalesce(h.max_attempts, 5)
                     FOR UPDATE OF c2 SKIP LOCKED) d
             WHERE c.command_id = d.command_id
            RETURNING c.command_id, c.attempts)
        INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
            SELECT dead.command_id, 'dead_letter', dead.attempts, claimer, 'the claim expired'
              FROM dead;

        SELECT array_agg(x.command_id) INTO ids FROM (
            SELECT c.command_id FROM ocx.commands c
             WHERE c.status = 'running' AND c.claimed_until < now() AND c.type = ANY (types COLLATE "default")
             ORDER BY c.claimed_until
             LIMIT max_count
             FOR UPDATE SKIP LOCKED) x;
    END IF;
    -- the common case, in one statement: the oldest pending commands
    IF ids IS NULL AND cardinality(types) = 1 THEN
        RETURN QUERY
        WITH picked AS (
            SELECT c.command_id FROM ocx.commands c
             WHERE c.status = 'pending' AND c.type = (types[1] COLLATE "default") AND c.run_after <= now()
             ORDER BY c.seq
             LIMIT max_count
             FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE ocx.commands c SET status = 'running', attempts = c.attempts + 1,
               claimed_by = claimer, claimed_until = now() + visibility_timeout,
               updated_at = now()
          FROM picked WHERE c.command_id = picked.command_id
        RETURNING c.*),
    logged AS (
        INSERT INTO ocx.command_history (command_id, event, attempt, actor)
            SELECT claimed.command_id, 'claimed', claimed.attempts, claimer FROM claimed)
    SELECT claimed.command_id, claimed.type, claimed.data, claimed.metadata, claimed.correlation_id,
           claimed.causation_id, claimed.attempts
      FROM claimed ORDER BY claimed.seq;
        RETURN;
    ELSIF ids IS NULL THEN
        RETURN QUERY
        WITH picked AS (
            SELECT c.command_id FROM ocx.commands c
             WHERE c.status = 'pending' AND c.type = ANY (types COLLATE "default") AND c.run_after <= now()
             ORDER BY c.seq
             LIMIT max_count
             FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE ocx.commands c SET status = 'running', attempts = c.attempts + 1,
               claimed_by = claimer, claimed_until = now() + visibility_timeout,
               updated_at = now()
          FROM picked WHERE c.command_id = picked.command_id
        RETURNING c.*),
    logged AS (
        INSERT INTO ocx.command_history (command_id, event, attempt, actor)
            SELECT claimed.command_id, 'claimed', claimed.attempts, claimer FROM claimed)
    SELECT claimed.command_id, claimed.type, claimed.data, claimed.metadata, claimed.correlation_id,
           claimed.causation_id, claimed.attempts
      FROM claimed ORDER BY claimed.seq;
        RETURN;
    END IF;

    -- expired claims came back: top up with pending ones
    IF coalesce(cardinality(ids), 0) < max_count THEN
        IF cardinality(types) = 1 THEN
            -- one type: a scan of commands_pending_idx in queue order
            SELECT array_agg(x.command_id) INTO more FROM (
                SELECT c.command_id FROM ocx.commands c
                 WHERE c.status = 'pending' AND c.type = (types[1] COLLATE "default") AND c.run_after <= now()
                 ORDER BY c.seq
                 LIMIT max_count - coalesce(cardinality(ids), 0)
                 FOR UPDATE SKIP LOCKED) x;
        ELSE
            SELECT array_agg(x.command_id) INTO more FROM (
                SELECT c.command_id FROM ocx.commands c
                 WHERE c.status = 'pending' AND c.type = ANY (types COLLATE "default") AND c.run_after <= now()
                 ORDER BY c.seq
                 LIMIT max_count - coalesce(cardinality(ids), 0)
                 FOR UPDATE SKIP LOCKED) x;
        END IF;
        ids := coalesce(ids, '{}') || coalesce(more, '{}');
    END IF;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE ocx.commands c SET status = 'running', attempts = c.attempts + 1,
               claimed_by = claimer, claimed_until = now() + visibility_timeout,
               updated_at = now()
         WHERE c.command_id = ANY (ids)
        RETURNING c.*),
    logged AS (
        INSERT INTO ocx.command_history (command_id, event, attempt, actor)
            SELECT claimed.command_id, 'claimed', claimed.attempts, claimer FROM claimed)
    SELECT claimed.command_id, claimed.type, claimed.data, claimed.metadata, claimed.correlation_id,
           claimed.causation_id, claimed.attempts
      FROM claimed ORDER BY claimed.seq;
END
$$;
COMMENT ON FUNCTION ocx._claim_commands(text[], integer, interval, text) IS
    'internal: claim ready commands of the given types with SKIP LOCKED (expired claims first, then oldest pending)';
REVOKE ALL ON FUNCTION ocx._claim_commands(text[], integer, interval, text) FROM PUBLIC;

CREATE FUNCTION ocx.claim_commands(types text[], max_count integer DEFAULT 1,
                                   visibility_timeout interval DEFAULT '30 seconds',
                                   claimer text DEFAULT NULL)
    RETURNS SETOF ocx.command
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    IF types IS NULL OR cardinality(types) = 0 OR array_position(types, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'types must be a non-empty array of command types'
            USING ERRCODE = 'OX322';
    END IF;
    IF max_count IS NULL OR max_count < 1 OR max_count > 10000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 10000'
            USING ERRCODE = 'OX322', DETAIL = format('Got %s.', coalesce(max_count::text, 'NULL'));
    END IF;
    IF visibility_timeout IS NULL OR visibility_timeout <= '0'::interval THEN
        RAISE EXCEPTION 'visibility_timeout must be a positive interval'
            USING ERRCODE = 'OX322';
    END IF;
    SELECT h.command_type INTO t FROM ocx.command_handlers h
     WHERE h.command_type = ANY (types) AND h.handler IS NOT NULL LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'command type "%" is handled inside the server', t
            USING ERRCODE = 'OX321',
                  DETAIL = 'A command has exactly one handler, and this type''s runs in the ocx worker.',
                  HINT = 'Claim only client-handled types, or drop the server handler.';
    END IF;
    RETURN QUERY SELECT * FROM ocx._claim_commands(types, max_count, visibility_timeout,
                                                   coalesce(claimer, current_user::text));
END
$$;
COMMENT ON FUNCTION ocx.claim_commands(text[], integer, interval, text) IS
    'claim up to max_count ready commands of the given types (SKIP LOCKED); an unfinished claim comes back after visibility_timeout';

-- Finish a running command: shared by complete_command, fail_command and the worker.
CREATE FUNCTION ocx._running_command(id uuid) RETURNS ocx.commands
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ocx.commands;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'command id must not be null' USING ERRCODE = 'OX322';
    END IF;
    SELECT * INTO c FROM ocx.commands x WHERE x.command_id = id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command % does not exist', id USING ERRCODE = 'OX320';
    END IF;
    IF c.status <> 'running' THEN
        RAISE EXCEPTION 'command % is not claimed', id
            USING ERRCODE = 'OX323',
                  DETAIL = format('Its status is %s.', c.status),
                  HINT = 'Claim it with ocx.claim_commands first; a claim whose visibility timeout ran out may have been taken by another client.';
    END IF;
    RETURN c;
END
$$;
COMMENT ON FUNCTION ocx._running_command(uuid) IS 'internal: lock a claimed command, else raise OX320/OX323';
REVOKE ALL ON FUNCTION ocx._running_command(uuid) FROM PUBLIC;

CREATE FUNCTION ocx.complete_command(command_id uuid, result jsonb DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- one statement on the common path; the checks only when it matched nothing
    WITH done AS (
        UPDATE ocx.commands x SET status = 'succeeded', result = complete_command.result,
               claimed_until = NULL, updated_at = now(), finished_at = now()
         WHERE x.command_id = complete_command.command_id AND x.status = 'running'
        RETURNING x.command_id, x.attempts, x.claimed_by)
    INSERT INTO ocx.command_history (command_id, event, attempt, actor)
        SELECT done.command_id, 'succeeded', done.attempts, done.claimed_by FROM done;
    IF NOT FOUND THEN
        PERFORM ocx._running_command(command_id);     -- raises why
        RAISE EXCEPTION 'command % changed while it was completed', command_id USING ERRCODE = 'OX323';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.complete_command(uuid, jsonb) IS 'mark a claimed command succeeded, with an optional result';

CREATE FUNCTION ocx.fail_command(command_id uuid, error text, retry boolean DEFAULT true) RETURNS text
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c       ocx.commands := ocx._running_command(command_id);
    h       ocx.command_handlers;
    delay   interval;
BEGIN
    SELECT * INTO h FROM ocx.command_handlers x WHERE x.command_type = c.type;
    IF NOT FOUND THEN
        h.max_attempts := 5; h.base_delay := '1 second'; h.max_delay := '5 minutes';
    END IF;
    IF coalesce(retry, true) AND c.attempts < h.max_attempts THEN
        delay := least(h.base_delay * power(2, c.attempts - 1), h.max_delay);
        UPDATE ocx.commands x SET status = 'pending', claimed_by = NULL, claimed_until = NULL,
               run_after = now() + delay, last_error = fail_command.error, updated_at = now()
         WHERE x.command_id = c.command_id;
        INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
            VALUES (c.command_id, 'failed', c.attempts, c.claimed_by,
                    coalesce(error, '') || ' (retry in ' || delay::text || ')');
        RETURN 'pending';
    END IF;
    UPDATE ocx.commands x SET status = 'dead_letter', claimed_by = NULL, claimed_until = NULL,
           last_error = fail_command.error, updated_at = now(), finished_at = now()
     WHERE x.command_id = c.command_id;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
        VALUES (c.command_id, 'dead_letter', c.attempts, c.claimed_by, error);
    RETURN 'dead_letter';
END
$$;
COMMENT ON FUNCTION ocx.fail_command(uuid, text, boolean) IS
    'record a failed attempt: retried with exponential backoff per the type''s policy, then (or with retry => false) a dead letter; returns the new status';

CREATE FUNCTION ocx.retry_command(command_id uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ocx.commands x SET status = 'pending', attempts = 0, run_after = now(), updated_at = now(),
           finished_at = NULL
     WHERE x.command_id = retry_command.command_id
       AND x.status = 'dead_letter';
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM ocx.commands x WHERE x.command_id = retry_command.command_id) THEN
            RAISE EXCEPTION 'command % does not exist', command_id USING ERRCODE = 'OX320';
        END IF;
        RAISE EXCEPTION 'command % is not a dead letter', command_id
            USING ERRCODE = 'OX323', HINT = 'Only dead-lettered commands can be retried.';
    END IF;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor)
        VALUES (retry_command.command_id, 'retried', 0, current_user);
    PERFORM ocx._command_sent();
END
$$;
COMMENT ON FUNCTION ocx.retry_command(uuid) IS 'send a dead-lettered command again with fresh attempts';

CREATE FUNCTION ocx.purge_commands(older_than interval DEFAULT '7 days',
                                   dead_letters boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF older_than IS NULL OR older_than < '0'::interval THEN
        RAISE EXCEPTION 'older_than must be an interval of at least 0' USING ERRCODE = 'OX322';
    END IF;
    DELETE FROM ocx.commands c
     WHERE (c.status = 'succeeded' OR (coalesce(dead_letters, false) AND c.status = 'dead_letter'))
       AND c.finished_at < now() - older_than;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ocx.purge_commands(interval, boolean) IS
    'delete succeeded (and optionally dead-lettered) commands finished longer ago than older_than, with their history; returns how many';

CREATE VIEW ocx.command_status AS
    SELECT c.command_id, c.type, c.status, c.attempts,
           coalesce(h.max_attempts, 5) AS max_attempts,
           CASE WHEN h.command_type IS NULL THEN 'client'
                WHEN h.handler IS NULL THEN 'client' ELSE 'server' END AS handled_by,
           c.correlation_id, c.causation_id, c.claimed_by, c.claimed_until, c.run_after,
           c.result, c.last_error, c.created_at, c.updated_at, c.finished_at,
           (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'at', x.at, 'event', x.event, 'attempt', x.attempt, 'actor', x.actor,
                       'detail', x.detail) ORDER BY x.at)
              FROM ocx.command_history x
             WHERE x.command_id = c.command_id) AS history
      FROM ocx.commands c
      LEFT JOIN ocx.command_handlers h ON h.command_type = c.type;
COMMENT ON VIEW ocx.command_status IS 'each command: status, attempts, handler, result, last error and its history';

CREATE FUNCTION ocx._command_tick() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_command_tick';
COMMENT ON FUNCTION ocx._command_tick() IS
    'internal: one round of the worker''s command task (runs in-server handlers); true when more is pending';
REVOKE ALL ON FUNCTION ocx._command_tick() FROM PUBLIC;
-- ---------------------------------------------------------------------------
-- Sagas: long-running processes made of steps, each a command sent through
-- the command queue, with compensation.  See docs/sagas.md.
--
-- The state of every saga lives in the tables below.  The worker's saga task
-- (src/saga.c calls ocx._saga_run) reads the event log in gap-free log order
-- after its own cursor (ocx.saga_cursor), matches events to running sagas by
-- correlation id (= saga id) and type, and in the same transaction as each
-- state change sends the next command (ocx.send_command): a crash never sends
-- a step twice and never loses a success event.  Step and compensation
-- commands have ids derived from (saga id, step, do/undo), so even a repeated
-- send is an idempotent no-op.
--
-- The PL/pgSQL functions pin search_path to pg_catalog, pg_temp; tables are
-- schema-qualified.
-- ---------------------------------------------------------------------------

CREATE TABLE ocx.saga_definitions (
    name        text PRIMARY KEY,
    definition  jsonb NOT NULL,
    steps       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT saga_definitions_name_check CHECK (pg_catalog.length(name) BETWEEN 1 AND 200)
);
COMMENT ON TABLE ocx.saga_definitions IS
    'saga definitions: the definition as given and its validated, normalized steps';

CREATE TABLE ocx.saga_instances (
    saga_id         uuid PRIMARY KEY,
    saga_name       text NOT NULL,
    steps           jsonb NOT NULL,
    input           jsonb NOT NULL,
    results         jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'running',
    current_step    integer NOT NULL DEFAULT 1,
    command_id      uuid,
    deadline        timestamptz,
    to_compensate   integer[] NOT NULL DEFAULT '{}',
    error           text,
    started_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    finished_at     timestamptz,
    CONSTRAINT saga_instances_state_check
        CHECK (state IN ('running', 'compensating', 'completed', 'compensated', 'failed'))
);
CREATE INDEX saga_instances_active_idx ON ocx.saga_instances (state)
    WHERE state IN ('running', 'compensating');
CREATE INDEX saga_instances_deadline_idx ON ocx.saga_instances (deadline)
    WHERE state = 'running' AND deadline IS NOT NULL;
CREATE INDEX saga_instances_name_idx ON ocx.saga_instances (saga_name);
COMMENT ON TABLE ocx.saga_instances IS
    'one row per saga: its state, the step it is at, the outstanding command, results of completed steps and the steps left to compensate';
COMMENT ON COLUMN ocx.saga_instances.steps IS 'the definition''s steps when the saga started (redefining a saga does not change running ones)';
COMMENT ON COLUMN ocx.saga_instances.results IS 'data of the success event of each completed step, by step name';
COMMENT ON COLUMN ocx.saga_instances.current_step IS 'the step (1-based) whose command is outstanding; while compensating, the step being compensated';

CREATE TABLE ocx.saga_steps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id     uuid NOT NULL REFERENCES ocx.saga_instances ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    step        integer,
    step_name   text,
    action      text NOT NULL,
    state       text NOT NULL,
    command_id  uuid,
    event_id    uuid,
    event_type  text,
    detail      text,
    CONSTRAINT saga_steps_action_check CHECK (action IN (
        'started', 'step_sent', 'step_succeeded', 'step_failed', 'step_timed_out',
        'step_dead_letter', 'step_cancelled', 'abort_requested', 'compensation_sent',
        'compensation_succeeded', 'compensation_failed', 'completed', 'compensated', 'failed'))
);
CREATE INDEX saga_steps_saga_idx ON ocx.saga_steps (saga_id, id);
COMMENT ON TABLE ocx.saga_steps IS
    'the audit log of every saga: one row per transition, with the saga''s state after it';

-- The worker's place in the log (one row).
CREATE TABLE ocx.saga_cursor (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    txid            xid8 NOT NULL DEFAULT '0',
    global_position bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz
);
COMMENT ON TABLE ocx.saga_cursor IS
    'the saga task''s checkpoint in gap-free log order: every event up to it was matched against the sagas';
-- The row is created by the first round, not here: pg_dump keeps the row
-- (config table), and a restore must not meet one made by CREATE EXTENSION.

SELECT pg_catalog.pg_extension_config_dump('ocx.saga_definitions', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.saga_instances', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.saga_steps', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.saga_cursor', '');
REVOKE ALL ON ocx.saga_definitions, ocx.saga_instances, ocx.saga_steps, ocx.saga_cursor FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Definitions
-- ---------------------------------------------------------------------------

-- Check a data template: every string starting with "$" (but not "$$") is a
-- placeholder, a JSON path into {"saga_id", "input", "steps": {name: data}}
-- that may name only the steps in known.
CREATE FUNCTION ocx._saga_check_template(template jsonb, known text[], what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s   text;
    m   text[];
    v   jsonb;
BEGIN
    CASE jsonb_typeof(template)
    WHEN 'object' THEN
        FOR v IN SELECT x.value FROM jsonb_each(template) x LOOP
            PERFORM ocx._saga_check_template(v, known, what);
        END LOOP;
    WHEN 'array' THEN
        FOR v IN SELECT x FROM jsonb_array_elements(template) x LOOP
            PERFORM ocx._saga_check_template(v, known, what);
        END LOOP;
    WHEN 'string' THEN
        s := template #>> '{}';
        IF left(s, 1) <> '$' OR left(s, 2) = '$$' THEN
            RETURN;
        END IF;
        BEGIN
            PERFORM s::jsonpath;
        EXCEPTION WHEN syntax_error OR invalid_text_representation THEN
            RAISE EXCEPTION 'invalid saga definition: % has an invalid placeholder "%"', what, s
                USING ERRCODE = 'OX401',
                      DETAIL = 'A string starting with $ is a JSON path into the saga''s input and the results of earlier steps.',
                      HINT = 'Write "$.input.key" or "$.steps.step_name.key"; start a literal string with $$.';
        END;
        IF s !~ '^\$\.(input|saga_id|steps)($|[.\[])' THEN
            RAISE EXCEPTION 'invalid saga definition: % has an invalid placeholder "%"', what, s
                USING ERRCODE = 'OX401',
                      DETAIL = 'A placeholder starts with $.input, $.saga_id or $.steps.',
                      HINT = 'Start a literal string with $$.';
        END IF;
        IF s ~ '^\$\.steps' THEN
            m := regexp_match(s, '^\$\.steps\.([A-Za-z_][A-Za-z0-9_]*)');
            IF m IS NULL OR NOT m[1] = ANY (known) THEN
                RAISE EXCEPTION 'invalid saga definition: % refers to an unknown or later step in "%"', what, s
                    USING ERRCODE = 'OX401',
                          DETAIL = format('Steps it may use: %s.',
                                          coalesce(nullif(array_to_string(known, ', '), ''), 'none')),
                          HINT = 'A step''s data can use the results of earlier steps; a compensation also those of its own step.';
            END IF;
        END IF;
    ELSE
        NULL;
    END CASE;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_check_template(jsonb, text[], text) IS
    'internal: raise OX401 unless every placeholder of a data template is a valid path into the saga''s input or known steps';

-- Validate a definition and return its normalized steps.
CREATE FUNCTION ocx._saga_normalize(definition jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    k       text;
    st      jsonb;
    n       integer := 0;
    names   text[] := '{}';
    what    text;
    nm      text;
    succ    jsonb;
    fail    jsonb;
    comp    jsonb;
    tmo     interval;
    out     jsonb := '[]';
    norm    jsonb;
BEGIN
    IF definition IS NULL OR jsonb_typeof(definition) <> 'object' THEN
        RAISE EXCEPTION 'invalid saga definition: it must be a JSON object'
            USING ERRCODE = 'OX401', HINT = 'Use {"steps": [{"name": ..., "command": ..., "success": [...]}, ...]}.';
    END IF;
    FOR k IN SELECT jsonb_object_keys(definition) LOOP
        IF k NOT IN ('steps', 'description') THEN
            RAISE EXCEPTION 'invalid saga definition: unknown key "%"', k
                USING ERRCODE = 'OX401', HINT = 'The keys of a definition are steps and description.';
        END IF;
    END LOOP;
    IF jsonb_typeof(definition->'steps') IS DISTINCT FROM 'array'
       OR jsonb_array_length(definition->'steps') = 0 THEN
        RAISE EXCEPTION 'invalid saga definition: "steps" must be a non-empty array'
            USING ERRCODE = 'OX401';
    END IF;
    IF jsonb_array_length(definition->'steps') > 100 THEN
        RAISE EXCEPTION 'invalid saga definition: too many steps'
            USING ERRCODE = 'OX401', DETAIL = format('It has %s steps; at most 100 are allowed.',
                                                     jsonb_array_length(definition->'steps'));
    END IF;
    IF definition ? 'description' AND jsonb_typeof(definition->'description') <> 'string' THEN
        RAISE EXCEPTION 'invalid saga definition: "description" must be a string' USING ERRCODE = 'OX401';
    END IF;

    FOR st IN SELECT x FROM jsonb_array_elements(definition->'steps') x LOOP
        n := n + 1;
        what := format('step %s', n);
        IF jsonb_typeof(st) <> 'object' THEN
            RAISE EXCEPTION 'invalid saga definition: % must be a JSON object', what USING ERRCODE = 'OX401';
        END IF;
        FOR k IN SELECT jsonb_object_keys(st) LOOP
            IF k NOT IN ('name', 'command', 'data', 'success', 'failure', 'timeout', 'compensation') THEN
                RAISE EXCEPTION 'invalid saga definition: unknown key "%" in %', k, what
                    USING ERRCODE = 'OX401',
                          HINT = 'The keys of a step are name, command, data, success, failure, timeout and compensation.';
            END IF;
        END LOOP;
        nm := st->>'name';
        IF jsonb_typeof(st->'name') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'invalid saga definition: % needs a "name"', what
                USING ERRCODE = 'OX401', HINT = 'Name every step, e.g. "name": "reserve".';
        END IF;
        IF nm !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' THEN
            RAISE EXCEPTION 'invalid saga definition: % has an invalid name "%"', what, nm
                USING ERRCODE = 'OX401',
                      DETAIL = 'A step name is an identifier: letters, digits and underscores, at most 63, not starting with a digit.';
        END IF;
        what := format('step %s ("%s")', n, nm);
        IF nm = ANY (names) THEN
            RAISE EXCEPTION 'invalid saga definition: duplicate step name "%"', nm
                USING ERRCODE = 'OX401', DETAIL = format('Steps %s and %s are both named "%s".',
                                                         array_position(names, nm), n, nm);
        END IF;
        IF jsonb_typeof(st->'command') IS DISTINCT FROM 'string' OR st->>'command' = ''
           OR octet_length(st->>'command') > 256 THEN
            RAISE EXCEPTION 'invalid saga definition: % has no "command"', what
                USING ERRCODE = 'OX401', HINT = 'Name the command type to send, e.g. "command": "ReserveInventory".';
        END IF;
        IF st ? 'data' AND jsonb_typeof(st->'data') <> 'object' THEN
            RAISE EXCEPTION 'invalid saga definition: "data" of % must be a JSON object', what
                USING ERRCODE = 'OX401', HINT = 'Omit it to send the saga''s input as the command''s data.';
        END IF;
        succ := st->'success';
        IF jsonb_typeof(succ) = 'string' THEN
            succ := jsonb_build_array(succ);
        END IF;
        IF jsonb_typeof(succ) IS DISTINCT FROM 'array' OR jsonb_array_length(succ) = 0
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(succ) x
                       WHERE jsonb_typeof(x) <> 'string' OR x #>> '{}' = '') THEN
            RAISE EXCEPTION 'invalid saga definition: % needs "success", the event types that complete it', what
                USING ERRCODE = 'OX401', HINT = 'Give an event type or an array of them, e.g. "success": ["InventoryReserved"].';
        END IF;
        fail := coalesce(st->'failure', '[]');
        IF jsonb_typeof(fail) = 'string' THEN
            fail := jsonb_build_array(fail);
        END IF;
        IF jsonb_typeof(fail) <> 'array'
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(fail) x
                       WHERE jsonb_typeof(x) <> 'string' OR x #>> '{}' = '') THEN
            RAISE EXCEPTION 'invalid saga definition: "failure" of % must be an event type or an array of them', what
                USING ERRCODE = 'OX401';
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements_text(succ) a
                     JOIN jsonb_array_elements_text(fail) b ON a = b) THEN
            RAISE EXCEPTION 'invalid saga definition: an event type of % means both success and failure', what
                USING ERRCODE = 'OX401';
        END IF;
        tmo := NULL;
        IF st ? 'timeout' THEN
            BEGIN
                tmo := (st->>'timeout')::interval;
            EXCEPTION WHEN data_exception THEN
                tmo := NULL;
            END;
            IF jsonb_typeof(st->'timeout') <> 'string' OR tmo IS NULL OR tmo <= '0'::interval THEN
                RAISE EXCEPTION 'invalid saga definition: "timeout" of % must be a positive interval', what
                    USING ERRCODE = 'OX401', DETAIL = format('Got %s.', st->'timeout'),
                          HINT = 'Write it as text, e.g. "timeout": "30 seconds".';
            END IF;
        END IF;
        PERFORM ocx._saga_check_template(coalesce(st->'data', '{}'), names, format('the data of %s', what));
        comp := st->'compensation';
        IF comp IS NOT NULL THEN
            IF jsonb_typeof(comp) <> 'object' THEN
                RAISE EXCEPTION 'invalid saga definition: "compensation" of % must be a JSON object', what
                    USING ERRCODE = 'OX401', HINT = 'Use {"command": ..., "data": {...}}.';
            END IF;
            FOR k IN SELECT jsonb_object_keys(comp) LOOP
                IF k NOT IN ('command', 'data') THEN
                    RAISE EXCEPTION 'invalid saga definition: unknown key "%" in the compensation of %', k, what
                        USING ERRCODE = 'OX401', HINT = 'The keys of a compensation are command and data.';
                END IF;
            END LOOP;
            IF jsonb_typeof(comp->'command') IS DISTINCT FROM 'string' OR comp->>'command' = ''
               OR octet_length(comp->>'command') > 256 THEN
                RAISE EXCEPTION 'invalid saga definition: the compensation of % has no "command"', what
                    USING ERRCODE = 'OX401';
            END IF;
            IF comp ? 'data' AND jsonb_typeof(comp->'data') <> 'object' THEN
                RAISE EXCEPTION 'invalid saga definition: "data" of the compensation of % must be a JSON object', what
                    USING ERRCODE = 'OX401';
            END IF;
            PERFORM ocx._saga_check_template(coalesce(comp->'data', '{}'), names || nm,
                                             format('the compensation data of %s', what));
        END IF;
        norm := jsonb_build_object('name', nm, 'command', st->'command', 'success', succ, 'failure', fail);
        IF st ? 'data' THEN
            norm := norm || jsonb_build_object('data', st->'data');
        END IF;
        IF tmo IS NOT NULL THEN
            norm := norm || jsonb_build_object('timeout', st->'timeout');
        END IF;
        IF comp IS NOT NULL THEN
            norm := norm || jsonb_build_object('compensation', comp);
        END IF;
        out := out || jsonb_build_array(norm);
        names := names || nm;
    END LOOP;
    RETURN out;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_normalize(jsonb) IS
    'internal: validate a saga definition (raises OX401) and return its normalized steps';

CREATE FUNCTION ocx.define_saga(name text, definition jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    steps jsonb;
BEGIN
    IF name IS NULL OR name = '' OR octet_length(name) > 200 THEN
        RAISE EXCEPTION 'saga name must be a non-empty string of at most 200 bytes'
            USING ERRCODE = 'OX403';
    END IF;
    steps := ocx._saga_normalize(definition);
    INSERT INTO ocx.saga_definitions AS d (name, definition, steps)
        VALUES (define_saga.name, define_saga.definition, steps)
        ON CONFLICT ON CONSTRAINT saga_definitions_pkey
        DO UPDATE SET definition = excluded.definition, steps = excluded.steps, updated_at = now();
END
$fn$;
COMMENT ON FUNCTION ocx.define_saga(text, jsonb) IS
    'define (or redefine) a saga: {"steps": [{"name", "command", "data", "success", "failure", "timeout", "compensation"}, ...]}; invalid definitions raise OX401';

CREATE FUNCTION ocx.drop_saga(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    active bigint;
BEGIN
    PERFORM 1 FROM ocx.saga_definitions d WHERE d.name = drop_saga.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'saga "%" does not exist', name USING ERRCODE = 'OX400';
    END IF;
    SELECT count(*) INTO active FROM ocx.saga_instances i
     WHERE i.saga_name = drop_saga.name AND i.state IN ('running', 'compensating');
    IF active > 0 THEN
        RAISE EXCEPTION 'saga "%" has % active instances', name, active
            USING ERRCODE = 'OX402',
                  HINT = 'Wait for them to finish, or abort them with ocx.abort_saga.';
    END IF;
    DELETE FROM ocx.saga_definitions d WHERE d.name = drop_saga.name;
END
$fn$;
COMMENT ON FUNCTION ocx.drop_saga(text) IS
    'remove a saga definition that has no running or compensating instances (finished ones stay in the tables)';

-- ---------------------------------------------------------------------------
-- The engine
-- ---------------------------------------------------------------------------

-- Fill a data template: a string starting with "$" is replaced by the value
-- at that JSON path in ctx (JSON null when absent); "$$x" is the literal "$x".
CREATE FUNCTION ocx._saga_render(template jsonb, ctx jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s text;
BEGIN
    CASE jsonb_typeof(template)
    WHEN 'object' THEN
        RETURN coalesce((SELECT jsonb_object_agg(x.key, ocx._saga_render(x.value, ctx))
                           FROM jsonb_each(template) x), '{}');
    WHEN 'array' THEN
        RETURN coalesce((SELECT jsonb_agg(ocx._saga_render(x.v, ctx) ORDER BY x.n)
                           FROM jsonb_array_elements(template) WITH ORDINALITY x(v, n)), '[]');
    WHEN 'string' THEN
        s := template #>> '{}';
        IF left(s, 2) = '$$' THEN
            RETURN to_jsonb(substr(s, 2));
        ELSIF left(s, 1) = '$' THEN
            RETURN coalesce(jsonb_path_query_first(ctx, s::jsonpath), 'null');
        END IF;
        RETURN template;
    ELSE
        RETURN template;
    END CASE;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_render(jsonb, jsonb) IS
    'internal: fill a saga data template from {"saga_id", "input", "steps"}';

CREATE FUNCTION ocx._saga_log(saga_id uuid, step integer, step_name text, action text, state text,
                              command_id uuid DEFAULT NULL, event_id uuid DEFAULT NULL,
                              event_type text DEFAULT NULL, detail text DEFAULT NULL)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    INSERT INTO ocx.saga_steps (saga_id, step, step_name, action, state, command_id, event_id, event_type, detail)
        VALUES (_saga_log.saga_id, _saga_log.step, _saga_log.step_name, _saga_log.action, _saga_log.state,
                _saga_log.command_id, _saga_log.event_id, _saga_log.event_type, _saga_log.detail);
END;
COMMENT ON FUNCTION ocx._saga_log(uuid, integer, text, text, text, uuid, uuid, text, text) IS
    'internal: append a transition to ocx.saga_steps';
REVOKE ALL ON FUNCTION ocx._saga_log(uuid, integer, text, text, text, uuid, uuid, text, text) FROM PUBLIC;

-- Send step's command (or its compensation) for saga i, with an id derived
-- from (saga, step, do/undo): a repeated send is a no-op.
CREATE FUNCTION ocx._saga_send(i ocx.saga_instances, step integer, undo boolean, cause uuid) RETURNS uuid
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    st      jsonb := i.steps -> (step - 1);
    spec    jsonb := CASE WHEN undo THEN st->'compensation' ELSE st END;
    data    jsonb;
BEGIN
    IF spec ? 'data' THEN
        data := ocx._saga_render(spec->'data',
                                 jsonb_build_object('saga_id', i.saga_id, 'input', i.input, 'steps', i.results));
    ELSE
        data := i.input;
    END IF;
    RETURN ocx.send_command(spec->>'command', data,
                            correlation_id => i.saga_id,
                            causation_id => cause,
                            command_id => md5(i.saga_id::text || '/' || step::text
                                              || CASE WHEN undo THEN '/undo' ELSE '/do' END)::uuid,
                            metadata => jsonb_build_object('saga', i.saga_name, 'saga_step', st->>'name',
                                                           'compensation', undo));
END
$fn$;
COMMENT ON FUNCTION ocx._saga_send(ocx.saga_instances, integer, boolean, uuid) IS
    'internal: send a saga step''s command or compensation through the command queue';
REVOKE ALL ON FUNCTION ocx._saga_send(ocx.saga_instances, integer, boolean, uuid) FROM PUBLIC;

-- Send step k of saga i and make it the current step (storing i.results,
-- which the caller may have just extended).
CREATE FUNCTION ocx._saga_send_step(i ocx.saga_instances, k integer, cause uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cmd uuid := ocx._saga_send(i, k, false, cause);
BEGIN
    UPDATE ocx.saga_instances x
       SET current_step = k, command_id = cmd, results = i.results, updated_at = now(),
           deadline = now() + ((i.steps -> (k - 1)) ->> 'timeout')::interval
     WHERE x.saga_id = i.saga_id;
    PERFORM ocx._saga_log(i.saga_id, k, (i.steps -> (k - 1)) ->> 'name', 'step_sent', 'running', cmd);
END
$fn$;
COMMENT ON FUNCTION ocx._saga_send_step(ocx.saga_instances, integer, uuid) IS
    'internal: send a step''s command and make it the saga''s current step';
REVOKE ALL ON FUNCTION ocx._saga_send_step(ocx.saga_instances, integer, uuid) FROM PUBLIC;

-- Send the next compensation of a compensating saga, or finish it.
CREATE FUNCTION ocx._saga_next_compensation(id uuid, cause uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i   ocx.saga_instances;
    k   integer;
    cmd uuid;
BEGIN
    SELECT * INTO STRICT i FROM ocx.saga_instances x WHERE x.saga_id = id FOR UPDATE;
    IF cardinality(i.to_compensate) = 0 THEN
        UPDATE ocx.saga_instances x
           SET state = 'compensated', command_id = NULL, deadline = NULL, updated_at = now(),
               finished_at = now()
         WHERE x.saga_id = id;
        PERFORM ocx._saga_log(id, NULL, NULL, 'compensated', 'compensated');
        RETURN;
    END IF;
    k := i.to_compensate[1];
    cmd := ocx._saga_send(i, k, true, cause);
    UPDATE ocx.saga_instances x
       SET current_step = k, command_id = cmd, to_compensate = i.to_compensate[2:],
           deadline = NULL, updated_at = now()
     WHERE x.saga_id = id;
    PERFORM ocx._saga_log(id, k, (i.steps -> (k - 1)) ->> 'name', 'compensation_sent', 'compensating', cmd);
END
$fn$;
COMMENT ON FUNCTION ocx._saga_next_compensation(uuid, uuid) IS
    'internal: send the next compensation of a compensating saga (reverse step order), or mark it compensated';
REVOKE ALL ON FUNCTION ocx._saga_next_compensation(uuid, uuid) FROM PUBLIC;

-- Stop a running saga i (locked by the caller) and compensate its completed
-- steps in reverse order.  in_doubt: the current step's command may have
-- run (a timeout, an abort): a command still waiting in the queue is
-- cancelled, else the step is compensated too.
CREATE FUNCTION ocx._saga_compensate(i ocx.saga_instances, in_doubt boolean, action text,
                                     detail text, event_id uuid DEFAULT NULL,
                                     event_type text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    last    integer := i.current_step - 1;
    list    integer[];
    cname   text := (i.steps -> (i.current_step - 1)) ->> 'name';
BEGIN
    PERFORM ocx._saga_log(i.saga_id, i.current_step, cname, action, 'compensating', i.command_id,
                          event_id, event_type, detail);
    IF in_doubt AND i.command_id IS NOT NULL THEN
        -- waits for a worker or client that holds the command, then sees its outcome
        WITH cancelled AS (
            UPDATE ocx.commands c
               SET status = 'dead_letter', claimed_by = NULL, claimed_until = NULL,
                   last_error = 'cancelled by saga ' || i.saga_id::text, updated_at = now(),
                   finished_at = now()
             WHERE c.command_id = i.command_id AND c.status = 'pending'
            RETURNING c.command_id, c.attempts)
        INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
            SELECT x.command_id, 'dead_letter', x.attempts, 'ocx saga', 'cancelled by saga ' || i.saga_id::text
              FROM cancelled x;
        IF FOUND THEN
            PERFORM ocx._saga_log(i.saga_id, i.current_step, cname, 'step_cancelled', 'compensating',
                                  i.command_id, NULL, NULL, 'the command had not run yet');
        ELSIF EXISTS (SELECT 1 FROM ocx.commands c
                       WHERE c.command_id = i.command_id AND c.status <> 'dead_letter') THEN
            last := i.current_step;
        END IF;
    END IF;
    SELECT coalesce(array_agg(k ORDER BY k DESC), '{}') INTO list
      FROM generate_series(1, last) k
     WHERE (i.steps -> (k - 1)) ? 'compensation';
    UPDATE ocx.saga_instances x
       SET state = 'compensating', to_compensate = list, command_id = NULL, deadline = NULL,
           error = detail, updated_at = now()
     WHERE x.saga_id = i.saga_id;
    PERFORM ocx._saga_next_compensation(i.saga_id, event_id);
END
$fn$;
COMMENT ON FUNCTION ocx._saga_compensate(ocx.saga_instances, boolean, text, text, uuid, text) IS
    'internal: move a running saga to compensating and send its first compensation';
REVOKE ALL ON FUNCTION ocx._saga_compensate(ocx.saga_instances, boolean, text, text, uuid, text) FROM PUBLIC;

CREATE FUNCTION ocx.start_saga(name text, input jsonb DEFAULT '{}', saga_id uuid DEFAULT NULL) RETURNS uuid
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    d   ocx.saga_definitions;
    i   ocx.saga_instances;
    id  uuid := coalesce(start_saga.saga_id, gen_random_uuid());
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'saga name must not be null' USING ERRCODE = 'OX403';
    END IF;
    IF input IS NULL OR jsonb_typeof(input) <> 'object' THEN
        RAISE EXCEPTION 'saga input must be a JSON object'
            USING ERRCODE = 'OX403', HINT = 'Pass ''{}'' for a saga without input.';
    END IF;
    SELECT * INTO d FROM ocx.saga_definitions x WHERE x.name = start_saga.name FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'saga "%" does not exist', name
            USING ERRCODE = 'OX400', HINT = 'Define it with ocx.define_saga.';
    END IF;
    INSERT INTO ocx.saga_instances AS x (saga_id, saga_name, steps, input)
        VALUES (id, d.name, d.steps, start_saga.input)
        ON CONFLICT ON CONSTRAINT saga_instances_pkey DO NOTHING
        RETURNING * INTO i;
    IF NOT FOUND THEN
        -- an idempotent retry repeats the start exactly
        SELECT * INTO i FROM ocx.saga_instances x WHERE x.saga_id = id;
        IF i.saga_name = d.name AND i.input = start_saga.input THEN
            RETURN id;
        END IF;
        RAISE EXCEPTION 'saga id % is already used by another saga', id
            USING ERRCODE = 'OX405',
                  DETAIL = format('It is a "%s" saga with different input.', i.saga_name),
                  HINT = 'A retry must repeat the original start exactly; a new saga needs a new id.';
    END IF;
    PERFORM ocx._saga_log(id, NULL, NULL, 'started', 'running', NULL, NULL, NULL, NULL);
    PERFORM ocx._saga_send_step(i, 1, NULL);
    RETURN id;
END
$fn$;
COMMENT ON FUNCTION ocx.start_saga(text, jsonb, uuid) IS
    'start a saga: sends its first step''s command (correlation id = saga id) in this transaction; given ids make retries idempotent';

CREATE FUNCTION ocx.abort_saga(saga_id uuid, reason text DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i ocx.saga_instances;
BEGIN
    IF saga_id IS NULL THEN
        RAISE EXCEPTION 'saga id must not be null' USING ERRCODE = 'OX403';
    END IF;
    SELECT * INTO i FROM ocx.saga_instances x WHERE x.saga_id = abort_saga.saga_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'saga % does not exist', saga_id USING ERRCODE = 'OX404';
    END IF;
    IF i.state = 'compensating' THEN
        RETURN i.state;
    END IF;
    IF i.state <> 'running' THEN
        RAISE EXCEPTION 'saga % is already %', saga_id, i.state
            USING ERRCODE = 'OX402', DETAIL = 'Only a running saga can be aborted.';
    END IF;
    PERFORM ocx._saga_compensate(i, true, 'abort_requested',
                                 coalesce(reason, 'aborted by ' || current_user));
    SELECT x.state INTO i.state FROM ocx.saga_instances x WHERE x.saga_id = abort_saga.saga_id;
    RETURN i.state;
END
$fn$;
COMMENT ON FUNCTION ocx.abort_saga(uuid, text) IS
    'stop a running saga and compensate its completed steps (and the current one if its command ran); returns the new state';

-- An event correlated to a running saga: advance it on a success type of
-- its current step, compensate on a failure type, else ignore it.
CREATE FUNCTION ocx._saga_on_event(e ocx.events) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i   ocx.saga_instances;
    st  jsonb;
    nm  text;
BEGIN
    SELECT * INTO i FROM ocx.saga_instances x WHERE x.saga_id = e.correlation_id FOR UPDATE;
    IF NOT FOUND OR i.state <> 'running' THEN
        RETURN false;
    END IF;
    st := i.steps -> (i.current_step - 1);
    nm := st->>'name';
    IF st->'success' ? e.type THEN
        -- templates see the event as reads do: upcast to its type's current version
        i.results := i.results || jsonb_build_object(nm, ocx._upcast(e.type, e.schema_version, e.data));
        IF i.current_step = jsonb_array_length(i.steps) THEN
            UPDATE ocx.saga_instances x
               SET state = 'completed', results = i.results, command_id = NULL, deadline = NULL,
                   updated_at = now(), finished_at = now()
             WHERE x.saga_id = i.saga_id;
            PERFORM ocx._saga_log(i.saga_id, i.current_step, nm, 'step_succeeded', 'completed',
                                  i.command_id, e.event_id, e.type);
            PERFORM ocx._saga_log(i.saga_id, NULL, NULL, 'completed', 'completed');
        ELSE
            PERFORM ocx._saga_log(i.saga_id, i.current_step, nm, 'step_succeeded', 'running',
                                  i.command_id, e.event_id, e.type);
            PERFORM ocx._saga_send_step(i, i.current_step + 1, e.event_id);
        END IF;
        RETURN true;
    ELSIF st->'failure' ? e.type THEN
        PERFORM ocx._saga_compensate(i, false, 'step_failed',
                                     format('step "%s" failed: %s', nm, e.type), e.event_id, e.type);
        RETURN true;
    END IF;
    RETURN false;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_on_event(ocx.events) IS
    'internal: apply one event of the log to the running saga it is correlated to';
REVOKE ALL ON FUNCTION ocx._saga_on_event(ocx.events) FROM PUBLIC;

-- A saga whose transition raised an error (a data template that cannot be
-- filled, a command the queue refuses) is marked failed, so that one saga
-- cannot stop all the others.
CREATE FUNCTION ocx._saga_fail(id uuid, code text, message text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i ocx.saga_instances;
BEGIN
    UPDATE ocx.saga_instances x
       SET state = 'failed', command_id = NULL, deadline = NULL, updated_at = now(), finished_at = now(),
           error = format('%s: %s', code, message)
     WHERE x.saga_id = id AND x.state IN ('running', 'compensating')
    RETURNING * INTO i;
    IF FOUND THEN
        PERFORM ocx._saga_log(id, i.current_step, (i.steps -> (i.current_step - 1)) ->> 'name', 'failed',
                              'failed', NULL, NULL, NULL, format('%s: %s', code, message));
    END IF;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_fail(uuid, text, text) IS
    'internal: mark a saga failed after an error in one of its transitions';
REVOKE ALL ON FUNCTION ocx._saga_fail(uuid, text, text) FROM PUBLIC;

-- One round of the saga task: events after the cursor, then finished
-- compensations, then timeouts, and with check_dead_letters the step
-- commands that ended as dead letters (a slow path: the caller asks for it
-- about once a second, as it costs a lookup per running saga).  Returns the
-- number of transitions made plus max_events when the event batch was full
-- (the caller runs it again at once).
CREATE FUNCTION ocx._saga_run(max_events integer, check_dead_letters boolean) RETURNS integer
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cur     ocx.saga_cursor;
    horizon xid8;
    last_tx xid8;
    last_gp bigint;
    seen    integer := 0;
    done    integer := 0;
    e       ocx.events;
    r       record;
    i       ocx.saga_instances;
    cstatus text;
    cerror  text;
BEGIN
    SELECT * INTO cur FROM ocx.saga_cursor c FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ocx.saga_cursor AS c (id) VALUES (true) ON CONFLICT ON CONSTRAINT saga_cursor_pkey DO NOTHING;
        SELECT * INTO STRICT cur FROM ocx.saga_cursor c FOR UPDATE;
    END IF;
    -- every transaction below the horizon has finished: events before it
    -- can no longer appear behind the cursor
    horizon := pg_snapshot_xmin(pg_current_snapshot());

    IF NOT EXISTS (SELECT 1 FROM ocx.saga_instances x WHERE x.state = 'running') THEN
        -- nothing can match: jump to the end of the readable log
        SELECT e2.txid, e2.global_position INTO last_tx, last_gp
          FROM ocx.events e2
         WHERE e2.txid < horizon
           AND (e2.txid, e2.global_position) > (cur.txid, cur.global_position)
         ORDER BY e2.txid DESC, e2.global_position DESC
         LIMIT 1;
    ELSE
        SELECT b.txid, b.global_position, b.n INTO last_tx, last_gp, seen FROM (
            SELECT e2.txid, e2.global_position, count(*) OVER () AS n
              FROM ocx.events e2
             WHERE e2.txid < horizon
               AND (e2.txid, e2.global_position) > (cur.txid, cur.global_position)
             ORDER BY e2.txid, e2.global_position
             LIMIT max_events) b
         ORDER BY b.txid DESC, b.global_position DESC
         LIMIT 1;
        IF last_tx IS NOT NULL THEN
            FOR e IN
                SELECT e2.* FROM ocx.events e2
                  JOIN ocx.saga_instances x ON x.saga_id = e2.correlation_id AND x.state = 'running'
                 WHERE e2.txid < horizon
                   AND (e2.txid, e2.global_position) > (cur.txid, cur.global_position)
                   AND (e2.txid, e2.global_position) <= (last_tx, last_gp)
                 ORDER BY e2.txid, e2.global_position
            LOOP
                BEGIN
                    IF ocx._saga_on_event(e) THEN
                        done := done + 1;
                    END IF;
                EXCEPTION WHEN OTHERS THEN
                    PERFORM ocx._saga_fail(e.correlation_id, SQLSTATE, SQLERRM);
                    done := done + 1;
                END;
            END LOOP;
        END IF;
    END IF;
    IF last_tx IS NOT NULL THEN
        UPDATE ocx.saga_cursor c SET txid = last_tx, global_position = last_gp, updated_at = now();
    END IF;

    -- compensations whose command finished, and (on request) dead-lettered
    -- step commands; a lookup by primary key per active saga, then each
    -- candidate is locked and checked again
    FOR r IN
        SELECT x.saga_id
          FROM ocx.saga_instances x
          JOIN ocx.commands c ON c.command_id = x.command_id
         WHERE x.state = 'compensating' AND c.status IN ('succeeded', 'dead_letter')
        UNION ALL
        SELECT x.saga_id
          FROM ocx.saga_instances x
          JOIN ocx.commands c ON c.command_id = x.command_id
         WHERE check_dead_letters AND x.state = 'running' AND c.status = 'dead_letter'
    LOOP
        SELECT * INTO i FROM ocx.saga_instances x WHERE x.saga_id = r.saga_id FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        SELECT c.status, c.last_error INTO cstatus, cerror FROM ocx.commands c WHERE c.command_id = i.command_id;
        BEGIN
            IF i.state = 'running' AND cstatus = 'dead_letter' THEN
                PERFORM ocx._saga_compensate(i, false, 'step_dead_letter',
                                             format('the command of step "%s" was dead-lettered: %s',
                                                    (i.steps -> (i.current_step - 1)) ->> 'name', cerror));
            ELSIF i.state = 'compensating' AND cstatus = 'succeeded' THEN
                PERFORM ocx._saga_log(i.saga_id, i.current_step, (i.steps -> (i.current_step - 1)) ->> 'name',
                                      'compensation_succeeded', 'compensating', i.command_id);
                PERFORM ocx._saga_next_compensation(i.saga_id, i.command_id);
            ELSIF i.state = 'compensating' AND cstatus = 'dead_letter' THEN
                UPDATE ocx.saga_instances x
                   SET state = 'failed', command_id = NULL, updated_at = now(), finished_at = now(),
                       error = format('the compensation of step "%s" failed: %s',
                                      (i.steps -> (i.current_step - 1)) ->> 'name', cerror)
                 WHERE x.saga_id = i.saga_id;
                PERFORM ocx._saga_log(i.saga_id, i.current_step, (i.steps -> (i.current_step - 1)) ->> 'name',
                                      'compensation_failed', 'failed', i.command_id, NULL, NULL, cerror);
                PERFORM ocx._saga_log(i.saga_id, NULL, NULL, 'failed', 'failed');
            ELSE
                CONTINUE;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            PERFORM ocx._saga_fail(i.saga_id, SQLSTATE, SQLERRM);
        END;
        done := done + 1;
    END LOOP;

    -- steps whose timeout passed
    FOR i IN
        SELECT * FROM ocx.saga_instances x
         WHERE x.state = 'running' AND x.deadline < now()
           FOR UPDATE SKIP LOCKED
    LOOP
        BEGIN
            PERFORM ocx._saga_compensate(i, true, 'step_timed_out',
                                         format('step "%s" timed out after %s',
                                                (i.steps -> (i.current_step - 1)) ->> 'name',
                                                (i.steps -> (i.current_step - 1)) ->> 'timeout'));
        EXCEPTION WHEN OTHERS THEN
            PERFORM ocx._saga_fail(i.saga_id, SQLSTATE, SQLERRM);
        END;
        done := done + 1;
    END LOOP;

    RETURN done + CASE WHEN seen >= max_events THEN max_events ELSE 0 END;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_run(integer, boolean) IS
    'internal: one round of the saga task (events in log order, finished commands, timeouts); returns the work done';
REVOKE ALL ON FUNCTION ocx._saga_run(integer, boolean) FROM PUBLIC;

CREATE FUNCTION ocx._saga_tick() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_saga_tick';
COMMENT ON FUNCTION ocx._saga_tick() IS
    'internal: one round of the worker''s saga task, for tests and deployments without the worker; true when more is pending';
REVOKE ALL ON FUNCTION ocx._saga_tick() FROM PUBLIC;

CREATE VIEW ocx.saga_status AS
    SELECT i.saga_id, i.saga_name, i.state,
           CASE WHEN i.state IN ('running', 'compensating') THEN i.current_step END AS current_step,
           CASE WHEN i.state IN ('running', 'compensating')
                THEN (i.steps -> (i.current_step - 1)) ->> 'name' END AS step_name,
           pg_catalog.jsonb_array_length(i.steps) AS steps,
           i.command_id, c.status AS command_status,
           coalesce(i.finished_at, pg_catalog.now()) - i.started_at AS age,
           i.deadline, i.error, i.started_at, i.updated_at, i.finished_at,
           (SELECT pg_catalog.count(*) FROM ocx.saga_steps s WHERE s.saga_id = i.saga_id) AS transitions
      FROM ocx.saga_instances i
      LEFT JOIN ocx.commands c ON c.command_id = i.command_id;
COMMENT ON VIEW ocx.saga_status IS
    'each saga: state, current step, outstanding command and its status, age, deadline and last error';
-- ---------------------------------------------------------------------------
-- Observability: counters (shared memory, metrics.c), gauges read from the
-- subsystems' tables, the ocx.stats view, ocx.metrics() in the Prometheus
-- text exposition format, and ocx.trace(correlation_id).
-- See docs/observability.md.
-- ---------------------------------------------------------------------------

CREATE FUNCTION ocx._counters(OUT name text, OUT value bigint, OUT description text,
                              OUT reset_time timestamptz)
    RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_counters';
COMMENT ON FUNCTION ocx._counters() IS
    'internal: the shared-memory counters (zeros when ocx is not in shared_preload_libraries)';

CREATE FUNCTION ocx._metrics_enabled() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_metrics_enabled';
COMMENT ON FUNCTION ocx._metrics_enabled() IS
    'internal: true when the counters live in shared memory (ocx preloaded)';

CREATE FUNCTION ocx.reset_stats() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_reset_stats';
COMMENT ON FUNCTION ocx.reset_stats() IS
    'zero every ocx counter (cluster-wide); false when ocx is not preloaded';

-- Gauges: values read from tables at the time of the call.  The tables of
-- the subsystems are looked up with to_regclass, so this works whichever of
-- them are installed; every query text is a constant.  PARALLEL RESTRICTED:
-- its exception block needs a subtransaction, which a parallel worker cannot
-- start.
CREATE FUNCTION ocx._gauges(OUT name text, OUT labels jsonb, OUT value numeric, OUT description text)
    RETURNS SETOF record
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    saga_col  name;
    state_col name;
BEGIN
    name := 'shared_memory';
    labels := '{}';
    value := CASE WHEN ocx._metrics_enabled() THEN 1 ELSE 0 END;
    description := 'Whether ocx is in shared_preload_libraries and its counters count (1) or not (0).';
    RETURN NEXT;

    RETURN QUERY
        SELECT 'log_position'::text, '{}'::jsonb,
               (CASE WHEN s.is_called THEN s.last_value ELSE 0 END)::numeric,
               'The highest global position handed out so far.'::text
          FROM ocx.events_global_position_seq s;

    IF to_regclass('ocx.projection_status') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT g.name, jsonb_build_object('projection', p.name), g.value, g.description
              FROM ocx.projection_status p,
                   LATERAL (VALUES
                     ('projection_lag_events', p.lag_events::numeric,
                      'Events a projection has still to apply.'),
                     ('projection_lag_seconds', round(p.lag_seconds::numeric, 3),
                      'Age in seconds of the oldest event a projection has still to apply.'),
                     ('projection_dead_letters_parked', p.dead_letters::numeric,
                      'Events parked as dead letters for a projection.'),
                     ('projection_events_applied', p.events_applied::numeric,
                      'Events a projection has applied since it was defined or rebuilt.')
                   ) AS g(name, value, description)
            UNION ALL
            SELECT 'projection_state', jsonb_build_object('projection', p.name, 'state', p.state), 1,
                   'The state of a projection (1 for its current state).'
              FROM ocx.projection_status p
        $q$;
    END IF;

    IF to_regclass('ocx.subscription_partitions') IS NOT NULL
       AND to_regprocedure('ocx.stream_partition(text,integer)') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT 'subscription_lag_events', jsonb_build_object('subscription', s.name),
                   (SELECT count(*)
                      FROM ocx.subscription_partitions p
                      JOIN ocx.events e
                        ON (e.txid, e.global_position) > (p.acked_txid, p.acked_position)
                       AND ocx.stream_partition(e.stream_id, s.partitions) = p.partition
                     WHERE p.subscription = s.name
                       AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
                       AND (s.types IS NULL OR e.type = ANY (s.types))
                       AND (s.categories IS NULL OR ocx.category(e.stream_id) = ANY (s.categories))
                   )::numeric,
                   'Events a subscription has still to acknowledge (all its partitions).'
              FROM ocx.subscriptions s
        $q$;
    END IF;

    IF to_regclass('ocx.commands') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT 'commands', jsonb_build_object('status', c.status), count(*)::numeric,
                   'Commands in the queue by status.'
              FROM ocx.commands c
             GROUP BY c.status
        $q$;
    END IF;

    -- the sagas subsystem's view; its column names are looked up, not assumed
    SELECT (SELECT a.attname FROM pg_attribute a
             WHERE a.attrelid = to_regclass('ocx.saga_status') AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attname IN ('saga_name', 'saga', 'name')
             ORDER BY array_position(ARRAY['saga_name', 'saga', 'name']::name[], a.attname) LIMIT 1),
           (SELECT a.attname FROM pg_attribute a
             WHERE a.attrelid = to_regclass('ocx.saga_status') AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attname IN ('state', 'status')
             ORDER BY array_position(ARRAY['state', 'status']::name[], a.attname) LIMIT 1)
      INTO saga_col, state_col;
    IF saga_col IS NOT NULL AND state_col IS NOT NULL THEN
        RETURN QUERY EXECUTE format($q$
            SELECT 'sagas', jsonb_build_object('saga', s.%1$I, 'state', s.%2$I), count(*)::numeric,
                   'Saga instances by saga and state.'
              FROM ocx.saga_status s
             GROUP BY s.%1$I, s.%2$I
        $q$, saga_col, state_col);
    END IF;
EXCEPTION
    WHEN undefined_column OR undefined_function THEN
        -- a subsystem's tables changed shape: report what was gathered so far
        RAISE WARNING 'ocx._gauges: %', SQLERRM;
END
$$;
COMMENT ON FUNCTION ocx._gauges() IS
    'internal: gauges read from the ocx tables (lag per projection and subscription, commands, sagas)';

-- Command counters come from the status transitions of ocx.commands (when
-- the bus is installed), whoever makes them: SQL functions or the worker.
CREATE FUNCTION ocx._count_commands() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_count_commands';
COMMENT ON FUNCTION ocx._count_commands() IS
    'internal trigger: counts commands sent, succeeded, failed and dead-lettered';
DO $$
BEGIN
    IF pg_catalog.to_regclass('ocx.commands') IS NOT NULL THEN
        CREATE TRIGGER commands_count_sent AFTER INSERT ON ocx.commands
            FOR EACH ROW EXECUTE FUNCTION ocx._count_commands();
        CREATE TRIGGER commands_count_status AFTER UPDATE OF status ON ocx.commands
            FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION ocx._count_commands();
    END IF;
END
$$;

-- Saga counters likewise, from ocx.saga_instances when the sagas subsystem
-- is installed: INSERT = started, a change of the state column to completed,
-- compensated or failed = finished that way.
CREATE FUNCTION ocx._count_sagas() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_count_sagas';
COMMENT ON FUNCTION ocx._count_sagas() IS
    'internal trigger: counts sagas started, completed, compensated and failed';
DO $$
DECLARE
    col text;
BEGIN
    SELECT a.attname INTO col
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('ocx.saga_instances')
       AND a.attname OPERATOR(pg_catalog.=) ANY (ARRAY['state', 'status']::pg_catalog.name[])
       AND NOT a.attisdropped
     ORDER BY a.attname LIMIT 1;
    IF col IS NOT NULL THEN
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER saga_instances_count_started AFTER INSERT ON ocx.saga_instances '
            'FOR EACH ROW EXECUTE FUNCTION ocx._count_sagas(%L)', col);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER saga_instances_count_finished AFTER UPDATE OF %1$I ON ocx.saga_instances '
            'FOR EACH ROW WHEN (OLD.%1$I IS DISTINCT FROM NEW.%1$I) '
            'EXECUTE FUNCTION ocx._count_sagas(%1$L)', col);
    END IF;
END
$$;

CREATE VIEW ocx.stats AS
    SELECT c.name, 'counter'::text AS kind, '{}'::jsonb AS labels, c.value::numeric AS value,
           c.description, c.reset_time
      FROM ocx._counters() c
    UNION ALL
    SELECT g.name, 'gauge', g.labels, g.value, g.description, NULL
      FROM ocx._gauges() g;
COMMENT ON VIEW ocx.stats IS
    'ocx counters (cluster-wide, since server start or ocx.reset_stats) and gauges (per projection, subscription, saga)';

-- Escape a label value or help text for the exposition format.
CREATE FUNCTION ocx._prometheus_escape(s text, quote boolean) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN quote
                THEN pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(s, E'\\', E'\\\\'),
                                                           '"', E'\\"'), E'\n', E'\\n')
                ELSE pg_catalog.replace(pg_catalog.replace(s, E'\\', E'\\\\'), E'\n', E'\\n')
           END;
COMMENT ON FUNCTION ocx._prometheus_escape(text, boolean) IS
    'internal: escape backslash, newline (and double quote in label values) for Prometheus';

CREATE FUNCTION ocx.metrics() RETURNS text
    LANGUAGE sql VOLATILE PARALLEL RESTRICTED
BEGIN ATOMIC
    WITH s AS (
        SELECT 'ocx_' OPERATOR(pg_catalog.||) st.name
                      OPERATOR(pg_catalog.||) CASE WHEN st.kind OPERATOR(pg_catalog.=) 'counter'
                                                   THEN '_total' ELSE '' END AS family,
               st.kind, st.description, st.value,
               COALESCE('{' OPERATOR(pg_catalog.||)
                        (SELECT pg_catalog.string_agg(l.key OPERATOR(pg_catalog.||) '="'
                                    OPERATOR(pg_catalog.||) ocx._prometheus_escape(l.value, true)
                                    OPERATOR(pg_catalog.||) '"', ',' ORDER BY l.key)
                           FROM pg_catalog.jsonb_each_text(st.labels) l)
                        OPERATOR(pg_catalog.||) '}', '') AS labels
          FROM ocx.stats st
    ), families AS (
        SELECT s.family,
               '# HELP ' OPERATOR(pg_catalog.||) s.family OPERATOR(pg_catalog.||) ' '
               OPERATOR(pg_catalog.||) ocx._prometheus_escape(pg_catalog.min(s.description), false)
               OPERATOR(pg_catalog.||) E'\n# TYPE ' OPERATOR(pg_catalog.||) s.family
               OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) pg_catalog.min(s.kind)
               OPERATOR(pg_catalog.||) E'\n'
               OPERATOR(pg_catalog.||) pg_catalog.string_agg(s.family OPERATOR(pg_catalog.||) s.labels
                                           OPERATOR(pg_catalog.||) ' '
                                           OPERATOR(pg_catalog.||) s.value::text,
                                           E'\n' ORDER BY s.labels)
               OPERATOR(pg_catalog.||) E'\n' AS block
          FROM s
         GROUP BY s.family
    )
    SELECT pg_catalog.string_agg(f.block, '' ORDER BY f.family) FROM families f;
END;
COMMENT ON FUNCTION ocx.metrics() IS
    'ocx.stats in the Prometheus text exposition format (version 0.0.4): serve it from an exporter or a scrape endpoint';

-- ---------------------------------------------------------------------------
-- Tracing: the causal tree of one correlation id.
-- ---------------------------------------------------------------------------

-- The nodes of a trace: events, and commands when the bus is installed.
-- Two constant query texts, chosen by whether ocx.commands exists; the
-- correlation id is a parameter ($1), never part of the text.
CREATE FUNCTION ocx.trace(correlation_id uuid)
    RETURNS TABLE (depth integer, kind text, id uuid, causation_id uuid, type text,
                   stream_id text, stream_version bigint, global_position bigint,
                   "time" timestamptz, traceparent text, status text)
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    events_sql constant text := $q$
        SELECT 'event'::text AS kind, e.event_id AS id, e.causation_id, e.type, e.stream_id,
               e.stream_version, e.global_position, e.time,
               e.metadata ->> 'traceparent' AS traceparent, NULL::text AS status
          FROM ocx.events e
         WHERE e.correlation_id = $1 $q$;
    commands_sql constant text := $q$
        UNION ALL
        SELECT 'command', c.command_id, c.causation_id, c.type, NULL, NULL, NULL, c.created_at,
               c.metadata ->> 'traceparent', c.status
          FROM ocx.commands c
         WHERE c.correlation_id = $1 $q$;
    tree_sql constant text := $q$
        ), ordered AS (
            SELECT n.*, row_number() OVER (ORDER BY n.time, n.global_position NULLS LAST, n.id) AS ord
              FROM nodes n
        ), tree AS (
            SELECT 0 AS depth, ARRAY[o.ord] AS path, o.*
              FROM ordered o
             WHERE o.causation_id IS NULL OR o.causation_id = o.id
                OR NOT EXISTS (SELECT FROM ordered p WHERE p.id = o.causation_id)
            UNION ALL
            SELECT t.depth + 1, t.path || c.ord, c.*
              FROM tree t
              JOIN ordered c ON c.causation_id = t.id AND c.id <> t.id
             WHERE c.ord <> ALL (t.path)
        )
        SELECT t.depth, t.kind, t.id, t.causation_id, t.type, t.stream_id, t.stream_version,
               t.global_position, t.time, t.traceparent, t.status
          FROM tree t
         ORDER BY t.path $q$;
BEGIN
    IF to_regclass('ocx.commands') IS NULL THEN
        RETURN QUERY EXECUTE 'WITH RECURSIVE nodes AS (' || events_sql || tree_sql USING correlation_id;
    ELSE
        RETURN QUERY EXECUTE 'WITH RECURSIVE nodes AS (' || events_sql || commands_sql || tree_sql
            USING correlation_id;
    END IF;
END
$fn$;
COMMENT ON FUNCTION ocx.trace(uuid) IS
    'the causal tree of one correlation id: its events (and commands), depth-first by causation, with each one''s traceparent';
-- ---------------------------------------------------------------------------
-- Security: the roles ocx_reader, ocx_writer, ocx_admin and their grants.
--
-- This part runs after every other part.  It does not list functions one by
-- one: ocx._apply_privileges() classifies every routine, table, view and
-- sequence in schema ocx by the rule below (docs/security.md has it as a
-- table), so a function another subsystem adds is covered the day it lands.
-- Upgrade scripts call it again as their last statement.
--
-- Routines, first match wins:
--   1. trigger functions                       no grant (triggers fire without EXECUTE)
--   2. a name in the reader / writer / admin patterns below  that role
--   3. a name starting with "_" (internal)     the least privileged role that
--      can reach it: a role's routine whose body calls it (SQL-standard bodies
--      through pg_depend, other languages by the text "ocx._name("), or a view
--      that uses it (views are readable by ocx_reader); repeated until nothing
--      changes.  Reached by nobody: no grant (superuser and the workers only).
--   4. anything else                           ocx_admin (fail closed)
-- PUBLIC keeps nothing.
--
-- Tables, views and sequences:
--   ocx_reader  SELECT on every table, view and sequence
--   ocx_writer  INSERT on ocx.events (through ocx.append*; triggers refuse
--               UPDATE/DELETE/TRUNCATE), INSERT/UPDATE on ocx.streams,
--               INSERT/UPDATE/DELETE on the state tables named in the writer
--               table pattern, UPDATE (created_at) on the definitions its
--               functions lock (the lock pattern), USAGE on sequences
--   ocx_admin   INSERT/UPDATE/DELETE on every other table
-- Row-level security (10_log.sql) keeps tenants apart inside those grants.
-- ---------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_reader') THEN
        CREATE ROLE ocx_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_writer') THEN
        CREATE ROLE ocx_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_admin') THEN
        CREATE ROLE ocx_admin NOLOGIN;
    END IF;
    -- membership is idempotent: GRANT of an existing membership only notices
    IF NOT pg_catalog.pg_has_role('ocx_writer', 'ocx_reader', 'MEMBER') THEN
        GRANT ocx_reader TO ocx_writer;
    END IF;
    IF NOT pg_catalog.pg_has_role('ocx_admin', 'ocx_writer', 'MEMBER') THEN
        GRANT ocx_writer TO ocx_admin;
    END IF;
END
$$;

-- Per-stream state of the other subsystems follows its stream's tenant: a
-- row is visible when its stream is (the policy's sub-select on ocx.streams
-- is itself subject to the streams policy).  Rows without a stream (NULL
-- stream_id) are visible to all.  Applied to the tables below when they
-- exist and have a stream_id column.
DO $$
DECLARE
    t    text;
    qual text;
BEGIN
    FOREACH t IN ARRAY ARRAY['snapshots', 'dead_letters'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('ocx.' OPERATOR(pg_catalog.||) t)
                      AND a.attname OPERATOR(pg_catalog.=) 'stream_id' AND NOT a.attisdropped) THEN
            EXECUTE pg_catalog.format('ALTER TABLE ocx.%I ENABLE ROW LEVEL SECURITY', t);
            EXECUTE pg_catalog.format('ALTER TABLE ocx.%I FORCE ROW LEVEL SECURITY', t);
            qual := pg_catalog.format('stream_id IS NULL OR EXISTS (SELECT FROM ocx.streams s '
                                      'WHERE s.stream_id OPERATOR(pg_catalog.=) %I.stream_id)', t);
            -- dead letters are managed by ocx_admin across tenants (retry,
            -- rebuild), so its members see all of them
            IF t OPERATOR(pg_catalog.=) 'dead_letters' THEN
                qual := qual OPERATOR(pg_catalog.||)
                        ' OR (SELECT pg_catalog.pg_has_role(''ocx_admin'', ''MEMBER''))';
            END IF;
            EXECUTE pg_catalog.format(
                'CREATE POLICY %I ON ocx.%I FOR ALL USING (%s) WITH CHECK (%s)',
                t OPERATOR(pg_catalog.||) '_tenant', t, qual, qual);
            EXECUTE pg_catalog.format(
                'COMMENT ON POLICY %I ON ocx.%I IS %L', t OPERATOR(pg_catalog.||) '_tenant', t,
                'a row is visible when its stream is (the stream''s tenant is the session''s ocx.tenant)'
                OPERATOR(pg_catalog.||) CASE WHEN t OPERATOR(pg_catalog.=) 'dead_letters'
                                             THEN '; members of ocx_admin see all' ELSE '' END);
        END IF;
    END LOOP;
END
$$;

-- The classification rule as data, so that tests and docs can read it.
CREATE FUNCTION ocx.privilege_rules()
    RETURNS TABLE (kind text, pattern text, grantee text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.kind, r.pattern, r.grantee
      FROM (VALUES
        ('routine', '^(read_|stream_version$|category$|to_cloudevent$|load$|last_load$|upcast$|'
                    'cursor|txid$|global_position$|stream_partition$|worker_status$|'
                    'trace$|metrics$|stats$|privilege_rules$)', 'ocx_reader'),
        ('routine', '^(append|send_command$|publish$|poll$|ack$|nack$|claim_|complete_|fail_|'
                    'start_saga$)', 'ocx_writer'),
        ('routine', '^(define_|drop_|create_|rebuild_|pause_|resume_|retry_|snapshot|reset_)',
                    'ocx_admin'),
        ('lock',    '^(subscriptions|saga_definitions)$', 'ocx_writer'),
        ('table',   '^(snapshots|commands|command_history|subscription_partitions|'
                    'subscription_consumers|saga_instances|saga_steps|saga_timeouts)$', 'ocx_writer')
      ) AS r(kind, pattern, grantee);
END;
COMMENT ON FUNCTION ocx.privilege_rules() IS
    'the name patterns ocx._apply_privileges() grants by (see docs/security.md)';

CREATE FUNCTION ocx._apply_privileges() RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ns      oid := 'ocx'::regnamespace;
    r       record;
    changed boolean;
    roles   text[] := ARRAY['ocx_reader', 'ocx_writer', 'ocx_admin'];
BEGIN
    -- 1-4: one level per routine (1 reader, 2 writer, 3 admin, 4 nobody)
    CREATE TEMP TABLE IF NOT EXISTS ocx_privilege_levels (fn oid PRIMARY KEY, name text, lvl int)
        ON COMMIT DROP;
    TRUNCATE pg_temp.ocx_privilege_levels;
    INSERT INTO pg_temp.ocx_privilege_levels
    SELECT p.oid, p.proname,
           CASE WHEN p.prorettype = 'pg_catalog.trigger'::regtype THEN 4
                ELSE COALESCE((SELECT CASE x.grantee WHEN 'ocx_reader' THEN 1
                                                     WHEN 'ocx_writer' THEN 2 ELSE 3 END
                                 FROM ocx.privilege_rules() x
                                WHERE x.kind = 'routine' AND p.proname ~ x.pattern
                                ORDER BY 1 LIMIT 1),
                              CASE WHEN p.proname LIKE '\_%' THEN 4 ELSE 3 END)
           END
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = ns;

    -- internal routines views use: readers query views, the view's function
    -- calls run with the reader's privileges
    UPDATE pg_temp.ocx_privilege_levels l SET lvl = 1
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_rewrite rw ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND rw.oid = d.objid
      JOIN pg_catalog.pg_class c ON c.oid = rw.ev_class AND c.relnamespace = ns
     WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = l.fn
       AND l.name LIKE '\_%' AND l.lvl > 1;

    -- internal routines called by granted routines, to a fixpoint
    LOOP
        changed := false;
        FOR r IN
            SELECT l.fn, min(c.lvl) AS lvl
              FROM pg_temp.ocx_privilege_levels l
              JOIN pg_temp.ocx_privilege_levels c ON c.lvl < l.lvl
              JOIN pg_catalog.pg_proc cp ON cp.oid = c.fn
             WHERE l.name LIKE '\_%'
               AND (EXISTS (SELECT FROM pg_catalog.pg_depend d
                             WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = c.fn
                               AND d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = l.fn)
                    OR (cp.prosqlbody IS NULL
                        AND cp.prolang NOT IN (SELECT g.oid FROM pg_catalog.pg_language g
                                                WHERE g.lanname IN ('internal', 'c'))
                        AND strpos(cp.prosrc, 'ocx.' || l.name || '(') > 0))
             GROUP BY l.fn
        LOOP
            UPDATE pg_temp.ocx_privilege_levels l SET lvl = r.lvl WHERE l.fn = r.fn AND l.lvl > r.lvl;
            IF FOUND THEN
                changed := true;
            END IF;
        END LOOP;
        EXIT WHEN NOT changed;
    END LOOP;

    EXECUTE 'REVOKE ALL ON ALL ROUTINES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    FOR r IN SELECT l.fn, l.lvl FROM pg_temp.ocx_privilege_levels l WHERE l.lvl < 4 LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %I', r.fn::regprocedure, roles[r.lvl]);
    END LOOP;

    -- tables, views, sequences
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    EXECUTE 'GRANT USAGE ON SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT SELECT ON ALL SEQUENCES IN SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT USAGE ON ALL SEQUENCES IN SCHEMA ocx TO ocx_writer';
    EXECUTE 'GRANT INSERT ON ocx.events TO ocx_writer';
    EXECUTE 'GRANT INSERT, UPDATE ON ocx.streams TO ocx_writer';
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relname
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace = ns AND c.relkind IN ('r', 'p')
           AND c.relname NOT IN ('events', 'streams')
    LOOP
        -- definitions that writer functions lock (SELECT ... FOR NO KEY
        -- UPDATE needs UPDATE on some column): UPDATE of created_at only
        IF EXISTS (SELECT FROM ocx.privilege_rules() x
                    WHERE x.kind = 'lock' AND r.relname ~ x.pattern)
           AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = r.rel AND a.attname = 'created_at' AND NOT a.attisdropped) THEN
            EXECUTE format('GRANT UPDATE (created_at) ON %s TO ocx_writer', r.rel);
        END IF;
        IF EXISTS (SELECT FROM ocx.privilege_rules() x
                    WHERE x.kind = 'table' AND r.relname ~ x.pattern) THEN
            EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO ocx_writer', r.rel);
        ELSE
            EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO ocx_admin', r.rel);
        END IF;
    END LOOP;
    DROP TABLE pg_temp.ocx_privilege_levels;
END
$$;
COMMENT ON FUNCTION ocx._apply_privileges() IS
    'internal: grant every ocx routine, table, view and sequence to ocx_reader/ocx_writer/ocx_admin by ocx.privilege_rules(); run by the install and every upgrade script';

SELECT ocx._apply_privileges();
