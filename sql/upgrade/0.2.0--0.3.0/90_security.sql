
-- 90_security.sql (issue 10): ocx_owner owns every ocx object and alone writes
-- ocx tables; the writer and admin entry points run with its rights; user
-- code runs as its recorded author.  The last fragment before the grants:
-- the functions below are their final 0.3.0 definitions.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_owner') THEN
        CREATE ROLE ocx_owner NOLOGIN NOINHERIT;
    END IF;
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
    -- the role the workers read the log as: every tenant's events (BYPASSRLS),
    -- nothing else (SELECT through ocx_reader); no login, no members
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_worker') THEN
        CREATE ROLE ocx_worker NOLOGIN BYPASSRLS;
    END IF;
    IF NOT pg_catalog.pg_has_role('ocx_worker', 'ocx_reader', 'MEMBER') THEN
        GRANT ocx_reader TO ocx_worker;
    END IF;
END
$$;

-- The recorded author of user code: for 0.2.0's upcasters and aggregates, the
-- owner of their function (they ran as the caller then); declarative ones
-- run no user code and get the extension's owner.
ALTER TABLE ocx.upcasters ADD COLUMN definer regrole;
UPDATE ocx.upcasters u SET definer = COALESCE(
    (SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) u.transform),
    (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'ocx'));
ALTER TABLE ocx.upcasters ALTER COLUMN definer SET NOT NULL;
ALTER TABLE ocx.aggregates ADD COLUMN definer regrole;
UPDATE ocx.aggregates a SET definer = COALESCE(
    (SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) a.apply),
    (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'ocx'));
ALTER TABLE ocx.aggregates ALTER COLUMN definer SET NOT NULL;
COMMENT ON COLUMN ocx.upcasters.definer IS 'the role that defined the upcaster; its transform function runs as this role';
COMMENT ON COLUMN ocx.aggregates.definer IS 'the role that defined the aggregate; its apply function runs as this role';

-- The entry points that record their caller: the 0.2.0 function becomes the
-- body ocx._<name>, a C trampoline takes its name (src/security.c).
-- (define_projection took new parameters, partitions and tables: the 0.2.0
-- function is dropped and its body created below with them; 63_rebuild.sql
-- and 95_partitions.sql add the columns and tables they use.)
DROP FUNCTION ocx.define_projection(text, regprocedure, text[], text[], text, jsonb, regprocedure);
ALTER FUNCTION ocx.define_aggregate(text, regprocedure, jsonb, integer, jsonb) RENAME TO _define_aggregate;
ALTER FUNCTION ocx.define_module(text, jsonb) RENAME TO _define_module;
ALTER FUNCTION ocx.define_command_handler(text, regprocedure, jsonb) RENAME TO _define_command_handler;
ALTER FUNCTION ocx.define_upcaster(text, integer, regprocedure) RENAME TO _define_upcaster;
ALTER FUNCTION ocx.define_upcaster(text, integer, jsonb) RENAME TO _define_upcaster;

CREATE FUNCTION ocx._caller() RETURNS regrole
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_caller';
COMMENT ON FUNCTION ocx._caller() IS
    'internal: the role that called the running ocx entry point (recorded as author, sender, claimer)';

CREATE FUNCTION ocx._call_as_author(fn text, author regrole, e ocx.event DEFAULT NULL) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_call_as_author';
COMMENT ON FUNCTION ocx._call_as_author(text, regrole, ocx.event) IS
    'internal: call fn() or fn(e) (a stored signature, looked up as author) as author, after checking that author may still run it (entry points only)';

CREATE FUNCTION ocx._regprocedure_as(signature text, role regrole) RETURNS regprocedure
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_regprocedure_as';
COMMENT ON FUNCTION ocx._regprocedure_as(text, regrole) IS
    'internal: the function a signature names, looked up with role''s rights (entry points only)';

