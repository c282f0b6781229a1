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
    deleted     boolean NOT NULL DEFAULT false,
    head        bytea,              -- the hash chain's head (84_integrity.sql)
    hidden_through bigint NOT NULL DEFAULT 0 CHECK (hidden_through >= 0)
);
CREATE INDEX streams_category_idx ON ocx.streams (category);

COMMENT ON TABLE ocx.streams IS 'one row per stream: its version; the row is the stream''s append lock';
COMMENT ON COLUMN ocx.streams.deleted IS 'a tombstone: the stream was hard-deleted (ocx.delete_stream) and takes no more events';
COMMENT ON COLUMN ocx.streams.hidden_through IS 'the last soft-deleted version (ocx.delete_stream): stream reads and loads start after it';

SELECT pg_catalog.pg_extension_config_dump('ocx.events', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.events_global_position_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.streams', '');

-- The log xid space (docs/architecture.md, "Log order across clusters"):
-- events store their writer's transaction id plus xid_offset, and readers
-- compare with their snapshot's xmin plus xid_offset.  The offset is 0 until
-- a restore: the row is dumped with the data, and the restore's COPY into
-- the row CREATE EXTENSION made raises it by 2^48 above both, so that every
-- new transaction orders after every restored event in any cluster.
CREATE TABLE ocx.log_space (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    xid_offset  bigint NOT NULL DEFAULT 0 CHECK (xid_offset >= 0),
    restores    integer NOT NULL DEFAULT 0 CHECK (restores >= 0),
    restored_at timestamptz
);
INSERT INTO ocx.log_space DEFAULT VALUES;
COMMENT ON TABLE ocx.log_space IS
    'one row: the offset from this cluster''s transaction ids to the log''s (0 until the database is restored)';
COMMENT ON COLUMN ocx.log_space.xid_offset IS
    'added to a transaction id to give its log txid; raised by 2^48 at each restore';
COMMENT ON COLUMN ocx.log_space.restores IS 'how many restores this database''s log has been through';
SELECT pg_catalog.pg_extension_config_dump('ocx.log_space', '');

CREATE FUNCTION ocx._log_space_restore() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE ocx.log_space s
       SET xid_offset = GREATEST(s.xid_offset, NEW.xid_offset) OPERATOR(pg_catalog.+) 281474976710656,
           restores = GREATEST(s.restores, NEW.restores) OPERATOR(pg_catalog.+) 1,
           restored_at = pg_catalog.now()
     WHERE s.id;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION ocx._log_space_restore() IS
    'trigger: a restore''s COPY into ocx.log_space raises the offset by 2^48 above the restored and the existing one instead of failing on its key';
CREATE TRIGGER log_space_restore BEFORE INSERT ON ocx.log_space
    FOR EACH ROW EXECUTE FUNCTION ocx._log_space_restore();

CREATE FUNCTION ocx._log_space_changed() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_log_space_changed';
COMMENT ON FUNCTION ocx._log_space_changed() IS
    'internal trigger: every backend rereads the log xid offset';
CREATE TRIGGER log_space_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.log_space
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._log_space_changed();

CREATE FUNCTION ocx.log_txid() RETURNS xid8
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'ocx_log_txid';
COMMENT ON FUNCTION ocx.log_txid() IS
    'the current transaction''s id in the log xid space (pg_current_xact_id() plus ocx.log_space.xid_offset); assigns one like pg_current_xact_id()';
CREATE FUNCTION ocx.log_horizon() RETURNS xid8
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'ocx_log_horizon';
COMMENT ON FUNCTION ocx.log_horizon() IS
    'the snapshot''s xmin in the log xid space (passing over ocx''s bookkeeping transactions, which never write to the log): every event with a txid below it is committed or gone, so readers see only those';

-- The long-transaction stall (docs/projections.md): the log horizon is the
-- oldest transaction id still running in the cluster (other than the
-- caller's own and ocx's bookkeeping transactions, the bystanders), so the transaction that holds it is the session, worker
-- or prepared transaction with the oldest xid.  Read from pg_stat_activity
-- and pg_prepared_xacts with their rules: every role sees the pid and the
-- xid, the age of another role's session needs pg_read_all_stats.  One row,
-- all NULL when no transaction holds an xid.
CREATE FUNCTION ocx._horizon_appenders(OUT pid integer, OUT xid xid) RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'ocx_horizon_appenders';
COMMENT ON FUNCTION ocx._horizon_appenders() IS
    'internal: with ocx.horizon = ''appenders'', the appending transactions of this database that hold the horizon (pid, xid)';

-- Bystanders: ocx's own bookkeeping transactions (the bus unit), which can
-- never write to the log and so hold back no reader (src/appenders.c).
CREATE FUNCTION ocx._horizon_bystanders(OUT pid integer, OUT xid xid) RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'ocx_horizon_bystanders';
COMMENT ON FUNCTION ocx._horizon_bystanders() IS
    'internal: the processes whose running transaction is a bystander, and its xid if it has one (it can never write to the log, so it holds back no reader''s horizon)';
CREATE FUNCTION ocx._bystander() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'ocx_bystander';
COMMENT ON FUNCTION ocx._bystander() IS
    'internal: declare the calling transaction a bystander (before it takes an xid; true when it is one): it holds back no reader''s horizon and cannot write to the log';

CREATE FUNCTION ocx.horizon_holder(OUT pid integer, OUT xact_age interval, OUT backend_xid xid,
                                   OUT datname name, OUT prepared_gid text)
    RETURNS record
    LANGUAGE sql VOLATILE PARALLEL RESTRICTED
BEGIN ATOMIC
    SELECT h.pid,
           CASE WHEN h.since IS NOT NULL
                THEN GREATEST(pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) h.since, '0'::interval)
           END,
           h.xid, h.datname, h.gid
      FROM (SELECT a.pid, a.xact_start AS since, a.backend_xid AS xid, a.datname, NULL::text AS gid
              FROM pg_catalog.pg_stat_activity a
             WHERE a.backend_xid IS NOT NULL
               AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
               AND a.pid OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT b.pid FROM ocx._horizon_bystanders() b))
               AND (pg_catalog.current_setting('ocx.horizon', true) IS DISTINCT FROM 'appenders'
                    OR a.pid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ap.pid FROM ocx._horizon_appenders() ap)))
            UNION ALL
            SELECT NULL::integer, x.prepared, x.transaction, x.database, x.gid
              FROM pg_catalog.pg_prepared_xacts x
             WHERE pg_catalog.current_setting('ocx.horizon', true) IS DISTINCT FROM 'appenders') h
     ORDER BY pg_catalog.age(h.xid) DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx.horizon_holder() IS
    'the transaction that holds the log horizon (the oldest running xid in the cluster other than ocx''s bookkeeping transactions, the bystanders; with ocx.horizon = ''appenders'', the oldest appending transaction of this database): its backend pid (NULL for a prepared transaction), age, xid, database and prepared gid; all NULL when none';

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

