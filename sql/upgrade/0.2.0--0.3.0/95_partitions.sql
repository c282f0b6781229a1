
-- Issue 12: a projection split into partitions by stream, each partition a
-- unit of work with its own checkpoint (ocx.projection_partitions).
-- define_projection, _define_projection and rebuild_projection, which use
-- them, are in 90_security.sql.
ALTER TABLE ocx.projections
    ADD COLUMN partitions integer NOT NULL DEFAULT 1 CHECK (partitions BETWEEN 1 AND 64);
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

CREATE OR REPLACE FUNCTION ocx.resume_projection(name text) RETURNS void
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

-- security_invoker: the caller's row-level security applies to what the
-- view reads (the full error, the lag over ocx.events, the dead letters),
-- and pg_stat_activity's rules to the horizon's holder (its age needs
-- pg_read_all_stats when another role's session holds it).
CREATE OR REPLACE VIEW ocx.projection_status WITH (security_invoker = true) AS
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
            THEN ocx.cursor(p.shadow_checkpoint_txid, p.shadow_checkpoint_position) END AS shadow_checkpoint,
       p.partitions
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
              p.rebuild_done OPERATOR(pg_catalog.+) COALESCE(psum.rebuild_done, 0) AS rebuild_done
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
       ) c
  LEFT JOIN LATERAL (
       SELECT pg_catalog.count(*) AS events, pg_catalog.min(e.time) AS oldest
         FROM ocx.events e
        WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) (c.checkpoint_txid, c.checkpoint_position)
          AND (p.types IS NULL OR e.type OPERATOR(pg_catalog.=) ANY (p.types))
          AND (p.categories IS NULL OR ocx.category(e.stream_id) OPERATOR(pg_catalog.=) ANY (p.categories))
       ) lag ON true
  LEFT JOIN LATERAL (
       SELECT c.rebuild_done::float8 OPERATOR(pg_catalog./)
              NULLIF(EXTRACT(epoch FROM COALESCE(p.rebuild_finished_at, pg_catalog.now())
                                        OPERATOR(pg_catalog.-) p.rebuild_started_at)::float8, 0) AS rate
       ) rb ON true
  LEFT JOIN ocx.horizon_holder() hz ON true;
COMMENT ON VIEW ocx.projection_status IS
    'every projection: state, checkpoint (of its slowest partition), lag in events and seconds, last error (in full for the failed event''s tenant), dead letters, rebuild progress (done/total, events/s, ETA; shadow_checkpoint during a blue/green rebuild), the age and pid of the transaction holding the log horizon, partitions; read under the caller''s row-level security';
REVOKE ALL ON ocx.projection_status FROM PUBLIC;