CREATE FUNCTION ocx._define_projection(name text, handler regprocedure, types text[] DEFAULT NULL,
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
COMMENT ON FUNCTION ocx._define_command_handler(text, regprocedure, jsonb) IS
    'internal: the body of ocx.define_command_handler, run as ocx_owner; records the caller (ocx._caller()) as the handler''s role';

CREATE OR REPLACE FUNCTION ocx._define_upcaster(type text, from_schema_version integer, transform regprocedure)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT ocx._define_upcaster(_define_upcaster.type, _define_upcaster.from_schema_version,
                                _define_upcaster.transform, NULL);
END;
COMMENT ON FUNCTION ocx._define_upcaster(text, integer, regprocedure) IS
    'internal: the body of ocx.define_upcaster(text, integer, regprocedure), run as ocx_owner';

CREATE OR REPLACE FUNCTION ocx._define_upcaster(type text, from_schema_version integer, spec jsonb)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT ocx._define_upcaster(_define_upcaster.type, _define_upcaster.from_schema_version,
                                NULL, _define_upcaster.spec);
END;
COMMENT ON FUNCTION ocx._define_upcaster(text, integer, jsonb) IS
    'internal: the body of ocx.define_upcaster(text, integer, jsonb), run as ocx_owner';

CREATE OR REPLACE FUNCTION ocx._define_upcaster(type text, from_schema_version integer,
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
    INSERT INTO ocx.upcasters AS u (type, from_schema_version, transform, spec, definer)
    VALUES (type, from_schema_version, transform, spec, ocx._caller())
    ON CONFLICT ON CONSTRAINT upcasters_pkey DO UPDATE
       SET transform = excluded.transform, spec = excluded.spec, definer = excluded.definer,
           defined_at = excluded.defined_at
     WHERE u.transform IS DISTINCT FROM excluded.transform OR u.spec IS DISTINCT FROM excluded.spec
        OR u.definer OPERATOR(pg_catalog.<>) excluded.definer;
END;
$$;
COMMENT ON FUNCTION ocx._define_upcaster(text, integer, regprocedure, jsonb) IS
    'internal: both forms of ocx.define_upcaster; records the caller (ocx._caller()) as the definer';

CREATE FUNCTION ocx.define_projection(name text, handler regprocedure, types text[] DEFAULT NULL,
                                      categories text[] DEFAULT NULL, mode text DEFAULT 'async',
                                      retry jsonb DEFAULT NULL, reset regprocedure DEFAULT NULL,
                                      partitions integer DEFAULT 1, tables regclass[] DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_projection(text, regprocedure, text[], text[], text, jsonb, regprocedure, integer, regclass[]) IS
    'define (or redefine, keeping its checkpoint) a projection: handler(e ocx.event) per matching event, async in the worker (in partitions by stream, processed in parallel) or inline in the append; tables declares its read-model tables (for rebuild_projection(shadow => true))';

CREATE FUNCTION ocx.define_aggregate(aggregate_type text, apply regprocedure DEFAULT NULL,
                                     initial_state jsonb DEFAULT '{}', snapshot_every integer DEFAULT NULL,
                                     reducer jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_aggregate(text, regprocedure, jsonb, integer, jsonb) IS
    'define (or redefine) an aggregate type: apply(state jsonb, event ocx.event) -> jsonb or declarative reducer rules; redefinition drops its snapshots';

CREATE FUNCTION ocx.define_module(name text, definition jsonb) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_module(text, jsonb) IS
    'install a domain''s event types, upcasters and aggregates in one call; installing the same definition again changes nothing';

CREATE FUNCTION ocx.define_command_handler(command_type text, handler regprocedure,
                                           retry jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_command_handler(text, regprocedure, jsonb) IS
    'the one handler of a command type: a function (ocx.command) -> jsonb|void the worker runs, or NULL for client-claimed commands; retry {"max_attempts", "base_delay", "max_delay"}';

CREATE FUNCTION ocx.define_upcaster(type text, from_schema_version integer, transform regprocedure)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_upcaster(text, integer, regprocedure) IS
    'upcast data of an event type from from_schema_version to the next with a jsonb -> jsonb function (run as the caller)';

CREATE FUNCTION ocx.define_upcaster(type text, from_schema_version integer, spec jsonb)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_upcaster(text, integer, jsonb) IS
    'upcast data of an event type from from_schema_version to the next with declarative steps (rename, default, remove, move, cast)';

CREATE OR REPLACE FUNCTION ocx._check_function(fn regprocedure, argtypes regtype[], rettype regtype,
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
    IF NOT pg_catalog.has_function_privilege(ocx._caller(), fn, 'EXECUTE') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = pg_catalog.format('permission denied for %s %s', what, fn),
            DETAIL = 'It will run as you, the role that defines it.';
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx._check_function(regprocedure, regtype[], regtype, text, text) IS
    'internal: raises errcode unless fn is a plain function with exactly these argument types and result type';

DROP FUNCTION ocx.rebuild_projection(text);
CREATE FUNCTION ocx.rebuild_projection(name text, shadow boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections := ocx._projection_row(name);
    sh text;
BEGIN
    PERFORM ocx._require_workers('ocx.rebuild_projection()');
    IF shadow IS NULL THEN
        RAISE EXCEPTION 'shadow must not be null' USING ERRCODE = 'OX201',
            HINT = 'Pass true for a blue/green rebuild, false to reset and replay in place.';
    END IF;
    IF shadow THEN
        IF p.partitions OPERATOR(pg_catalog.>) 1 THEN
            RAISE EXCEPTION 'projection "%" has % partitions', p.name, p.partitions USING ERRCODE = 'OX201',
                DETAIL = 'A blue/green rebuild replays into one shadow checkpoint, not one per partition.',
                HINT = 'Rebuild it in place, or define it with one partition first.';
        END IF;
        PERFORM ocx._projection_shadow_check(p);
        IF p.state OPERATOR(pg_catalog.<>) 'running' THEN
            RAISE EXCEPTION 'projection "%" is %', p.name, p.state USING ERRCODE = 'OX201',
                DETAIL = 'A blue/green rebuild runs beside a running projection.',
                HINT = 'Resume it or let its rebuild finish first.';
        END IF;
        -- a blue/green rebuild already under way starts again from scratch
        PERFORM ocx._projection_shadow_discard(p.name);
        sh := ocx._projection_shadow_create(p);
        UPDATE ocx.projections
           SET shadow_schema = sh, shadow_checkpoint_txid = '0', shadow_checkpoint_position = 0,
               shadow_failures = 0, rebuild_started_at = pg_catalog.now(), rebuild_finished_at = NULL,
               rebuild_total = ocx._count_matching(p.types, p.categories), rebuild_done = 0,
               updated_at = pg_catalog.now()
         WHERE projections.name OPERATOR(pg_catalog.=) p.name;
        PERFORM ocx._wake_worker();
        RETURN;
    END IF;
    PERFORM ocx._projection_shadow_discard(p.name);
    -- An inline projection: no append may be in flight while its read model
    -- is reset (one that still saw it running would survive the reset and be
    -- replayed again); appends after our commit see it rebuilding.
    IF p.mode OPERATOR(pg_catalog.=) 'inline' THEN
        LOCK TABLE ocx.streams IN SHARE MODE;
    END IF;
    IF p.reset IS NOT NULL THEN
        PERFORM ocx._call_as_author(p.reset, pg_catalog.to_regrole(pg_catalog.quote_ident(p.owner)));
    END IF;
    DELETE FROM ocx.dead_letters d
     WHERE d.projection OPERATOR(pg_catalog.=) p.name
       AND d.state OPERATOR(pg_catalog.=) ANY ('{parked,held}'::pg_catalog.text[]);
    UPDATE ocx.projections
       SET state = 'rebuilding', checkpoint_txid = '0', checkpoint_position = 0, checkpoint_time = NULL,
           events_applied = 0, failing_position = NULL, failing_attempts = 0, retry_at = NULL,
           rebuild_started_at = pg_catalog.now(), rebuild_finished_at = NULL,
           rebuild_total = ocx._count_matching(p.types, p.categories), rebuild_done = 0,
           updated_at = pg_catalog.now()
     WHERE projections.name OPERATOR(pg_catalog.=) p.name;
    UPDATE ocx.projection_partitions pp
       SET checkpoint_txid = '0', checkpoint_position = 0, checkpoint_time = NULL, events_applied = 0,
           failing_position = NULL, failing_attempts = 0, retry_at = NULL, rebuild_done = 0,
           updated_at = pg_catalog.now()
     WHERE pp.projection OPERATOR(pg_catalog.=) p.name;
    PERFORM ocx._wake_worker();
END;
$$;
COMMENT ON FUNCTION ocx.rebuild_projection(text, boolean) IS
    'replay the whole log into the projection in the worker: in place (reset function, then replay), or with shadow => true into shadow copies of its declared tables, swapped in when caught up; progress in ocx.projection_status';

CREATE OR REPLACE FUNCTION ocx.retry_dead_letter(id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d ocx.dead_letters := ocx._parked_dead_letter(id);
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

CREATE OR REPLACE FUNCTION ocx.send_command(type text, data jsonb, correlation_id uuid DEFAULT NULL,
                                 causation_id uuid DEFAULT NULL, command_id uuid DEFAULT NULL,
                                 metadata jsonb DEFAULT '{}', run_at timestamptz DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the command belongs to the sender's tenant
    RETURN ocx._enqueue_command(send_command.type, send_command.data, send_command.correlation_id,
                                send_command.causation_id, send_command.command_id, send_command.metadata,
                                send_command.run_at, NULLIF(current_setting('ocx.tenant', true), ''));
END
$$;
COMMENT ON FUNCTION ocx.send_command(text, jsonb, uuid, uuid, uuid, jsonb, timestamptz) IS
    'put a command of the session''s ocx.tenant in the durable queue; returns its id (given ids make retries idempotent); correlation defaults to ocx.correlation_id, else the command id';

CREATE OR REPLACE FUNCTION ocx.retry_command(command_id uuid) RETURNS void
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
        VALUES (retry_command.command_id, 'retried', 0, pg_catalog.pg_get_userbyid(ocx._caller()));
    PERFORM ocx._command_sent();
END
$$;
COMMENT ON FUNCTION ocx.retry_command(uuid) IS 'send a dead-lettered command again with fresh attempts';

CREATE OR REPLACE FUNCTION ocx.claim_commands(types text[], max_count integer DEFAULT 1,
                                   visibility_timeout interval DEFAULT '30 seconds',
                                   claimer text DEFAULT NULL)
    RETURNS SETOF ocx.command
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    -- bounded before any query plans the array (a custom plan of a huge one
    -- costs tens of MB of backend memory)
    IF cardinality(types) > 1000 THEN
        RAISE EXCEPTION 'types must name at most 1000 command types'
            USING ERRCODE = 'OX322', DETAIL = format('Got %s.', cardinality(types));
    END IF;
    IF types IS NULL OR cardinality(types) = 0 OR array_ndims(types) > 1
       OR EXISTS (SELECT FROM unnest(types) u WHERE u IS NULL) THEN
        RAISE EXCEPTION 'types must be a non-empty one-dimensional array of command types'
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
                                                   coalesce(claimer, pg_catalog.pg_get_userbyid(ocx._caller())::text));
END
$$;
COMMENT ON FUNCTION ocx.claim_commands(text[], integer, interval, text) IS
    'claim up to max_count ready commands of the given types (SKIP LOCKED); an unfinished claim comes back after visibility_timeout; pass each claim_token to complete_command/fail_command';

CREATE OR REPLACE FUNCTION ocx.abort_saga(saga_id uuid, reason text DEFAULT NULL) RETURNS text
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
                                 coalesce(reason, 'aborted by ' || pg_catalog.pg_get_userbyid(ocx._caller())));
    SELECT x.state INTO i.state FROM ocx.saga_instances x WHERE x.saga_id = abort_saga.saga_id;
    RETURN i.state;
END
$fn$;
COMMENT ON FUNCTION ocx.abort_saga(uuid, text) IS
    'stop a running saga and compensate its completed steps (and the current one if its command ran); returns the new state';