CREATE FUNCTION ocx._direct_appends() RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_direct_appends';
COMMENT ON FUNCTION ocx._direct_appends() IS
    'internal: how many appends this backend wrote by the direct path (src/directappend.c), for tests';

CREATE FUNCTION ocx.append_cloudevents(stream_id text, expected_version bigint, ce jsonb)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_append_cloudevents';
COMMENT ON FUNCTION ocx.append_cloudevents(text, bigint, jsonb) IS
    'append structured-mode CloudEvents 1.0 JSON (one event or a batch array); returns the new version';

-- Read-your-writes: the cursor of what this session appended last, for
-- ocx.wait_for (docs/projections.md#read-your-writes).
CREATE FUNCTION ocx.last_append_cursor() RETURNS ocx.cursor
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_last_append_cursor';
COMMENT ON FUNCTION ocx.last_append_cursor() IS
    'the cursor of the last event this session''s last append stored (or found stored, for an idempotent retry); kept after commit until the next append; NULL before any append and after the appending (sub)transaction rolled back';

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
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
CREATE POLICY streams_tenant ON ocx.streams FOR ALL
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
COMMENT ON POLICY events_tenant ON ocx.events IS
    'a session reads and appends the events of its ocx.tenant (none set: untenanted events); UPDATE and DELETE reach the immutability trigger';
COMMENT ON POLICY streams_tenant ON ocx.streams IS 'a session sees and advances the streams of its ocx.tenant only';
