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
    updated_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tables              text[],
    shadow_schema       text,
    shadow_checkpoint_txid xid8,
    shadow_checkpoint_position bigint,
    shadow_failures     integer NOT NULL DEFAULT 0,
    partitions          integer NOT NULL DEFAULT 1 CHECK (partitions BETWEEN 1 AND 64)
);
COMMENT ON TABLE ocx.projections IS
    'projection definitions and their state: checkpoint (txid, position), retries, rebuild progress';
COMMENT ON COLUMN ocx.projections.tables IS
    'the read-model tables the projection declared (schema-qualified names), swapped by a blue/green rebuild';
COMMENT ON COLUMN ocx.projections.shadow_schema IS
    'during a blue/green rebuild: the schema holding the shadow copies of the tables; NULL otherwise';
COMMENT ON COLUMN ocx.projections.shadow_checkpoint_txid IS
    'during a blue/green rebuild: the txid of the shadow replay''s checkpoint (NULL for a partitioned projection: see ocx.projection_shadow_partitions)';
COMMENT ON COLUMN ocx.projections.shadow_checkpoint_position IS
    'during a blue/green rebuild: the position of the shadow replay''s checkpoint (NULL for a partitioned projection: see ocx.projection_shadow_partitions)';
COMMENT ON COLUMN ocx.projections.shadow_failures IS
    'failed batches of the blue/green rebuild in a row; at the retry policy''s attempts it is abandoned';

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
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
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

-- A projection split into partitions by stream (ocx.stream_partition of the
-- stream id): each partition has its own checkpoint and retry state and is a
-- unit of work of its own (src/pool.c); the projection's row keeps the
-- definition.  Rows exist only while partitions > 1.
CREATE TABLE ocx.projection_partitions (
    projection          text NOT NULL REFERENCES ocx.projections (name) ON DELETE CASCADE,
    partition           integer NOT NULL CHECK (partition >= 0),
    checkpoint_txid     xid8 NOT NULL DEFAULT '0',
    checkpoint_position bigint NOT NULL DEFAULT 0,
    checkpoint_time     timestamptz,
    events_applied      bigint NOT NULL DEFAULT 0,
    failing_position    bigint,
    failing_attempts    integer NOT NULL DEFAULT 0,
    retry_at            timestamptz,
    rebuild_done        bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (projection, partition)
);
COMMENT ON TABLE ocx.projection_partitions IS
    'the checkpoint and retry state of each partition of a partitioned projection';
SELECT pg_catalog.pg_extension_config_dump('ocx.projection_partitions', '');
REVOKE ALL ON ocx.projection_partitions FROM PUBLIC;

