-- voc13 (issue 13, "every duration an interval", for result columns too):
-- ocx.projection_status gains lag interval, lag_seconds as an interval,
-- appended as its last column (CREATE OR REPLACE VIEW only appends);
-- lag_seconds stays for this release, deprecated (docs/reference.md).  The
-- whole view as sql/parts/40_projections.sql states it.
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
