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

-- A saga's name follows the one name rule, checked by define_saga
-- (ocx._check_name, OX500); no CHECK restates it (see ocx.subscriptions).
CREATE TABLE ocx.saga_definitions (
    name        text PRIMARY KEY,
    definition  jsonb NOT NULL,
    steps       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
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
    tenant_id       text DEFAULT NULLIF(pg_catalog.current_setting('ocx.tenant', true), ''),
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
COMMENT ON COLUMN ocx.saga_instances.tenant_id IS 'the ocx.tenant of the session that started the saga';
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
-- The row is created here (the checkpoint 0/0) and pg_dump keeps it (config
-- table).  A restore runs CREATE EXTENSION first, which makes the row again,
-- and the worker of the new database may have moved it since; the dumped row
-- then arrives by COPY, and the trigger below turns that insert into an
-- update: the dumped checkpoint replaces the fresh one (docs/operations.md).
INSERT INTO ocx.saga_cursor (id) VALUES (true);

CREATE FUNCTION ocx._saga_cursor_restore() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE ocx.saga_cursor c
       SET txid = NEW.txid, global_position = NEW.global_position, updated_at = NEW.updated_at
     WHERE c.id OPERATOR(pg_catalog.=) NEW.id;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_cursor_restore() IS
    'trigger: an insert into ocx.saga_cursor (a restore''s COPY) replaces the existing row instead of failing on its key';
CREATE TRIGGER saga_cursor_restore BEFORE INSERT ON ocx.saga_cursor
    FOR EACH ROW EXECUTE FUNCTION ocx._saga_cursor_restore();

-- Multi-tenancy: a saga belongs to the tenant that started it (its input and
-- results are that tenant's data); its audit rows follow it.  The worker's
-- saga task is not subject to these policies (it serves every tenant).
ALTER TABLE ocx.saga_instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.saga_instances FORCE ROW LEVEL SECURITY;
ALTER TABLE ocx.saga_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.saga_steps FORCE ROW LEVEL SECURITY;
CREATE POLICY saga_instances_tenant ON ocx.saga_instances FOR ALL
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
CREATE POLICY saga_steps_tenant ON ocx.saga_steps FOR ALL
    USING (EXISTS (SELECT FROM ocx.saga_instances i
                    WHERE i.saga_id OPERATOR(pg_catalog.=) saga_steps.saga_id))
    WITH CHECK (EXISTS (SELECT FROM ocx.saga_instances i
                         WHERE i.saga_id OPERATOR(pg_catalog.=) saga_steps.saga_id));
COMMENT ON POLICY saga_instances_tenant ON ocx.saga_instances IS
    'a session sees and starts the sagas of its ocx.tenant only';
COMMENT ON POLICY saga_steps_tenant ON ocx.saga_steps IS
    'a saga''s audit rows are visible when the saga is';

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
-- from (saga, step, do/undo): a repeated send is a no-op.  The command
-- belongs to the saga's tenant, passed explicitly: the worker that sends
-- most steps serves every tenant and has none of its own.
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
                                 coalesce(reason, 'aborted by ' || pg_catalog.pg_get_userbyid(ocx._caller())));
    SELECT x.state INTO i.state FROM ocx.saga_instances x WHERE x.saga_id = abort_saga.saga_id;
    RETURN i.state;
END
$fn$;
COMMENT ON FUNCTION ocx.abort_saga(uuid, text) IS
    'stop a running saga and compensate its completed steps (and the current one if its command ran); returns the new state';

-- An event correlated to a running saga, as the one reader hands it out
-- (ocx._read_log, as stored: revealed, not upcast): advance the saga on a
-- success type of its current step, compensate on a failure type, else
-- ignore it.
CREATE FUNCTION ocx._saga_on_event(e ocx.event) RETURNS boolean
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
        -- templates see the event as reads do: upcast to its type's current
        -- version, by the reader's one upcasting step; here, per event, so that
        -- a failing upcaster fails this saga only (below), not the task
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
COMMENT ON FUNCTION ocx._saga_on_event(ocx.event) IS
    'internal: apply one event of the log, as the one reader reads it, to the running saga it is correlated to';
REVOKE ALL ON FUNCTION ocx._saga_on_event(ocx.event) FROM PUBLIC;

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
    e       ocx.event;
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
    horizon := ocx.log_horizon();

    IF NOT EXISTS (SELECT 1 FROM ocx.saga_instances x WHERE x.state = 'running') THEN
        -- nothing can match: jump to the end of the readable log
        SELECT ocx.txid(t), ocx.global_position(t) INTO last_tx, last_gp
          FROM ocx._log_tail(ocx.cursor(cur.txid, cur.global_position), horizon) t;
    ELSE
        -- the batch, through the one reader (revealed, as stored: each event
        -- is upcast when it moves a saga, ocx._saga_on_event)
        SELECT b.txid, b.global_position, b.n INTO last_tx, last_gp, seen FROM (
            SELECT rl.txid, rl.global_position, count(*) OVER () AS n
              FROM ocx._read_log(ocx.cursor(cur.txid, cur.global_position), max_events,
                                 NULL, NULL, false, horizon) rl) b
         ORDER BY b.txid DESC, b.global_position DESC
         LIMIT 1;
        IF last_tx IS NOT NULL THEN
            FOR e IN
                SELECT rl.* FROM ocx._read_log(ocx.cursor(cur.txid, cur.global_position), seen,
                                               NULL, NULL, false, horizon) rl
                  JOIN ocx.saga_instances x ON x.saga_id = rl.correlation_id AND x.state = 'running'
                 ORDER BY rl.txid, rl.global_position
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

-- The idle round (src/saga.c, at most every 10 s while no saga is running
-- or compensating): only moves the cursor to the end of the readable log,
-- so that a saga started later never sees events from before it.  It sends
-- nothing, so the worker runs it as a bystander (src/appenders.c): its xid
-- holds back no reader.  Should a saga have become active meanwhile, it
-- does nothing at all: the next full round takes it.
CREATE FUNCTION ocx._saga_idle_round() RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cur     ocx.saga_cursor;
    horizon xid8;
    last_tx xid8;
    last_gp bigint;
BEGIN
    SELECT * INTO cur FROM ocx.saga_cursor c FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ocx.saga_cursor AS c (id) VALUES (true) ON CONFLICT ON CONSTRAINT saga_cursor_pkey DO NOTHING;
        SELECT * INTO STRICT cur FROM ocx.saga_cursor c FOR UPDATE;
    END IF;
    -- the horizon before the look at the instances, as in ocx._saga_run: a
    -- saga that commits after the look gets its events above the horizon
    horizon := ocx.log_horizon();
    IF EXISTS (SELECT 1 FROM ocx.saga_instances x WHERE x.state IN ('running', 'compensating')) THEN
        RETURN false;
    END IF;
    SELECT ocx.txid(t), ocx.global_position(t) INTO last_tx, last_gp
      FROM ocx._log_tail(ocx.cursor(cur.txid, cur.global_position), horizon) t;
    IF last_tx IS NOT NULL THEN
        UPDATE ocx.saga_cursor c SET txid = last_tx, global_position = last_gp, updated_at = now();
    END IF;
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_idle_round() IS
    'internal: the saga task''s round while no saga is active: moves the cursor to the end of the readable log and sends nothing (false, doing nothing, when a saga has become active)';
REVOKE ALL ON FUNCTION ocx._saga_idle_round() FROM PUBLIC;

CREATE FUNCTION ocx._saga_tick() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_saga_tick';
COMMENT ON FUNCTION ocx._saga_tick() IS
    'internal: one round of the worker''s saga task, for tests and deployments without the worker; true when more is pending';
REVOKE ALL ON FUNCTION ocx._saga_tick() FROM PUBLIC;

-- security_invoker: the caller's row-level security applies to the sagas.
CREATE VIEW ocx.saga_status WITH (security_invoker = true) AS
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
    'each saga: state, current step, outstanding command and its status, age, deadline and last error; read under the caller''s row-level security';