-- The blue/green rebuild of a partitioned projection: each partition's
-- shadow replay is a unit of work of its own with its own shadow checkpoint
-- (rows exist only during such a rebuild; ocx._projection_swap swaps the
-- tables and every partition's checkpoint at once).
CREATE TABLE ocx.projection_shadow_partitions (
    projection          text NOT NULL REFERENCES ocx.projections (name) ON DELETE CASCADE,
    partition           integer NOT NULL CHECK (partition >= 0),
    checkpoint_txid     xid8 NOT NULL DEFAULT '0',
    checkpoint_position bigint NOT NULL DEFAULT 0,
    rebuild_done        bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (projection, partition)
);
COMMENT ON TABLE ocx.projection_shadow_partitions IS
    'during a blue/green rebuild of a partitioned projection: the shadow checkpoint and progress of each partition';
SELECT pg_catalog.pg_extension_config_dump('ocx.projection_shadow_partitions', '');
REVOKE ALL ON ocx.projection_shadow_partitions FROM PUBLIC;

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
     WHERE ocx._log_selects(e.type, e.stream_id, _count_matching.types, _count_matching.categories);
END;
COMMENT ON FUNCTION ocx._count_matching(text[], text[]) IS 'internal: how many events a projection filter selects';

-- Blue/green rebuilds (docs/projections.md, "Blue/green rebuilds"): the
-- declared read-model tables are copied empty into a shadow schema, the
-- worker replays the log into the copies while the live tables keep being
-- updated, then swaps them in one transaction.  The DDL runs as the
-- projection's owner (ocx._execute_as_author), never as ocx_owner.
CREATE FUNCTION ocx._execute_as_author(author regrole, statements text[]) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_execute_as_author';
COMMENT ON FUNCTION ocx._execute_as_author(regrole, text[]) IS
    'internal: run statements ocx built (a blue/green rebuild''s DDL) as author, search_path pg_catalog, security-restricted (entry points and the worker only)';

-- A read-model table by its stored name, looked up in the catalogs: ocx_owner
-- (rebuild_projection) has no USAGE on the schemas of user tables.
CREATE FUNCTION ocx._relation_oid(name text) RETURNS oid
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN (SELECT c.oid FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE n.nspname OPERATOR(pg_catalog.=) (pg_catalog.parse_ident(name))[1]
               AND c.relname OPERATOR(pg_catalog.=) (pg_catalog.parse_ident(name))[2]);
COMMENT ON FUNCTION ocx._relation_oid(text) IS
    'internal: the oid of a table named schema.table (quoted as needed), from the catalogs; NULL if none';

CREATE FUNCTION ocx._projection_tables(tables regclass[]) RETURNS text[]
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    c pg_class;
    names text[] := '{}';
BEGIN
    IF tables IS NULL THEN
        RETURN NULL;
    END IF;
    IF cardinality(tables) = 0 OR array_ndims(tables) > 1 OR array_position(tables, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'projection tables must not be empty, multidimensional or contain nulls' USING ERRCODE = 'OX201',
            HINT = 'Pass NULL when the projection declares no read-model tables.';
    END IF;
    FOREACH t IN ARRAY tables LOOP
        SELECT * INTO c FROM pg_class WHERE oid = t;
        IF c.relkind <> 'r' OR c.relispartition OR c.relpersistence = 't'
           OR c.relnamespace IN ('pg_catalog'::regnamespace, 'ocx'::regnamespace)
           OR (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace) LIKE 'ocx\_shadow\_%'
           OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = t OR i.inhparent = t) THEN
            RAISE EXCEPTION 'projection table % must be an ordinary table', t USING ERRCODE = 'OX201',
                DETAIL = 'A read-model table is a permanent or unlogged table, neither partitioned nor inherited, outside schemas ocx, ocx_shadow_* and pg_catalog.';
        END IF;
        IF NOT pg_has_role(ocx._caller(), c.relowner, 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of table %', t USING ERRCODE = '42501',
                DETAIL = 'A blue/green rebuild replaces the table; only its owner may declare it.';
        END IF;
        IF (SELECT count(*) FROM unnest(tables) u JOIN pg_class uc ON uc.oid = u WHERE uc.relname = c.relname) > 1 THEN
            RAISE EXCEPTION 'projection tables must have distinct names' USING ERRCODE = 'OX201',
                DETAIL = format('More than one table is named %I.', c.relname),
                HINT = 'A blue/green rebuild builds the tables side by side in one shadow schema.';
        END IF;
        names := names || (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_namespace n WHERE n.oid = c.relnamespace);
    END LOOP;
    RETURN names;
END;
$$;
COMMENT ON FUNCTION ocx._projection_tables(regclass[]) IS
    'internal: the checked read-model tables of define_projection, as schema-qualified names';

CREATE FUNCTION ocx._projection_shadow_schema(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'ocx_shadow_' OPERATOR(pg_catalog.||)
           pg_catalog.left(pg_catalog.regexp_replace(pg_catalog.lower(name), '[^a-z0-9_]', '_', 'g'), 40)
           OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.md5(name), 8);
COMMENT ON FUNCTION ocx._projection_shadow_schema(text) IS
    'internal: the shadow schema of a projection''s blue/green rebuild (ocx_shadow_<name>_<hash>)';

-- May the projection be rebuilt blue/green: raises OX201 (not possible for
-- this projection) or OX232 (its tables cannot be swapped now).
CREATE FUNCTION ocx._projection_shadow_check(p ocx.projections) RETURNS void
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner regrole := to_regrole(quote_ident(p.owner));
    tn text;
    t regclass;
    c pg_class;
    users text;
BEGIN
    IF p.mode <> 'async' THEN
        RAISE EXCEPTION 'inline projection "%" cannot be rebuilt blue/green', p.name USING ERRCODE = 'OX201',
            DETAIL = 'Appends apply an inline projection to its live tables in their own transactions.',
            HINT = 'Rebuild it without shadow => true, or define it as async.';
    END IF;
    IF p.tables IS NULL THEN
        RAISE EXCEPTION 'projection "%" declares no read-model tables', p.name USING ERRCODE = 'OX201',
            DETAIL = 'A blue/green rebuild builds shadow copies of the tables the projection declares.',
            HINT = 'Define it again with tables => ''{...}'' naming the tables its handler writes.';
    END IF;
    IF owner IS NULL THEN
        RAISE EXCEPTION 'the role that defined projection "%" no longer exists', p.name USING ERRCODE = 'OX502';
    END IF;
    IF NOT has_database_privilege(owner, current_database(), 'CREATE') THEN
        RAISE EXCEPTION 'role "%" that owns projection "%" may not create the shadow schema', p.owner, p.name
            USING ERRCODE = 'OX232',
            HINT = format('GRANT CREATE ON DATABASE %I TO %I.', current_database(), p.owner);
    END IF;
    FOREACH tn IN ARRAY p.tables LOOP
        t := ocx._relation_oid(tn);
        IF t IS NULL THEN
            RAISE EXCEPTION 'read-model table % of projection "%" does not exist', tn, p.name USING ERRCODE = 'OX232',
                HINT = 'Define the projection again with its current tables.';
        END IF;
        SELECT * INTO c FROM pg_class WHERE oid = t;
        IF c.relkind <> 'r' OR c.relispartition
           OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = t OR i.inhparent = t) THEN
            RAISE EXCEPTION 'read-model table % is no longer an ordinary table', t USING ERRCODE = 'OX232';
        END IF;
        IF NOT pg_has_role(owner, c.relowner, 'USAGE') OR NOT has_schema_privilege(owner, c.relnamespace, 'CREATE') THEN
            RAISE EXCEPTION 'role "%" that owns projection "%" may not replace table %', p.owner, p.name, t
                USING ERRCODE = 'OX232',
                DETAIL = 'The swap drops the table and moves its shadow copy into its schema, as the projection''s owner.',
                HINT = 'The projection''s owner must own the table (or be a member of its owner) and have CREATE on its schema.';
        END IF;
        IF c.relrowsecurity THEN
            RAISE EXCEPTION 'read-model table % has row-level security', t USING ERRCODE = 'OX232',
                DETAIL = 'Its policies would not be carried over to the rebuilt table.',
                HINT = 'Rebuild without shadow => true.';
        END IF;
        -- everything that depends on the table but its own parts (columns,
        -- indexes, constraints other than foreign keys, defaults, extended
        -- statistics, its row type, TOAST table and identity sequences)
        SELECT string_agg(DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid), ', ') INTO users
          FROM pg_depend d
         WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = t)
                OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype))
           AND d.deptype IN ('n', 'a')
           AND NOT (d.classid = 'pg_class'::regclass AND d.objid = t)
           AND NOT (d.classid = 'pg_class'::regclass
                    AND EXISTS (SELECT FROM pg_index i WHERE i.indexrelid = d.objid AND i.indrelid = t))
           AND NOT (d.classid = 'pg_constraint'::regclass
                    AND EXISTS (SELECT FROM pg_constraint k
                                 WHERE k.oid = d.objid AND k.conrelid = t AND k.contype <> 'f'))
           AND NOT (d.classid = 'pg_attrdef'::regclass
                    AND EXISTS (SELECT FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = t))
           AND NOT (d.classid = 'pg_statistic_ext'::regclass
                    AND EXISTS (SELECT FROM pg_statistic_ext s WHERE s.oid = d.objid AND s.stxrelid = t));
        IF users IS NOT NULL THEN
            RAISE EXCEPTION 'read-model table % cannot be swapped by a blue/green rebuild', t USING ERRCODE = 'OX232',
                DETAIL = format('Other objects depend on it: %s.', users),
                HINT = 'Drop the dependent objects (views, foreign keys, triggers, rules, publications, sequences it owns) or rebuild without shadow => true.';
        END IF;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION ocx._projection_shadow_check(ocx.projections) IS
    'internal: raise OX201 or OX232 unless the projection''s read-model tables can be rebuilt blue/green';

