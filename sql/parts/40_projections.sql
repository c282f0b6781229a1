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
    OUT launcher_pid integer, OUT worker_restarts bigint,
    OUT role text, OUT worker integer, OUT unit text, OUT unit_since timestamptz,
    OUT units_run bigint)
    RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_worker_status';
COMMENT ON FUNCTION ocx.worker_status() IS
    'the ocx workers (cluster-wide): one worker per database and its helpers, with the unit each runs; raises OX210 without shared_preload_libraries';

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
    state           text NOT NULL DEFAULT 'parked',
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    resolved_at     timestamptz,
    holds_stream    boolean NOT NULL DEFAULT false,
    CONSTRAINT dead_letters_state_check CHECK (state IN ('parked', 'held', 'resolved'))
);
CREATE INDEX dead_letters_projection_idx ON ocx.dead_letters (projection, state);
COMMENT ON TABLE ocx.dead_letters IS
    'events a handler failed on after every retry, with the error (state parked; holds_stream: later events of its stream wait, on_failure park_stream), and the events held back behind them (state held); ocx.retry_dead_letter(id) and ocx.skip_dead_letter(id) resolve them';

-- A handler's error may quote the event it failed on, so the full message is
-- kept for the event's tenant only (row-level security, like ocx.events);
-- ocx.projections.last_error, shared by all tenants, names only the event's
-- position and the SQLSTATE.  One row per projection: its latest error.
CREATE TABLE ocx.projection_errors (
    projection      text PRIMARY KEY REFERENCES ocx.projections (name) ON DELETE CASCADE,
    tenant_id       text,
    global_position bigint NOT NULL,
    error           text NOT NULL,
    at              timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ocx.projection_errors IS
    'the latest handler error of each projection, in full, visible to the failed event''s tenant only';
ALTER TABLE ocx.projection_errors ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.projection_errors FORCE ROW LEVEL SECURITY;
CREATE POLICY projection_errors_tenant ON ocx.projection_errors FOR ALL
    USING (tenant_id IS NOT DISTINCT FROM
           (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
COMMENT ON POLICY projection_errors_tenant ON ocx.projection_errors IS
    'a session sees the errors of events of its ocx.tenant only';
REVOKE ALL ON ocx.projection_errors FROM PUBLIC;

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

-- Retry policies: one shape wherever ocx retries (projections, command
-- handlers), {"max_attempts": n, "base_delay": interval, "max_delay": interval},
-- and one backoff (src/retry.c).  See docs/projections.md, "Retries".
CREATE FUNCTION ocx.retry_delay(policy jsonb, attempt integer) RETURNS interval
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_retry_delay';
COMMENT ON FUNCTION ocx.retry_delay(jsonb, integer) IS
    'the wait after failed attempt n (1, 2, ...) under a retry policy: least(max_delay, base_delay * 2^(n-1)); the one backoff of projections and command handlers';

-- The checked policy: max_attempts 1..1000, 0 <= base_delay <= max_delay <=
-- 1 year, defaults filled in, the intervals stored as PostgreSQL prints them
-- (IntervalStyle postgres, whatever the session's); extra_keys are the
-- caller's own keys, passed through for it to check.  Errors carry sqlstate.
CREATE FUNCTION ocx._retry_policy(retry jsonb, defaults jsonb, sqlstate text, extra_keys text[] DEFAULT '{}')
    RETURNS jsonb
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    SET intervalstyle = 'postgres'
AS $$
DECLARE
    r     jsonb := defaults;
    k     text;
    n     numeric;
    d     interval;
    hint  text := 'Pass for example {"max_attempts": 5, "base_delay": "1 second", "max_delay": "5 minutes"}.';
BEGIN
    IF retry IS NULL THEN
        RETURN r;
    END IF;
    IF jsonb_typeof(retry) <> 'object' THEN
        RAISE EXCEPTION 'retry policy must be a JSON object' USING ERRCODE = sqlstate,
            DETAIL = format('Got %s.', jsonb_typeof(retry)), HINT = hint;
    END IF;
    FOR k IN SELECT jsonb_object_keys(retry) LOOP
        IF k <> ALL (ARRAY['max_attempts', 'base_delay', 'max_delay'] || extra_keys) THEN
            RAISE EXCEPTION 'unknown retry policy key "%"', k USING ERRCODE = sqlstate,
                DETAIL = format('The keys are %s.',
                                array_to_string(ARRAY['max_attempts', 'base_delay', 'max_delay'] || extra_keys, ', ')),
                HINT = hint;
        END IF;
    END LOOP;
    IF retry ? 'max_attempts' THEN
        IF jsonb_typeof(retry -> 'max_attempts') = 'number' THEN
            n := (retry ->> 'max_attempts')::numeric;
        END IF;
        IF n IS NULL OR n <> trunc(n) OR n < 1 OR n > 1000 THEN
            RAISE EXCEPTION 'retry policy "max_attempts" must be a whole number from 1 to 1000' USING ERRCODE = sqlstate,
                DETAIL = format('Got %s.', retry -> 'max_attempts');
        END IF;
        r := r || jsonb_build_object('max_attempts', n::integer);
    END IF;
    FOREACH k IN ARRAY ARRAY['base_delay', 'max_delay'] LOOP
        CONTINUE WHEN NOT retry ? k;
        d := NULL;
        IF jsonb_typeof(retry -> k) = 'string' THEN
            BEGIN
                d := (retry ->> k)::interval;
            EXCEPTION WHEN data_exception THEN
                d := NULL;
            END;
        END IF;
        IF d IS NULL OR d < '0'::interval OR d > '1 year'::interval THEN
            RAISE EXCEPTION 'retry policy "%" must be an interval from 0 to 1 year, as a string', k
                USING ERRCODE = sqlstate, DETAIL = format('Got %s.', retry -> k),
                      HINT = format('For example {"%s": "500 milliseconds"}.', k);
        END IF;
        r := r || jsonb_build_object(k, d::text);
    END LOOP;
    IF (r ->> 'max_delay')::interval < (r ->> 'base_delay')::interval THEN
        RAISE EXCEPTION 'retry policy "max_delay" is below "base_delay"' USING ERRCODE = sqlstate,
            DETAIL = format('Got base_delay %s and max_delay %s.', r -> 'base_delay', r -> 'max_delay');
    END IF;
    FOREACH k IN ARRAY extra_keys LOOP
        IF retry ? k THEN
            r := r || jsonb_build_object(k, retry -> k);
        END IF;
    END LOOP;
    RETURN r;
END;
$$;
COMMENT ON FUNCTION ocx._retry_policy(jsonb, jsonb, text, text[]) IS
    'internal: a checked retry policy {"max_attempts", "base_delay", "max_delay"} over defaults, intervals in their canonical text; errors raise sqlstate';

-- A projection's policy: the common keys, on_exhausted ("dead_letter" or
-- "stop") and on_failure ("skip" or "park_stream").  The 0.2.0 spellings
-- attempts, base_delay_ms and max_delay_ms (milliseconds) are read for one
-- more release, with a deprecation WARNING (OX205); what is stored is the new
-- shape only.
CREATE FUNCTION ocx._projection_retry(retry jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        jsonb := retry;
    old_keys text[] := ARRAY['attempts', 'base_delay_ms', 'max_delay_ms'];
    new_keys text[] := ARRAY['max_attempts', 'base_delay', 'max_delay'];
    used     text[] := '{}';
    i        integer;
    v        jsonb;
BEGIN
    IF jsonb_typeof(retry) = 'object' THEN
        FOR i IN 1 .. 3 LOOP
            CONTINUE WHEN NOT retry ? old_keys[i];
            IF retry ? new_keys[i] THEN
                RAISE EXCEPTION 'retry policy spells "%" twice, as "%" and "%"', new_keys[i], old_keys[i], new_keys[i]
                    USING ERRCODE = 'OX201',
                          HINT = format('Keep "%s" only; "%s" is the deprecated spelling.', new_keys[i], old_keys[i]);
            END IF;
            v := retry -> old_keys[i];
            IF (jsonb_typeof(v) <> 'number' OR v::text::numeric <> trunc(v::text::numeric)
                OR v::text::numeric < (CASE i WHEN 1 THEN 1 ELSE 0 END) OR v::text::numeric > 86400000) THEN
                RAISE EXCEPTION 'retry policy "%" must be a whole number %', old_keys[i],
                    CASE i WHEN 1 THEN 'from 1' ELSE 'from 0' END || ' to 86400000'
                    USING ERRCODE = 'OX201', DETAIL = format('Got %s.', v),
                          HINT = format('"%s" is deprecated: write "%s"%s.', old_keys[i], new_keys[i],
                                        CASE i WHEN 1 THEN '' ELSE ' as an interval string' END);
            END IF;
            r := (r - old_keys[i]) || jsonb_build_object(new_keys[i],
                     CASE i WHEN 1 THEN v ELSE to_jsonb(v::text || ' milliseconds') END);
            used := used || old_keys[i];
        END LOOP;
        IF cardinality(used) > 0 THEN
            RAISE WARNING 'retry policy uses deprecated keys: %', array_to_string(used, ', ')
                USING ERRCODE = 'OX205',
                      DETAIL = 'attempts, base_delay_ms and max_delay_ms are read as max_attempts, base_delay and max_delay (intervals) until a later release removes them.',
                      HINT = format('Write %s.', r);
        END IF;
    END IF;
    r := ocx._retry_policy(r, '{"max_attempts": 3, "base_delay": "00:00:00.1", "max_delay": "00:00:10", "on_exhausted": "dead_letter", "on_failure": "skip"}',
                           'OX201', ARRAY['on_exhausted', 'on_failure']);
    IF (r -> 'on_exhausted') NOT IN ('"dead_letter"', '"stop"') THEN
        RAISE EXCEPTION 'retry policy "on_exhausted" must be "dead_letter" or "stop"' USING ERRCODE = 'OX201',
            DETAIL = format('Got %s.', r -> 'on_exhausted');
    END IF;
    IF (r -> 'on_failure') NOT IN ('"skip"', '"park_stream"') THEN
        RAISE EXCEPTION 'retry policy "on_failure" must be "skip" or "park_stream"' USING ERRCODE = 'OX201',
            DETAIL = format('Got %s.', r -> 'on_failure');
    END IF;
    IF r ->> 'on_exhausted' = 'stop' AND r ->> 'on_failure' = 'park_stream' THEN
        RAISE EXCEPTION 'retry policy "on_failure": "park_stream" needs "on_exhausted": "dead_letter"' USING ERRCODE = 'OX201',
            DETAIL = 'A projection that stops holds back every stream already.';
    END IF;
    RETURN r;
END;
$$;
COMMENT ON FUNCTION ocx._projection_retry(jsonb) IS
    'internal: a projection''s checked retry policy with defaults filled in, in the one shape (the deprecated 0.2.0 keys translated, with a WARNING)';

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

CREATE FUNCTION ocx._define_projection(name text, handler regprocedure, types text[] DEFAULT NULL,
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
    policy := ocx._projection_retry(retry);
    IF mode = 'inline' AND policy ->> 'on_failure' = 'park_stream' THEN
        RAISE EXCEPTION 'an inline projection cannot park streams' USING ERRCODE = 'OX201',
            DETAIL = 'Appends apply an inline projection at once: they cannot hold back the events of a stream.',
            HINT = 'Use "on_failure": "skip", or define it as async.';
    END IF;
    PERFORM ocx._require_workers('ocx.define_projection()');

    -- an inline projection first catches up in the worker (state rebuilding)
    -- and is applied by appends from the moment it has
    INSERT INTO ocx.projections AS p (name, handler, types, categories, mode, retry, reset, owner, state,
                                      rebuild_started_at, rebuild_total)
    VALUES (name, handler::text, types, categories, mode, policy, reset::text,
            pg_get_userbyid(ocx._caller()),
            CASE mode WHEN 'inline' THEN 'rebuilding' ELSE 'running' END,
            CASE mode WHEN 'inline' THEN now() END,
            CASE mode WHEN 'inline' THEN ocx._count_matching(types, categories) END)
    ON CONFLICT ON CONSTRAINT projections_pkey DO UPDATE
       SET handler = excluded.handler, types = excluded.types, categories = excluded.categories,
           retry = excluded.retry, reset = excluded.reset, owner = excluded.owner,
           updated_at = now();
    IF (SELECT p.mode FROM ocx.projections p WHERE p.name = _define_projection.name) <> mode THEN
        RAISE EXCEPTION 'projection "%" already exists with another mode', name USING ERRCODE = 'OX201',
            HINT = 'Drop it first, or keep its mode.';
    END IF;
    PERFORM ocx._wake_worker();
END;
$$;
COMMENT ON FUNCTION ocx._define_projection(text, regprocedure, text[], text[], text, jsonb, regprocedure) IS
    'internal: the body of ocx.define_projection, run as ocx_owner; the caller (ocx._caller()) is recorded as the projection''s owner';

-- Runs with ocx_owner's rights and records its caller: see src/security.c.
CREATE FUNCTION ocx.define_projection(name text, handler regprocedure, types text[] DEFAULT NULL,
                                      categories text[] DEFAULT NULL, mode text DEFAULT 'async',
                                      retry jsonb DEFAULT NULL, reset regprocedure DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
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

-- The reset function runs as the projection's owner (ocx._call_as_author).
CREATE FUNCTION ocx.rebuild_projection(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
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
    PERFORM ocx._wake_worker();
END;
$$;
COMMENT ON FUNCTION ocx.rebuild_projection(text) IS
    'call the projection''s reset function and replay the whole log into it in the worker; progress in ocx.projection_status';

-- The event of a dead letter (parked or held): the first in log order after
-- (txid, position - 1), upcast, under the caller's row-level security.
CREATE FUNCTION ocx._dead_letter_event(d ocx.dead_letters) RETURNS ocx.event
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ocx.event;
BEGIN
    SELECT * INTO e FROM ocx.read_all(ocx.cursor(d.txid, d.global_position OPERATOR(pg_catalog.-) 1), 1) r;
    IF e.global_position IS NULL OR e.global_position OPERATOR(pg_catalog.<>) d.global_position THEN
        RAISE EXCEPTION 'the event of dead letter % is not readable', d.id USING ERRCODE = 'OX220';
    END IF;
    RETURN e;
END;
$$;
COMMENT ON FUNCTION ocx._dead_letter_event(ocx.dead_letters) IS
    'internal: the event of a dead letter or held event, or raises OX220';

-- Once a stream's dead letter is resolved (retried or skipped), the events
-- held back behind it (on_failure park_stream) are applied, in log order, in
-- the caller's transaction: each one that succeeds is removed from
-- ocx.dead_letters; the first that fails becomes the stream's dead letter
-- (state parked, holds_stream) and the rest stay held.  The caller holds the
-- projection's row lock, which a batch takes before it commits; the row is
-- updated here, so a batch that read the stream as held back before starts
-- again (src/projection.c, Q_RECHECK).  Returns how many were applied.
CREATE FUNCTION ocx._release_held(p ocx.projections, stream_id text) RETURNS integer
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h ocx.dead_letters;
    n integer := 0;
    msg text;
    code text;
BEGIN
    -- a batch running meanwhile read the stream as held back: touching the
    -- row makes it start again (its recheck compares the row's xmin)
    UPDATE ocx.projections x SET updated_at = pg_catalog.now() WHERE x.name OPERATOR(pg_catalog.=) p.name;
    IF EXISTS (SELECT FROM ocx.dead_letters d
                WHERE d.projection OPERATOR(pg_catalog.=) p.name
                  AND d.stream_id OPERATOR(pg_catalog.=) _release_held.stream_id
                  AND d.state OPERATOR(pg_catalog.=) 'parked' AND d.holds_stream) THEN
        RETURN 0;               -- another dead letter still holds the stream
    END IF;
    FOR h IN SELECT * FROM ocx.dead_letters d
              WHERE d.projection OPERATOR(pg_catalog.=) p.name
                AND d.stream_id OPERATOR(pg_catalog.=) _release_held.stream_id
                AND d.state OPERATOR(pg_catalog.=) 'held'
              ORDER BY d.txid, d.global_position
                FOR UPDATE LOOP
        BEGIN
            PERFORM ocx._call_as_author(p.handler, pg_catalog.to_regrole(pg_catalog.quote_ident(p.owner)),
                                        ocx._dead_letter_event(h));
            DELETE FROM ocx.dead_letters d WHERE d.id OPERATOR(pg_catalog.=) h.id;
            n := n OPERATOR(pg_catalog.+) 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, code = RETURNED_SQLSTATE;
            UPDATE ocx.dead_letters d
               SET state = 'parked', holds_stream = true, attempts = 1, error = msg, sqlstate = code,
                   created_at = pg_catalog.now()
             WHERE d.id OPERATOR(pg_catalog.=) h.id;
            EXIT;
        END;
    END LOOP;
    RETURN n;
END;
$$;
COMMENT ON FUNCTION ocx._release_held(ocx.projections, text) IS
    'internal: apply the events of a stream held back behind its resolved dead letter, in log order; the first that fails becomes its dead letter';

-- The dead letter, locked, and its projection's row, locked (the worker's
-- batch waits for us); raises OX220 unless it is a parked projection one.
CREATE FUNCTION ocx._parked_dead_letter(id bigint) RETURNS ocx.dead_letters
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d ocx.dead_letters;
BEGIN
    SELECT * INTO d FROM ocx.dead_letters dl
     WHERE dl.id OPERATOR(pg_catalog.=) _parked_dead_letter.id FOR UPDATE;
    IF NOT FOUND OR d.state OPERATOR(pg_catalog.<>) 'parked'
       OR d.kind OPERATOR(pg_catalog.<>) 'projection' THEN
        RAISE EXCEPTION 'no parked projection dead letter with id %', coalesce(id::pg_catalog.text, 'NULL')
            USING ERRCODE = 'OX220',
            HINT = 'SELECT id FROM ocx.dead_letters WHERE state = ''parked'' lists the ones you can retry or skip.';
    END IF;
    RETURN d;
END;
$$;
COMMENT ON FUNCTION ocx._parked_dead_letter(bigint) IS
    'internal: a parked projection dead letter, locked, or raises OX220';

-- The handler runs as the projection's owner (ocx._call_as_author), as in the worker.
CREATE FUNCTION ocx.retry_dead_letter(id bigint) RETURNS void
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

CREATE FUNCTION ocx.skip_dead_letter(id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d ocx.dead_letters := ocx._parked_dead_letter(id);
    p ocx.projections := ocx._projection_row(d.projection);
BEGIN
    UPDATE ocx.dead_letters dl SET state = 'resolved', resolved_at = pg_catalog.now()
     WHERE dl.id OPERATOR(pg_catalog.=) d.id;
    PERFORM ocx._release_held(p, d.stream_id);
END;
$$;
COMMENT ON FUNCTION ocx.skip_dead_letter(bigint) IS
    'give up on a dead-lettered event: mark it resolved without running it, then apply the events of its stream held back behind it (on_failure park_stream), in this transaction';

-- security_invoker: the caller's row-level security applies to what the
-- view reads (the full error, the lag over ocx.events, the dead letters),
-- and pg_stat_activity's rules to the horizon's holder (its age needs
-- pg_read_all_stats when another role's session holds it).
CREATE VIEW ocx.projection_status WITH (security_invoker = true) AS
SELECT p.name, p.mode, p.state,
       ocx.cursor(p.checkpoint_txid, p.checkpoint_position) AS "checkpoint",
       p.events_applied,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN lag.events ELSE 0 END AS lag_events,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN COALESCE(EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) lag.oldest)::float8, 0)
            ELSE 0 END AS lag_seconds,
       CASE WHEN pe.at OPERATOR(pg_catalog.>=) p.last_error_at THEN pe.error ELSE p.last_error END AS last_error,
       p.last_error_at, p.failing_attempts, p.retry_at,
       (SELECT pg_catalog.count(*) FROM ocx.dead_letters d
         WHERE d.projection OPERATOR(pg_catalog.=) p.name
           AND d.state OPERATOR(pg_catalog.=) 'parked') AS dead_letters,
       p.rebuild_done, p.rebuild_total,
       rb.rate AS rebuild_rate,
       CASE WHEN p.state OPERATOR(pg_catalog.=) 'rebuilding' AND rb.rate OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.make_interval(secs => GREATEST(p.rebuild_total OPERATOR(pg_catalog.-) p.rebuild_done, 0)
                                                  OPERATOR(pg_catalog./) rb.rate)
       END AS rebuild_eta,
       p.handler, p.types, p.categories, p.retry, p.owner,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN hz.xact_age END AS horizon_age,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN hz.pid END AS horizon_pid
  FROM ocx.projections p
  LEFT JOIN ocx.projection_errors pe ON pe.projection OPERATOR(pg_catalog.=) p.name
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
       ) rb ON true
  LEFT JOIN ocx.horizon_holder() hz ON true;
COMMENT ON VIEW ocx.projection_status IS
    'every projection: state, checkpoint, lag in events and seconds, last error (in full for the failed event''s tenant), dead letters, rebuild progress (done/total, events/s, ETA), the age and pid of the transaction holding the log horizon; read under the caller''s row-level security';
REVOKE ALL ON ocx.projection_status FROM PUBLIC;

-- A database with ocx gets its worker as soon as the extension is created.
SELECT ocx._wake_worker();
