
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

