
-- ---------------------------------------------------------------------------
-- One vocabulary (issue 13): the one name rule (OX500) in every define_X,
-- define_command_handler and define_subscription create or replace, every
-- drop_X(name, if_exists), one parameter name per concept (type, <kind>_id),
-- create_subscription deprecated (OX501).  After 90_security: that fragment
-- (re)creates several of the functions changed here.  A renamed parameter
-- needs DROP FUNCTION + CREATE; 99_privileges re-applies the grant rule.
-- ---------------------------------------------------------------------------
-- The one name rule (src/names.c): every define_X calls it before it writes.
CREATE FUNCTION ocx._check_name(kind text, name text) RETURNS text
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_name';
COMMENT ON FUNCTION ocx._check_name(text, text) IS
    'internal: name when it follows the one name rule (1 to 63 bytes of letters, digits, "_", ".", ":", "-", starting with a letter or "_"), else raises OX500';


CREATE OR REPLACE FUNCTION ocx.define_event_type(type text, schema_version integer, schema jsonb DEFAULT NULL)
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
    PERFORM ocx._check_name('event type', type);
    IF schema_version IS NULL OR schema_version OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX111',
            MESSAGE = pg_catalog.format('schema version of event type "%s" must be a positive integer', type),
            DETAIL = pg_catalog.format('Got %s.', COALESCE(schema_version::text, 'NULL'));
    END IF;
    IF schema_version OPERATOR(pg_catalog.>) 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX112',
            MESSAGE = pg_catalog.format('schema version of event type "%s" is out of bounds', type),
            DETAIL = pg_catalog.format('Schema versions are limited to 10000; got %s.', schema_version),
            HINT = 'Move the type forward one version at a time.';
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
                HINT = 'Define a new version with an upcaster from the previous one; to lower a version, see "Lowering a version" in docs/contracts.md.';
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


