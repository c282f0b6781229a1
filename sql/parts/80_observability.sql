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

    -- the long-transaction stall: who holds the log horizon, for how long
    -- (the age is left out when the caller may not see it, see
    -- ocx.horizon_holder)
    RETURN QUERY
        SELECT g.name, '{}'::jsonb, g.value, g.description
          FROM ocx.horizon_holder() h,
               LATERAL (VALUES
                 ('horizon_age_seconds',
                  CASE WHEN h.backend_xid IS NULL THEN 0
                       ELSE round(EXTRACT(epoch FROM h.xact_age), 3) END,
                  'Age in seconds of the transaction that holds the log horizon (the oldest running transaction id in the cluster); 0 when none.'),
                 ('horizon_holder_pid', COALESCE(h.pid, 0)::numeric,
                  'Process id of the backend whose transaction holds the log horizon; 0 when none holds it or a prepared transaction does.')
               ) AS g(name, value, description)
         WHERE g.value IS NOT NULL;

    IF to_regclass('ocx.projection_status') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT g.name, jsonb_build_object('projection', p.name), g.value, g.description
              FROM ocx.projection_status p,
                   LATERAL (VALUES
                     ('projection_lag_events', p.lag_events::numeric,
                      'Events a projection has still to apply.'),
                     ('projection_lag_seconds', round(EXTRACT(epoch FROM p.lag), 3),
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
                     CROSS JOIN LATERAL ocx._read_log(ocx.cursor(p.acked_txid, p.acked_position), NULL,
                                                      s.types, s.categories, false) e
                     WHERE p.subscription = s.name
                       AND ocx.stream_partition(e.stream_id, s.partitions) = p.partition
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
    'internal: gauges read from the ocx tables (lag per projection and subscription, commands, sagas) and the log horizon''s holder';

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

CREATE VIEW ocx.stats WITH (security_invoker = true) AS
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
