-- Issue 12, the long-transaction stall made visible: any open transaction
-- that took an xid holds the log horizon (ocx.log_horizon(), the snapshot's
-- xmin) and so stops every ocx consumer at its xid.  ocx.horizon_holder()
-- names it; ocx.projection_status gains horizon_age and horizon_pid (at the
-- end of its columns) and the gauges horizon_age_seconds and
-- horizon_holder_pid, final text here; privilege_rules grants
-- horizon_holder to ocx_reader in 90_security.sql.  The worker's WARNING
-- (OX211, ocx.horizon_warn_after) is C only (src/horizon.c).

-- The long-transaction stall (docs/projections.md): the log horizon is the
-- oldest transaction id still running in the cluster (other than the
-- caller's own), so the transaction that holds it is the session, worker
-- or prepared transaction with the oldest xid.  Read from pg_stat_activity
-- and pg_prepared_xacts with their rules: every role sees the pid and the
-- xid, the age of another role's session needs pg_read_all_stats.  One row,
-- all NULL when no transaction holds an xid.
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
            UNION ALL
            SELECT NULL::integer, x.prepared, x.transaction, x.database, x.gid
              FROM pg_catalog.pg_prepared_xacts x) h
     ORDER BY pg_catalog.age(h.xid) DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx.horizon_holder() IS
    'the transaction that holds the log horizon (the oldest running xid in the cluster): its backend pid (NULL for a prepared transaction), age, xid, database and prepared gid; all NULL when none';

-- security_invoker: the caller's row-level security applies to what the
-- view reads (the full error, the lag over ocx.events, the dead letters),
-- and pg_stat_activity's rules to the horizon's holder (its age needs
-- pg_read_all_stats when another role's session holds it).
CREATE OR REPLACE VIEW ocx.projection_status WITH (security_invoker = true) AS
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

CREATE OR REPLACE FUNCTION ocx._gauges(OUT name text, OUT labels jsonb, OUT value numeric, OUT description text)
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
                       AND e.txid < ocx.log_horizon()
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
    'internal: gauges read from the ocx tables (lag per projection and subscription, commands, sagas) and the log horizon''s holder';
