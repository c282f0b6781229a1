-- Issue 10, item 6 (the commands): a command belongs to the tenant that sent
-- it, and its data, result, last error and history are that tenant's only.
-- See docs/security.md, "Multi-tenancy", and docs/bus.md, "Commands and
-- tenants".  send_command's final text is in 90_security.sql (it stamps the
-- sender's tenant through ocx._enqueue_command below).

ALTER TABLE ocx.commands ADD COLUMN tenant_id text;
COMMENT ON COLUMN ocx.commands.tenant_id IS
    'the ocx.tenant of the session that sent the command (a saga''s step commands: the saga''s tenant)';
-- commands sent by 0.2.0: a saga's step and compensation commands belong to
-- the saga's tenant (20_tenancy.sql derived it); for the others the sender's
-- tenant was not recorded, so they keep none
UPDATE ocx.commands c
   SET tenant_id = i.tenant_id
  FROM ocx.saga_instances i
 WHERE i.tenant_id IS NOT NULL
   AND (c.command_id OPERATOR(pg_catalog.=) i.command_id
        OR EXISTS (SELECT FROM ocx.saga_steps s
                    WHERE s.saga_id OPERATOR(pg_catalog.=) i.saga_id
                      AND s.command_id OPERATOR(pg_catalog.=) c.command_id));

-- Multi-tenancy: a command belongs to the tenant that sent it (its data,
-- result and errors are that tenant's); its history follows it.  Claims,
-- completions and retries run as ocx_owner under these policies with the
-- caller's ocx.tenant, so a tenant claims and finishes its own commands
-- only.  The worker's command and saga tasks are not subject to them (they
-- serve every tenant; a handler runs with its command's tenant).
ALTER TABLE ocx.commands ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.commands FORCE ROW LEVEL SECURITY;
ALTER TABLE ocx.command_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.command_history FORCE ROW LEVEL SECURITY;
CREATE POLICY commands_tenant ON ocx.commands FOR ALL
    USING (tenant_id IS NOT DISTINCT FROM
           (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
CREATE POLICY command_history_tenant ON ocx.command_history FOR ALL
    USING (EXISTS (SELECT FROM ocx.commands c
                    WHERE c.command_id OPERATOR(pg_catalog.=) command_history.command_id))
    WITH CHECK (EXISTS (SELECT FROM ocx.commands c
                         WHERE c.command_id OPERATOR(pg_catalog.=) command_history.command_id));
COMMENT ON POLICY commands_tenant ON ocx.commands IS
    'a session sees, sends, claims and finishes the commands of its ocx.tenant only';
COMMENT ON POLICY command_history_tenant ON ocx.command_history IS
    'a command''s history is visible when the command is';

-- The queue's one way in.  The command belongs to tenant_id, given
-- explicitly: send_command passes the sender's ocx.tenant (it runs as
-- ocx_owner, so row-level security also checks it), the saga task the
-- saga's tenant (the worker, a superuser, is not subject to the policy).
CREATE FUNCTION ocx._enqueue_command(type text, data jsonb, correlation_id uuid, causation_id uuid,
                                     command_id uuid, metadata jsonb, run_at timestamptz, tenant_id text)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id      uuid := coalesce(_enqueue_command.command_id, gen_random_uuid());
    corr    uuid := _enqueue_command.correlation_id;
    cause   uuid := _enqueue_command.causation_id;
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
    INSERT INTO ocx.commands AS c (command_id, type, data, metadata, correlation_id, causation_id, run_after,
                                   tenant_id)
        VALUES (id, _enqueue_command.type, _enqueue_command.data, _enqueue_command.metadata, coalesce(corr, id), cause,
                coalesce(run_at, now()), _enqueue_command.tenant_id)
        ON CONFLICT ON CONSTRAINT commands_pkey DO NOTHING;
    IF NOT FOUND THEN
        -- an idempotent retry repeats the command exactly, in the same tenant
        SELECT * INTO old FROM ocx.commands c WHERE c.command_id = id;
        IF NOT FOUND OR old.tenant_id IS DISTINCT FROM _enqueue_command.tenant_id THEN
            RAISE EXCEPTION 'command id % is already used by another command', id
                USING ERRCODE = 'OX322',
                      DETAIL = 'It belongs to another tenant.',
                      HINT = 'A new command needs a new id.';
        END IF;
        IF old.type = _enqueue_command.type AND old.data = _enqueue_command.data THEN
            RETURN id;
        END IF;
        RAISE EXCEPTION 'command id % is already used by another command', id
            USING ERRCODE = 'OX322',
                  DETAIL = format('It is a "%s" command with different data.', old.type),
                  HINT = 'A retry must repeat the original command exactly; a new command needs a new id.';
    END IF;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor)
        VALUES (id, 'sent', 0, pg_catalog.pg_get_userbyid(ocx._caller()));
    PERFORM ocx._command_sent();
    RETURN id;
END
$$;
COMMENT ON FUNCTION ocx._enqueue_command(text, jsonb, uuid, uuid, uuid, jsonb, timestamptz, text) IS
    'internal: the body of send_command and of the saga task''s sends: put a command of tenant_id in the queue (under row-level security tenant_id must be the session''s ocx.tenant)';

-- Send step's command (or its compensation) for saga i, with an id derived
-- from (saga, step, do/undo): a repeated send is a no-op.  The command
-- belongs to the saga's tenant, passed explicitly: the worker that sends
-- most steps serves every tenant and has none of its own.
CREATE OR REPLACE FUNCTION ocx._saga_send(i ocx.saga_instances, step integer, undo boolean, cause uuid) RETURNS uuid
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
    RETURN ocx._enqueue_command(spec->>'command', data,
                                correlation_id => i.saga_id,
                                causation_id => cause,
                                command_id => md5(i.saga_id::text || '/' || step::text
                                                  || CASE WHEN undo THEN '/undo' ELSE '/do' END)::uuid,
                                metadata => jsonb_build_object('saga', i.saga_name, 'saga_step', st->>'name',
                                                               'compensation', undo),
                                run_at => NULL,
                                tenant_id => i.tenant_id);
END
$fn$;
COMMENT ON FUNCTION ocx._saga_send(ocx.saga_instances, integer, boolean, uuid) IS
    'internal: send a saga step''s command or compensation through the command queue';
REVOKE ALL ON FUNCTION ocx._saga_send(ocx.saga_instances, integer, boolean, uuid) FROM PUBLIC;

