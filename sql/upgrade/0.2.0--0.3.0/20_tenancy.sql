-- Issue 10, item 6: nothing leaks across tenants.  See docs/security.md,
-- "Multi-tenancy", for the decision per table and view.

-- Projections: the full text of a handler's error (it may quote the event)
-- is kept for the event's tenant only; ocx.projections.last_error names the
-- event's position and the SQLSTATE.
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

-- 0.2.0 kept the full text in ocx.projections.last_error: move it to the
-- failed event's tenant, and leave only the position behind.
INSERT INTO ocx.projection_errors AS x (projection, tenant_id, global_position, error, at)
SELECT p.name,
       (SELECT e.tenant_id FROM ocx.events e
         WHERE e.global_position OPERATOR(pg_catalog.=)
               (pg_catalog.substring(p.last_error, '^event ([0-9]+) \('))::bigint),
       (pg_catalog.substring(p.last_error, '^event ([0-9]+) \('))::bigint,
       p.last_error, COALESCE(p.last_error_at, pg_catalog.now())
  FROM ocx.projections p
 WHERE p.last_error OPERATOR(pg_catalog.~) '^event [0-9]+ \(';
UPDATE ocx.projections p
   SET last_error = pg_catalog.format('event %s failed', x.global_position)
  FROM ocx.projection_errors x
 WHERE x.projection OPERATOR(pg_catalog.=) p.name;

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
       p.handler, p.types, p.categories, p.retry, p.owner
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
       ) rb ON true;
COMMENT ON VIEW ocx.projection_status IS
    'every projection: state, checkpoint, lag in events and seconds, last error (in full for the failed event''s tenant), dead letters, rebuild progress (done/total, events/s, ETA); read under the caller''s row-level security';
REVOKE ALL ON ocx.projection_status FROM PUBLIC;

-- Sagas belong to the tenant that started them.
ALTER TABLE ocx.saga_instances
    ADD COLUMN tenant_id text DEFAULT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '');
COMMENT ON COLUMN ocx.saga_instances.tenant_id IS 'the ocx.tenant of the session that started the saga';
-- sagas started by 0.2.0: the tenant of the first event correlated to them
-- (a step's success or failure event), else none
UPDATE ocx.saga_instances i
   SET tenant_id = (SELECT e.tenant_id FROM ocx.events e
                     WHERE e.correlation_id OPERATOR(pg_catalog.=) i.saga_id
                     ORDER BY e.global_position LIMIT 1);
ALTER TABLE ocx.saga_instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.saga_instances FORCE ROW LEVEL SECURITY;
ALTER TABLE ocx.saga_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.saga_steps FORCE ROW LEVEL SECURITY;
CREATE POLICY saga_instances_tenant ON ocx.saga_instances FOR ALL
    USING (tenant_id IS NOT DISTINCT FROM
           (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')))
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


ALTER VIEW ocx.saga_status SET (security_invoker = true);
COMMENT ON VIEW ocx.saga_status IS
    'each saga: state, current step, outstanding command and its status, age, deadline and last error; read under the caller''s row-level security';

-- Every other view reads under its caller's row-level security too.
ALTER VIEW ocx.subscription_status SET (security_invoker = true);
ALTER VIEW ocx.command_status SET (security_invoker = true);
ALTER VIEW ocx.stats SET (security_invoker = true);