-- Statements that give dst the owner, privileges (table and column) and
-- comment of src.
CREATE FUNCTION ocx._projection_acl_sync(src regclass, dst regclass) RETURNS text[]
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s pg_class;
    d pg_class;
    r record;
    stmts text[] := '{}';
BEGIN
    SELECT * INTO s FROM pg_class WHERE oid = src;
    SELECT * INTO d FROM pg_class WHERE oid = dst;
    IF d.relowner <> s.relowner THEN
        stmts := stmts || format('ALTER TABLE %s OWNER TO %I', dst, pg_get_userbyid(s.relowner));
    END IF;
    FOR r IN SELECT a.grantee FROM aclexplode(COALESCE(d.relacl, acldefault('r', d.relowner))) a
             UNION SELECT s.relowner LOOP
        stmts := stmts || format('REVOKE ALL ON TABLE %s FROM %s', dst,
                                 CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    FOR r IN SELECT a.grantee, a.privilege_type, a.is_grantable
               FROM aclexplode(COALESCE(s.relacl, acldefault('r', s.relowner))) a LOOP
        stmts := stmts || format('GRANT %s ON TABLE %s TO %s%s', r.privilege_type, dst,
                                 CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                                 CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    FOR r IN SELECT at.attname, a.grantee, a.privilege_type, a.is_grantable
               FROM pg_attribute at, aclexplode(at.attacl) a
              WHERE at.attrelid = src AND at.attnum > 0 AND NOT at.attisdropped AND at.attacl IS NOT NULL LOOP
        stmts := stmts || format('GRANT %s (%I) ON TABLE %s TO %s%s', r.privilege_type, r.attname, dst,
                                 CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                                 CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    RETURN stmts || format('COMMENT ON TABLE %s IS %L', dst, obj_description(src, 'pg_class'));
END;
$$;
COMMENT ON FUNCTION ocx._projection_acl_sync(regclass, regclass) IS
    'internal: statements giving a shadow table the owner, privileges and comment of its live table';

-- Drop a projection's shadow schema (as its owner) and forget the blue/green
-- rebuild; reason, if given, becomes its last error.
CREATE FUNCTION ocx._projection_shadow_discard(name text, reason text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections := ocx._projection_row(name);
BEGIN
    IF p.shadow_schema IS NULL THEN
        RETURN;
    END IF;
    IF to_regnamespace(quote_ident(p.shadow_schema)) IS NOT NULL THEN
        PERFORM ocx._execute_as_author(to_regrole(quote_ident(p.owner)),
                                       ARRAY[format('DROP SCHEMA %I CASCADE', p.shadow_schema)]);
    END IF;
    DELETE FROM ocx.projection_shadow_partitions s WHERE s.projection = p.name;
    UPDATE ocx.projections
       SET shadow_schema = NULL, shadow_checkpoint_txid = NULL, shadow_checkpoint_position = NULL,
           shadow_failures = 0, last_error = COALESCE(reason, last_error),
           last_error_at = CASE WHEN reason IS NULL THEN last_error_at ELSE now() END,
           updated_at = now()
     WHERE projections.name = p.name;
END;
$$;
COMMENT ON FUNCTION ocx._projection_shadow_discard(text, text) IS
    'internal: drop a projection''s shadow schema and forget its blue/green rebuild (reason: recorded as last_error)';

-- Create the shadow schema and the empty copies of the tables, as the owner.
CREATE FUNCTION ocx._projection_shadow_create(p ocx.projections) RETURNS text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sh text := ocx._projection_shadow_schema(p.name);
    owner regrole := to_regrole(quote_ident(p.owner));
    tn text;
    c record;
    stmts text[];
BEGIN
    IF to_regnamespace(quote_ident(sh)) IS NOT NULL THEN
        RAISE EXCEPTION 'schema "%" already exists', sh USING ERRCODE = 'OX232',
            DETAIL = format('A blue/green rebuild of projection "%s" builds its tables in that schema.', p.name),
            HINT = 'It is not a shadow schema of a running rebuild: drop or rename it.';
    END IF;
    stmts := ARRAY[format('CREATE SCHEMA %I', sh)];
    FOREACH tn IN ARRAY p.tables LOOP
        SELECT cl.relname, cl.relpersistence, ts.spcname INTO c
          FROM pg_class cl LEFT JOIN pg_tablespace ts ON ts.oid = cl.reltablespace
         WHERE cl.oid = ocx._relation_oid(tn);
        stmts := stmts || format('CREATE %sTABLE %I.%I (LIKE %s INCLUDING ALL)%s',
                                 CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, sh, c.relname, tn,
                                 CASE WHEN c.spcname IS NOT NULL THEN format(' TABLESPACE %I', c.spcname) ELSE '' END);
    END LOOP;
    PERFORM ocx._execute_as_author(owner, stmts);
    stmts := '{}';
    FOREACH tn IN ARRAY p.tables LOOP
        stmts := stmts || ocx._projection_acl_sync(ocx._relation_oid(tn)::regclass,
                              ocx._relation_oid(format('%I.%I', sh, (SELECT relname FROM pg_class
                                                                      WHERE oid = ocx._relation_oid(tn))))::regclass);
    END LOOP;
    PERFORM ocx._execute_as_author(owner, stmts);
    RETURN sh;
END;
$$;
COMMENT ON FUNCTION ocx._projection_shadow_create(ocx.projections) IS
    'internal: create a projection''s shadow schema with empty copies of its read-model tables (as its owner); returns the schema';

-- Called by the worker once the shadow replay has caught up: in the worker's
-- transaction, lock the live tables (waiting at most 1 s), give the shadow
-- tables their owner, privileges and comment, drop the live tables, move the
-- shadow tables in, and move the checkpoint to the shadow's (of a
-- partitioned projection: every partition's checkpoint to its shadow's).
-- false (try again later) when the row or the locks were not granted or a
-- live checkpoint is still ahead of its shadow's.
CREATE FUNCTION ocx._projection_swap(name text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections;
    owner regrole;
    saved_timeout text := current_setting('lock_timeout');
    tn text;
    c record;
    stmts text[] := '{}';
BEGIN
    -- Holding the row, no batch of a partition, live or shadow, commits a
    -- checkpoint meanwhile: each shares the row (SKIP LOCKED) first.
    SELECT * INTO p FROM ocx.projections WHERE projections.name = _projection_swap.name FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR p.shadow_schema IS NULL THEN
        RETURN false;
    END IF;
    -- not before the shadow has every event the live tables have: a reader
    -- must never see the read model go back.  Partitioned: every partition's
    -- shadow must have every event of its partition the live tables have.
    IF p.partitions > 1 THEN
        IF (SELECT count(*) FROM ocx.projection_partitions pp
              JOIN ocx.projection_shadow_partitions s
                ON s.projection = pp.projection AND s.partition = pp.partition
             WHERE pp.projection = p.name AND pp.partition < p.partitions
               AND (s.checkpoint_txid, s.checkpoint_position) >= (pp.checkpoint_txid, pp.checkpoint_position))
           <> p.partitions THEN
            RETURN false;
        END IF;
    ELSIF (p.shadow_checkpoint_txid, p.shadow_checkpoint_position) < (p.checkpoint_txid, p.checkpoint_position) THEN
        RETURN false;
    END IF;
    owner := to_regrole(quote_ident(p.owner));
    BEGIN
        PERFORM set_config('lock_timeout', '1s', true);
        PERFORM ocx._execute_as_author(owner, ARRAY[format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE',
                                                           array_to_string(p.tables, ', '))]);
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;
    END;
    PERFORM set_config('lock_timeout', saved_timeout, true);
    -- under the locks nothing new can come to depend on the tables
    PERFORM ocx._projection_shadow_check(p);
    FOREACH tn IN ARRAY p.tables LOOP
        SELECT cl.relname, n.nspname INTO c
          FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = ocx._relation_oid(tn);
        stmts := stmts
                 || ocx._projection_acl_sync(ocx._relation_oid(tn)::regclass,
                                             ocx._relation_oid(format('%I.%I', p.shadow_schema, c.relname))::regclass)
                 || format('DROP TABLE %s', tn)
                 || format('ALTER TABLE %I.%I SET SCHEMA %I', p.shadow_schema, c.relname, c.nspname);
    END LOOP;
    PERFORM ocx._execute_as_author(owner, stmts || format('DROP SCHEMA %I', p.shadow_schema));
    -- every event up to the shadow checkpoint is in the new tables
    DELETE FROM ocx.dead_letters d WHERE d.projection = p.name AND d.state IN ('parked', 'held');
    IF p.partitions > 1 THEN
        UPDATE ocx.projection_partitions pp
           SET checkpoint_txid = s.checkpoint_txid, checkpoint_position = s.checkpoint_position,
               checkpoint_time = (SELECT e.time FROM ocx.events e WHERE e.global_position = s.checkpoint_position),
               events_applied = s.rebuild_done, failing_position = NULL, failing_attempts = 0, retry_at = NULL,
               rebuild_done = 0, updated_at = now()
          FROM ocx.projection_shadow_partitions s
         WHERE pp.projection = p.name AND s.projection = pp.projection AND s.partition = pp.partition;
        DELETE FROM ocx.projection_shadow_partitions s WHERE s.projection = p.name;
        -- the status sums the partitions' counts with the projection's own
        UPDATE ocx.projections
           SET events_applied = 0, rebuild_done = (SELECT COALESCE(sum(pp.events_applied), 0)
                                                     FROM ocx.projection_partitions pp
                                                    WHERE pp.projection = p.name),
               failing_position = NULL, failing_attempts = 0, retry_at = NULL,
               rebuild_finished_at = now(), shadow_schema = NULL, shadow_checkpoint_txid = NULL,
               shadow_checkpoint_position = NULL, shadow_failures = 0, updated_at = now()
         WHERE projections.name = p.name;
        RETURN true;
    END IF;
    UPDATE ocx.projections
       SET checkpoint_txid = p.shadow_checkpoint_txid, checkpoint_position = p.shadow_checkpoint_position,
           checkpoint_time = (SELECT e.time FROM ocx.events e WHERE e.global_position = p.shadow_checkpoint_position),
           events_applied = p.rebuild_done, failing_position = NULL, failing_attempts = 0, retry_at = NULL,
           rebuild_finished_at = now(), shadow_schema = NULL, shadow_checkpoint_txid = NULL,
           shadow_checkpoint_position = NULL, shadow_failures = 0, updated_at = now()
     WHERE projections.name = p.name;
    RETURN true;
END;
$$;
COMMENT ON FUNCTION ocx._projection_swap(text) IS
    'internal (worker): swap a caught-up blue/green rebuild''s shadow tables in for the live ones, with the checkpoint (every partition''s), in one transaction; false when the live tables are busy';

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

-- Runs with ocx_owner's rights and records its caller: see src/security.c.
CREATE FUNCTION ocx.define_projection(name text, handler regprocedure, types text[] DEFAULT NULL,
                                      categories text[] DEFAULT NULL, mode text DEFAULT 'async',
                                      retry jsonb DEFAULT NULL, reset regprocedure DEFAULT NULL,
                                      partitions integer DEFAULT 1, tables regclass[] DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_projection(text, regprocedure, text[], text[], text, jsonb, regprocedure, integer, regclass[]) IS
    'define (or redefine, keeping its checkpoint) a projection: handler(e ocx.event) per matching event, async in the worker (in partitions by stream, processed in parallel) or inline in the append; tables declares its read-model tables (for rebuild_projection(shadow => true))';

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
        UPDATE ocx.projection_partitions pp
           SET failing_attempts = 0, failing_position = NULL, retry_at = NULL, updated_at = now()
         WHERE pp.projection = resume_projection.name;
        PERFORM ocx._wake_worker();
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx.resume_projection(text) IS
    'resume a paused projection, or one stopped by its retry policy (the failed event is tried again)';

-- The reset function runs as the projection's owner (ocx._call_as_author).
-- With shadow, the live read model is left alone: the worker replays the log
-- into shadow copies of the declared tables and swaps them in when caught up.
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
           SET shadow_schema = sh,
               -- a partitioned one: each partition's (ocx.projection_shadow_partitions)
               shadow_checkpoint_txid = CASE WHEN p.partitions OPERATOR(pg_catalog.>) 1 THEN NULL ELSE '0'::pg_catalog.xid8 END,
               shadow_checkpoint_position = CASE WHEN p.partitions OPERATOR(pg_catalog.>) 1 THEN NULL ELSE 0 END,
               shadow_failures = 0, rebuild_started_at = pg_catalog.now(), rebuild_finished_at = NULL,
               rebuild_total = ocx._count_matching(p.types, p.categories), rebuild_done = 0,
               updated_at = pg_catalog.now()
         WHERE projections.name OPERATOR(pg_catalog.=) p.name;
        -- a partitioned projection: each partition replays into the shadow
        -- tables from its own shadow checkpoint
        INSERT INTO ocx.projection_shadow_partitions (projection, partition)
        SELECT p.name, g FROM pg_catalog.generate_series(0, p.partitions OPERATOR(pg_catalog.-) 1) g
         WHERE p.partitions OPERATOR(pg_catalog.>) 1;
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
    -- a batch running meanwhile read the stream as held back: moving
    -- updated_at makes it start again (its recheck compares it)
    UPDATE ocx.projections x
       SET updated_at = GREATEST(pg_catalog.clock_timestamp(),
                                 x.updated_at OPERATOR(pg_catalog.+) '1 microsecond'::pg_catalog.interval)
     WHERE x.name OPERATOR(pg_catalog.=) p.name;
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

-- A projection's lag: the events it selects after its checkpoint, and the
-- time of the oldest.  A SQL function, inlined into ocx.projection_status
-- (the same plan as the subquery it stands for); ocx.distribute() replaces
-- it on a distributed log, where Citus does not join the view's local tables
-- with ocx.events (docs/scaling.md).
CREATE FUNCTION ocx._projection_lag(checkpoint_txid xid8, checkpoint_position bigint,
                                    types text[], categories text[],
                                    OUT events bigint, OUT oldest timestamptz)
    RETURNS SETOF record
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT pg_catalog.count(*) AS events, pg_catalog.min(e.time) AS oldest
      FROM ocx.events e
     WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>)
           (_projection_lag.checkpoint_txid, _projection_lag.checkpoint_position)
       AND ocx._log_selects(e.type, e.stream_id, _projection_lag.types, _projection_lag.categories);
END;
COMMENT ON FUNCTION ocx._projection_lag(xid8, bigint, text[], text[]) IS
    'internal: the events a projection selects after its checkpoint, and the time of the oldest (ocx.projection_status)';

-- security_invoker: the caller's row-level security applies to what the
-- view reads (the full error, the lag over ocx.events, the dead letters),
-- and pg_stat_activity's rules to the horizon's holder (its age needs
-- pg_read_all_stats when another role's session holds it).
CREATE VIEW ocx.projection_status WITH (security_invoker = true) AS
SELECT p.name, p.mode, p.state,
       ocx.cursor(c.checkpoint_txid, c.checkpoint_position) AS "checkpoint",
       c.events_applied,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN lag.events ELSE 0 END AS lag_events,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN COALESCE(EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) lag.oldest)::float8, 0)
            ELSE 0 END AS lag_seconds,
       CASE WHEN pe.at OPERATOR(pg_catalog.>=) p.last_error_at THEN pe.error ELSE p.last_error END AS last_error,
       p.last_error_at, c.failing_attempts, c.retry_at,
       (SELECT pg_catalog.count(*) FROM ocx.dead_letters d
         WHERE d.projection OPERATOR(pg_catalog.=) p.name
           AND d.state OPERATOR(pg_catalog.=) 'parked') AS dead_letters,
       c.rebuild_done, p.rebuild_total,
       rb.rate AS rebuild_rate,
       CASE WHEN (p.state OPERATOR(pg_catalog.=) 'rebuilding' OR p.shadow_schema IS NOT NULL)
                 AND rb.rate OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.make_interval(secs => GREATEST(p.rebuild_total OPERATOR(pg_catalog.-) c.rebuild_done, 0)
                                                  OPERATOR(pg_catalog./) rb.rate)
       END AS rebuild_eta,
       p.handler, p.types, p.categories, p.retry, p.owner,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN hz.xact_age END AS horizon_age,
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN hz.pid END AS horizon_pid,
       CASE WHEN p.shadow_schema IS NOT NULL
            THEN COALESCE(c.shadow_checkpoint, ocx.cursor(p.shadow_checkpoint_txid, p.shadow_checkpoint_position))
       END AS shadow_checkpoint,
       p.partitions,
       -- lag_seconds as an interval (the vocabulary: every duration an
       -- interval); appended last, as CREATE OR REPLACE VIEW requires
       CASE WHEN p.mode OPERATOR(pg_catalog.=) 'async' OR p.state OPERATOR(pg_catalog.=) 'rebuilding'
            THEN COALESCE(pg_catalog.now() OPERATOR(pg_catalog.-) lag.oldest, '0'::interval)
            ELSE '0'::interval END AS lag
  FROM ocx.projections p
  LEFT JOIN ocx.projection_errors pe ON pe.projection OPERATOR(pg_catalog.=) p.name
  -- a partitioned projection: its slowest partition's checkpoint, the sums of the others
  CROSS JOIN LATERAL (
       SELECT COALESCE(pmin.checkpoint_txid, p.checkpoint_txid) AS checkpoint_txid,
              COALESCE(pmin.checkpoint_position, p.checkpoint_position) AS checkpoint_position,
              p.events_applied OPERATOR(pg_catalog.+) COALESCE(psum.events_applied, 0) AS events_applied,
              CASE WHEN p.partitions OPERATOR(pg_catalog.>) 1 THEN psum.failing_attempts
                   ELSE p.failing_attempts END AS failing_attempts,
              CASE WHEN p.partitions OPERATOR(pg_catalog.>) 1 THEN psum.retry_at ELSE p.retry_at END AS retry_at,
              p.rebuild_done OPERATOR(pg_catalog.+)
              COALESCE(ssum.rebuild_done, psum.rebuild_done, 0) AS rebuild_done,
              ssum.shadow_checkpoint
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (
              SELECT pp.checkpoint_txid, pp.checkpoint_position FROM ocx.projection_partitions pp
               WHERE pp.projection OPERATOR(pg_catalog.=) p.name AND p.partitions OPERATOR(pg_catalog.>) 1
               ORDER BY pp.checkpoint_txid, pp.checkpoint_position LIMIT 1) pmin ON true
         LEFT JOIN LATERAL (
              SELECT pg_catalog.sum(pp.events_applied)::bigint AS events_applied,
                     pg_catalog.max(pp.failing_attempts) AS failing_attempts,
                     pg_catalog.min(pp.retry_at) AS retry_at,
                     pg_catalog.sum(pp.rebuild_done)::bigint AS rebuild_done
                FROM ocx.projection_partitions pp
               WHERE pp.projection OPERATOR(pg_catalog.=) p.name AND p.partitions OPERATOR(pg_catalog.>) 1) psum ON true
         -- its blue/green rebuild: the slowest partition's shadow checkpoint, their progress
         LEFT JOIN LATERAL (
              SELECT (SELECT ocx.cursor(s.checkpoint_txid, s.checkpoint_position)
                        FROM ocx.projection_shadow_partitions s
                       WHERE s.projection OPERATOR(pg_catalog.=) p.name AND p.shadow_schema IS NOT NULL
                       ORDER BY s.checkpoint_txid, s.checkpoint_position LIMIT 1) AS shadow_checkpoint,
                     (SELECT pg_catalog.sum(s.rebuild_done)::bigint
                        FROM ocx.projection_shadow_partitions s
                       WHERE s.projection OPERATOR(pg_catalog.=) p.name
                         AND p.shadow_schema IS NOT NULL) AS rebuild_done) ssum ON true
       ) c
  LEFT JOIN LATERAL ocx._projection_lag(c.checkpoint_txid, c.checkpoint_position, p.types, p.categories) lag ON true
  LEFT JOIN LATERAL (
       SELECT c.rebuild_done::float8 OPERATOR(pg_catalog./)
              NULLIF(EXTRACT(epoch FROM COALESCE(p.rebuild_finished_at, pg_catalog.now())
                                        OPERATOR(pg_catalog.-) p.rebuild_started_at)::float8, 0) AS rate
       ) rb ON true
  LEFT JOIN ocx.horizon_holder() hz ON true;
COMMENT ON VIEW ocx.projection_status IS
    'every projection: state, checkpoint (of its slowest partition), lag in events and as an interval (lag; lag_seconds, the same in seconds, is deprecated), last error (in full for the failed event''s tenant), dead letters, rebuild progress (done/total, events/s, ETA; shadow_checkpoint during a blue/green rebuild), the age and pid of the transaction holding the log horizon, partitions; read under the caller''s row-level security';
COMMENT ON COLUMN ocx.projection_status.lag IS
    'how long the oldest event the projection has still to apply has waited (by event time), 0 when none';
COMMENT ON COLUMN ocx.projection_status.lag_seconds IS
    'deprecated since 0.3.0 (removed in 0.4.0): lag, in seconds as a number';
REVOKE ALL ON ocx.projection_status FROM PUBLIC;

-- Read-your-writes (issue 12): wait until a projection has passed a cursor.
-- Runs with the caller's rights; see src/waitfor.c.
CREATE FUNCTION ocx.wait_for(projection text, cursor ocx.cursor, timeout interval) RETURNS boolean
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_wait_for';
COMMENT ON FUNCTION ocx.wait_for(text, ocx.cursor, interval) IS
    'wait until the projection has passed the cursor (its checkpoint is at or after it; or the cursor''s transaction has ended and the projection is inline or has no event it wants up to the cursor left): true, or false when the timeout passes first; woken by the worker''s latch';

-- A database with ocx gets its worker as soon as the extension is created.
SELECT ocx._wake_worker();