CREATE OR REPLACE FUNCTION ocx._define_aggregate(aggregate_type text, apply regprocedure DEFAULT NULL,
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
    PERFORM ocx._check_name('aggregate type', aggregate_type);
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
     WHERE a.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ocx.aggregates (aggregate_type, apply, reducer, initial_state, snapshot_every, definer)
        VALUES (aggregate_type, apply, reducer, initial_state, snapshot_every, ocx._caller());
    ELSIF old.apply IS NOT DISTINCT FROM apply AND old.reducer IS NOT DISTINCT FROM reducer
          AND old.initial_state OPERATOR(pg_catalog.=) initial_state
          AND old.definer OPERATOR(pg_catalog.=) ocx._caller() THEN
        -- the fold is unchanged: snapshots stay valid
        IF old.snapshot_every IS DISTINCT FROM snapshot_every THEN
            UPDATE ocx.aggregates a SET snapshot_every = _define_aggregate.snapshot_every
             WHERE a.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type;
        END IF;
    ELSE
        -- a changed fold: no stale state may ever be read again
        UPDATE ocx.aggregates a
           SET apply = _define_aggregate.apply, reducer = _define_aggregate.reducer,
               initial_state = _define_aggregate.initial_state,
               snapshot_every = _define_aggregate.snapshot_every,
               definer = ocx._caller(),
               definition_version = a.definition_version OPERATOR(pg_catalog.+) 1,
               defined_at = pg_catalog.now()
         WHERE a.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type;
        DELETE FROM ocx.snapshots s
         WHERE s.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type;
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx._define_aggregate(text, regprocedure, jsonb, integer, jsonb) IS
    'internal: the body of ocx.define_aggregate, run as ocx_owner; records the caller (ocx._caller()) as the definer';


DROP FUNCTION ocx.define_aggregate(text, regprocedure, jsonb, integer, jsonb);
-- Runs with ocx_owner's rights and records its caller: see src/security.c.
CREATE FUNCTION ocx.define_aggregate(type text, apply regprocedure DEFAULT NULL,
                                     initial_state jsonb DEFAULT '{}', snapshot_every integer DEFAULT NULL,
                                     reducer jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_aggregate(text, regprocedure, jsonb, integer, jsonb) IS
    'define (or redefine) an aggregate type: apply(state jsonb, event ocx.event) -> jsonb or declarative reducer rules; redefinition drops its snapshots';


DROP FUNCTION ocx.load(text, text, bigint, timestamptz);
CREATE FUNCTION ocx.load(type text, stream_id text, as_of_version bigint DEFAULT NULL,
                         as_of_time timestamptz DEFAULT NULL,
                         OUT state jsonb, OUT version bigint)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_load';
COMMENT ON FUNCTION ocx.load(text, text, bigint, timestamptz) IS
    'the aggregate''s state after replaying the stream (from the newest usable snapshot), optionally as of a version or a time';


DROP FUNCTION ocx.snapshot(text, text);
CREATE FUNCTION ocx.snapshot(type text, stream_id text) RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_snapshot';
COMMENT ON FUNCTION ocx.snapshot(text, text) IS 'store a snapshot of the aggregate''s current state; returns its version';


CREATE OR REPLACE FUNCTION ocx._define_module(name text, definition jsonb) RETURNS void
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
    PERFORM ocx._check_name('module', name);
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
                                     ocx._regprocedure_as(x OPERATOR(pg_catalog.->>) 'transform', ocx._caller()),
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
                                     ocx._regprocedure_as(x OPERATOR(pg_catalog.->>) 'apply', ocx._caller()),
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
COMMENT ON FUNCTION ocx._define_module(text, jsonb) IS
    'internal: the body of ocx.define_module, run as ocx_owner; what it defines records the caller as definer';


CREATE OR REPLACE FUNCTION ocx._define_projection(name text, handler regprocedure, types text[] DEFAULT NULL,
                                      categories text[] DEFAULT NULL, mode text DEFAULT 'async',
                                      retry jsonb DEFAULT NULL, reset regprocedure DEFAULT NULL,
                                      partitions integer DEFAULT 1, tables regclass[] DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    policy jsonb;
    h pg_proc;
    old ocx.projections;
    ckpt record;
    table_names text[] := ocx._projection_tables(tables);
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'invalid projection name NULL'
            USING ERRCODE = 'OX201',
            DETAIL = 'A projection name is 1 to 63 letters, digits, "_", ".", ":" or "-", starting with a letter or "_".';
    END IF;
    -- the one name rule of every named object (src/names.c): OX500
    PERFORM ocx._check_name('projection', name);
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
    IF NOT has_function_privilege(ocx._caller(), handler, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for projection handler %', handler USING ERRCODE = '42501';
    END IF;
    IF reset IS NOT NULL AND (SELECT pronargs FROM pg_proc WHERE oid = reset) <> 0 THEN
        RAISE EXCEPTION 'projection reset function % must take no arguments', reset
            USING ERRCODE = 'OX201', HINT = 'Declare it as reset() RETURNS void; it empties the read model.';
    END IF;
    IF reset IS NOT NULL AND NOT has_function_privilege(ocx._caller(), reset, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for projection reset function %', reset USING ERRCODE = '42501';
    END IF;
    IF cardinality(types) = 0 OR cardinality(categories) = 0 OR array_ndims(types) > 1
       OR array_ndims(categories) > 1 OR EXISTS (SELECT FROM unnest(types) u WHERE u IS NULL)
       OR EXISTS (SELECT FROM unnest(categories) u WHERE u IS NULL) THEN
        RAISE EXCEPTION 'projection filters must not be empty, multidimensional or contain nulls' USING ERRCODE = 'OX201',
            HINT = 'Pass NULL to select every type or category.';
    END IF;
    IF partitions IS NULL OR partitions < 1 OR partitions > 64 THEN
        RAISE EXCEPTION 'projection partitions must be from 1 to 64' USING ERRCODE = 'OX201',
            DETAIL = format('Got %s.', coalesce(partitions::text, 'NULL'));
    END IF;
    IF partitions > 1 AND mode = 'inline' THEN
        RAISE EXCEPTION 'an inline projection cannot be partitioned' USING ERRCODE = 'OX201',
            DETAIL = 'It runs in the appending transaction, one append at a time.',
            HINT = 'Define it as async to split it into partitions.';
    END IF;
    policy := ocx._projection_retry(retry);
    IF mode = 'inline' AND policy ->> 'on_failure' = 'park_stream' THEN
        RAISE EXCEPTION 'an inline projection cannot park streams' USING ERRCODE = 'OX201',
            DETAIL = 'Appends apply an inline projection at once: they cannot hold back the events of a stream.',
            HINT = 'Use "on_failure": "skip", or define it as async.';
    END IF;
    PERFORM ocx._require_workers('ocx.define_projection()');

    -- another number of partitions: every partition starts where the
    -- projection is, which is one checkpoint only if all partitions agree
    SELECT * INTO old FROM ocx.projections p WHERE p.name = _define_projection.name FOR UPDATE;
    IF FOUND AND old.partitions <> partitions THEN
        IF old.shadow_schema IS NOT NULL THEN
            RAISE EXCEPTION 'projection "%" is being rebuilt blue/green', name USING ERRCODE = 'OX201',
                HINT = 'Change its partitions after the swap, or rebuild it in place.';
        END IF;
        IF old.partitions > 1 THEN
            IF (SELECT count(DISTINCT (pp.checkpoint_txid, pp.checkpoint_position)) FROM ocx.projection_partitions pp
                 WHERE pp.projection = old.name) > 1 THEN
                RAISE EXCEPTION 'projection "%" has partitions at different checkpoints', name USING ERRCODE = 'OX201',
                    DETAIL = 'The number of partitions can change only while every partition is at the same checkpoint.',
                    HINT = 'Call ocx.rebuild_projection() first, in the same transaction.';
            END IF;
            SELECT pp.checkpoint_txid, pp.checkpoint_position, pp.checkpoint_time INTO ckpt
              FROM ocx.projection_partitions pp WHERE pp.projection = old.name LIMIT 1;
            DELETE FROM ocx.projection_partitions pp WHERE pp.projection = old.name;
            UPDATE ocx.projections p SET checkpoint_txid = ckpt.checkpoint_txid,
                   checkpoint_position = ckpt.checkpoint_position, checkpoint_time = ckpt.checkpoint_time,
                   failing_position = NULL, failing_attempts = 0, retry_at = NULL
             WHERE p.name = old.name;
        END IF;
        IF partitions > 1 THEN
            INSERT INTO ocx.projection_partitions (projection, partition, checkpoint_txid, checkpoint_position, checkpoint_time)
            SELECT p.name, g, p.checkpoint_txid, p.checkpoint_position, p.checkpoint_time
              FROM ocx.projections p, generate_series(0, _define_projection.partitions - 1) g
             WHERE p.name = old.name;
        END IF;
    END IF;

    -- an inline projection first catches up in the worker (state rebuilding)
    -- and is applied by appends from the moment it has
    INSERT INTO ocx.projections AS p (name, handler, types, categories, mode, retry, reset, owner, state,
                                      rebuild_started_at, rebuild_total, partitions, tables)
    VALUES (name, handler::text, types, categories, mode, policy, reset::text,
            pg_get_userbyid(ocx._caller()),
            CASE mode WHEN 'inline' THEN 'rebuilding' ELSE 'running' END,
            CASE mode WHEN 'inline' THEN now() END,
            CASE mode WHEN 'inline' THEN ocx._count_matching(types, categories) END,
            _define_projection.partitions, table_names)
    ON CONFLICT ON CONSTRAINT projections_pkey DO UPDATE
       SET handler = excluded.handler, types = excluded.types, categories = excluded.categories,
           retry = excluded.retry, reset = excluded.reset, owner = excluded.owner,
           partitions = excluded.partitions, tables = excluded.tables, updated_at = now();
    IF old.name IS NULL THEN
        INSERT INTO ocx.projection_partitions (projection, partition)
        SELECT _define_projection.name, g FROM generate_series(0, _define_projection.partitions - 1) g
         WHERE _define_projection.partitions > 1
        ON CONFLICT DO NOTHING;
    END IF;
    IF (SELECT p.mode FROM ocx.projections p WHERE p.name = _define_projection.name) <> mode THEN
        RAISE EXCEPTION 'projection "%" already exists with another mode', name USING ERRCODE = 'OX201',
            HINT = 'Drop it first, or keep its mode.';
    END IF;
    PERFORM ocx._wake_worker();
END;
$$;
COMMENT ON FUNCTION ocx._define_projection(text, regprocedure, text[], text[], text, jsonb, regprocedure, integer, regclass[]) IS
    'internal: the body of ocx.define_projection, run as ocx_owner; the caller (ocx._caller()) is recorded as the projection''s owner';


DROP FUNCTION ocx.drop_projection(text);
CREATE FUNCTION ocx.drop_projection(name text, if_exists boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(if_exists, false) AND name IS NOT NULL
       AND NOT EXISTS (SELECT FROM ocx.projections p WHERE p.name OPERATOR(pg_catalog.=) drop_projection.name) THEN
        RETURN;
    END IF;
    PERFORM ocx._projection_row(name);
    PERFORM ocx._projection_shadow_discard(name);
    DELETE FROM ocx.projections p WHERE p.name = drop_projection.name;
END;
$$;
COMMENT ON FUNCTION ocx.drop_projection(text, boolean) IS
    'remove a projection (if_exists: no error when there is none), its checkpoint, its dead letters and the shadow tables of a blue/green rebuild (the read model tables are yours to drop)';


DROP FUNCTION ocx.retry_dead_letter(bigint);
-- The handler runs as the projection's owner (ocx._call_as_author), as in the worker.
CREATE FUNCTION ocx.retry_dead_letter(dead_letter_id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d ocx.dead_letters := ocx._parked_dead_letter(dead_letter_id);
    p ocx.projections := ocx._projection_row(d.projection);
BEGIN
    PERFORM ocx._call_as_author(p.handler, pg_catalog.to_regrole(pg_catalog.quote_ident(p.owner)),
                                ocx._dead_letter_event(d));
    UPDATE ocx.dead_letters dl SET state = 'resolved', resolved_at = pg_catalog.now()
     WHERE dl.id OPERATOR(pg_catalog.=) d.id;
    PERFORM ocx._release_held(p, d.stream_id);
END;
$$;
COMMENT ON FUNCTION ocx.retry_dead_letter(bigint) IS
    'run a dead-lettered event through its projection''s handler again, now, in this transaction; marks it resolved on success, then applies the events of its stream held back behind it (on_failure park_stream)';


DROP FUNCTION ocx.skip_dead_letter(bigint);
CREATE FUNCTION ocx.skip_dead_letter(dead_letter_id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d ocx.dead_letters := ocx._parked_dead_letter(dead_letter_id);
    p ocx.projections := ocx._projection_row(d.projection);
BEGIN
    UPDATE ocx.dead_letters dl SET state = 'resolved', resolved_at = pg_catalog.now()
     WHERE dl.id OPERATOR(pg_catalog.=) d.id;
    PERFORM ocx._release_held(p, d.stream_id);
END;
$$;
COMMENT ON FUNCTION ocx.skip_dead_letter(bigint) IS
    'give up on a dead-lettered event: mark it resolved without running it, then apply the events of its stream held back behind it (on_failure park_stream), in this transaction';


CREATE OR REPLACE FUNCTION ocx._define_command_handler(command_type text, handler regprocedure,
                                           retry jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    policy      jsonb;
    nargs       integer;
    argtype     oid;
    rettype     oid;
BEGIN
    IF command_type IS NULL OR command_type = '' OR octet_length(command_type) > 256 THEN
        RAISE EXCEPTION 'command type must be a non-empty string of at most 256 bytes'
            USING ERRCODE = 'OX322';
    END IF;
    PERFORM ocx._check_name('command type', command_type);
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
        IF NOT has_function_privilege(ocx._caller(), handler, 'EXECUTE') THEN
            RAISE EXCEPTION 'permission denied for command handler %', handler
                USING ERRCODE = '42501', DETAIL = 'It will run as you, the role that defines it.';
        END IF;
    END IF;
    -- the one policy shape and its checks (sql/parts/40_projections.sql)
    policy := ocx._retry_policy(retry, '{"max_attempts": 5, "base_delay": "00:00:01", "max_delay": "00:05:00"}',
                                'OX322');
    INSERT INTO ocx.command_handlers AS h (command_type, handler, max_attempts, base_delay, max_delay,
                                           handler_role)
        VALUES (_define_command_handler.command_type, _define_command_handler.handler,
                (policy ->> 'max_attempts')::integer, (policy ->> 'base_delay')::interval,
                (policy ->> 'max_delay')::interval, ocx._caller())
        ON CONFLICT ON CONSTRAINT command_handlers_pkey DO UPDATE
           SET handler = excluded.handler, max_attempts = excluded.max_attempts,
               base_delay = excluded.base_delay, max_delay = excluded.max_delay,
               handler_role = excluded.handler_role;
    PERFORM ocx._command_sent();
END
$$;
COMMENT ON FUNCTION ocx._define_command_handler(text, regprocedure, jsonb) IS
    'internal: the body of ocx.define_command_handler, run as ocx_owner; records the caller (ocx._caller()) as the handler''s role';


DROP FUNCTION ocx.define_command_handler(text, regprocedure, jsonb);
-- Runs with ocx_owner's rights and records its caller: see src/security.c.
CREATE FUNCTION ocx.define_command_handler(type text, handler regprocedure,
                                           retry jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_command_handler(text, regprocedure, jsonb) IS
    'define (or replace) the one handler of a command type: a function (ocx.command) -> jsonb|void the worker runs, or NULL for client-claimed commands; retry {"max_attempts", "base_delay", "max_delay"}';


DROP FUNCTION ocx.drop_command_handler(text);
CREATE FUNCTION ocx.drop_command_handler(type text, if_exists boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM ocx.command_handlers h WHERE h.command_type = drop_command_handler.type;
    IF NOT FOUND AND NOT coalesce(if_exists, false) THEN
        RAISE EXCEPTION 'command type "%" has no handler', type USING ERRCODE = 'OX320',
            HINT = 'Pass if_exists => true to ignore a missing handler.';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.drop_command_handler(text, boolean) IS
    'remove the handler of a command type (if_exists: no error when there is none)';


CREATE OR REPLACE FUNCTION ocx.define_saga(name text, definition jsonb) RETURNS void
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
    PERFORM ocx._check_name('saga', name);
    steps := ocx._saga_normalize(definition);
    INSERT INTO ocx.saga_definitions AS d (name, definition, steps)
        VALUES (define_saga.name, define_saga.definition, steps)
        ON CONFLICT ON CONSTRAINT saga_definitions_pkey
        DO UPDATE SET definition = excluded.definition, steps = excluded.steps, updated_at = now();
END
$fn$;
COMMENT ON FUNCTION ocx.define_saga(text, jsonb) IS
    'define (or redefine) a saga: {"steps": [{"name", "command", "data", "success", "failure", "timeout", "compensation"}, ...]}; invalid definitions raise OX401';


DROP FUNCTION ocx.drop_saga(text);
CREATE FUNCTION ocx.drop_saga(name text, if_exists boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    active bigint;
BEGIN
    PERFORM 1 FROM ocx.saga_definitions d WHERE d.name = drop_saga.name FOR UPDATE;
    IF NOT FOUND THEN
        IF coalesce(if_exists, false) THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'saga "%" does not exist', name USING ERRCODE = 'OX400',
            HINT = 'Pass if_exists => true to ignore a missing saga.';
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
COMMENT ON FUNCTION ocx.drop_saga(text, boolean) IS
    'remove a saga definition (if_exists: no error when there is none) that has no running or compensating instances (finished ones stay in the tables)';


-- The body of define_subscription and of the deprecated create_subscription:
-- replace => true updates an existing subscription's filters, lease and
-- on_poison (its cursors stay); false raises OX302 as 0.2.0 did.  The
-- INSERT ... ON CONFLICT decides, so two sessions defining one name race
-- on the primary key, not on a check before it.
CREATE FUNCTION ocx._define_subscription(name text, types text[], categories text[], partitions integer,
                                         "after" ocx.cursor, lease interval, on_poison text,
                                         replace boolean)
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old ocx.subscriptions;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._check_name('subscription', name);
    IF partitions IS NULL OR partitions < 1 OR partitions > 1024 THEN
        RAISE EXCEPTION 'partitions must be between 1 and 1024'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(partitions::text, 'NULL')),
                  HINT = 'Use 1 for a single consumer, or at least as many partitions as consumers in the group.';
    END IF;
    IF lease IS NULL OR lease <= '0'::interval THEN
        RAISE EXCEPTION 'lease must be a positive interval'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(lease::text, 'NULL'));
    END IF;
    IF on_poison IS NULL OR on_poison NOT IN ('as_stored', 'stop') THEN
        RAISE EXCEPTION 'on_poison must be ''as_stored'' or ''stop'''
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(quote_literal(on_poison), 'NULL')),
                  HINT = 'as_stored hands an event whose upcaster fails over as stored and records it; stop fails the poll.';
    END IF;
    IF types IS NOT NULL AND (cardinality(types) = 0 OR array_ndims(types) > 1
                              OR EXISTS (SELECT FROM unnest(types) u WHERE u IS NULL)) THEN
        RAISE EXCEPTION 'types must be NULL (all types) or a non-empty one-dimensional array without NULLs'
            USING ERRCODE = 'OX301';
    END IF;
    IF categories IS NOT NULL AND (cardinality(categories) = 0 OR array_ndims(categories) > 1
                                   OR EXISTS (SELECT FROM unnest(categories) u WHERE u IS NULL)) THEN
        RAISE EXCEPTION 'categories must be NULL (all categories) or a non-empty one-dimensional array without NULLs'
            USING ERRCODE = 'OX301';
    END IF;
    INSERT INTO ocx.subscriptions AS s (name, types, categories, partitions, lease, on_poison)
        VALUES (_define_subscription.name, _define_subscription.types, _define_subscription.categories,
                _define_subscription.partitions, _define_subscription.lease, _define_subscription.on_poison)
        ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF FOUND THEN
        INSERT INTO ocx.subscription_partitions (subscription, partition, acked_txid, acked_position)
            SELECT _define_subscription.name, p, coalesce(ocx.txid("after"), '0'::xid8),
                   coalesce(ocx.global_position("after"), 0)
              FROM generate_series(0, _define_subscription.partitions - 1) p;
        RETURN;
    END IF;
    IF NOT coalesce(replace, false) THEN
        RAISE EXCEPTION 'subscription "%" already exists', name
            USING ERRCODE = 'OX302',
                  HINT = 'Drop it first with ocx.drop_subscription, or use another name.';
    END IF;
    -- the row lock poll and ack take: no poll sees half a redefinition
    SELECT * INTO old FROM ocx.subscriptions s WHERE s.name = _define_subscription.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- dropped between the INSERT and here: define it again
        PERFORM ocx._define_subscription(name, types, categories, partitions, "after", lease, on_poison, replace);
        RETURN;
    END IF;
    IF old.partitions <> partitions THEN
        RAISE EXCEPTION 'subscription "%" has % partitions', name, old.partitions
            USING ERRCODE = 'OX301',
                  DETAIL = format('Got %s; the partitions of a subscription cannot change, its cursors are kept per partition.', partitions),
                  HINT = 'Drop it and define it again (its consumers start over from "after"), or define another subscription.';
    END IF;
    UPDATE ocx.subscriptions s
       SET types = _define_subscription.types, categories = _define_subscription.categories,
           lease = _define_subscription.lease, on_poison = _define_subscription.on_poison
     WHERE s.name = _define_subscription.name
       AND (s.types IS DISTINCT FROM _define_subscription.types
            OR s.categories IS DISTINCT FROM _define_subscription.categories
            OR s.lease IS DISTINCT FROM _define_subscription.lease
            OR s.on_poison IS DISTINCT FROM _define_subscription.on_poison);
END
$$;
COMMENT ON FUNCTION ocx._define_subscription(text, text[], text[], integer, ocx.cursor, interval, text, boolean) IS
    'internal: the body of ocx.define_subscription (replace => true) and of the deprecated ocx.create_subscription (false: OX302 when it exists)';


CREATE FUNCTION ocx.define_subscription(name text, types text[] DEFAULT NULL,
                                        categories text[] DEFAULT NULL,
                                        partitions integer DEFAULT 1,
                                        "after" ocx.cursor DEFAULT NULL,
                                        lease interval DEFAULT '30 seconds',
                                        on_poison text DEFAULT 'as_stored')
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._define_subscription(name, types, categories, partitions, "after", lease, on_poison, true);
END
$$;
COMMENT ON FUNCTION ocx.define_subscription(text, text[], text[], integer, ocx.cursor, interval, text) IS
    'define (or redefine, keeping its cursors) a durable subscription: optionally filtered by types and categories; partitions > 1 for consumer groups (fixed once created); after: where a new subscription starts; on_poison: as_stored or stop';


-- Deprecated in 0.3.0 (OX501), removed in a later release: docs/upgrading.md.
CREATE OR REPLACE FUNCTION ocx.create_subscription(name text, types text[] DEFAULT NULL,
                                        categories text[] DEFAULT NULL,
                                        partitions integer DEFAULT 1,
                                        "after" ocx.cursor DEFAULT NULL,
                                        lease interval DEFAULT '30 seconds',
                                        on_poison text DEFAULT 'as_stored')
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE WARNING 'ocx.create_subscription is deprecated'
        USING ERRCODE = 'OX501',
              DETAIL = 'It still creates the subscription (and fails with OX302 when it exists) until a later release removes it.',
              HINT = 'Use ocx.define_subscription, which creates or redefines; see docs/upgrading.md.';
    PERFORM ocx._define_subscription(name, types, categories, partitions, "after", lease, on_poison, false);
END
$$;
COMMENT ON FUNCTION ocx.create_subscription(text, text[], text[], integer, ocx.cursor, interval, text) IS
    'deprecated (WARNING OX501): ocx.define_subscription, but an existing subscription is OX302';

