-- Blue/green rebuilds of partitioned projections (issue 12): a shadow
-- checkpoint per partition (ocx.projection_shadow_partitions), the swap of the
-- tables and every partition's checkpoint in one transaction, the status's
-- shadow progress over the partitions.  Copies of sql/parts/40_projections.sql.

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

COMMENT ON COLUMN ocx.projections.shadow_checkpoint_txid IS
    'during a blue/green rebuild: the txid of the shadow replay''s checkpoint (NULL for a partitioned projection: see ocx.projection_shadow_partitions)';
COMMENT ON COLUMN ocx.projections.shadow_checkpoint_position IS
    'during a blue/green rebuild: the position of the shadow replay''s checkpoint (NULL for a partitioned projection: see ocx.projection_shadow_partitions)';

CREATE OR REPLACE FUNCTION ocx._projection_shadow_discard(name text, reason text DEFAULT NULL) RETURNS void
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

CREATE OR REPLACE FUNCTION ocx._projection_swap(name text) RETURNS boolean
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

CREATE OR REPLACE FUNCTION ocx.rebuild_projection(name text, shadow boolean DEFAULT false) RETURNS void
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
  LEFT JOIN LATERAL (
       SELECT pg_catalog.count(*) AS events, pg_catalog.min(e.time) AS oldest
         FROM ocx.events e
        WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) (c.checkpoint_txid, c.checkpoint_position)
          AND ocx._log_selects(e.type, e.stream_id, p.types, p.categories)
       ) lag ON true
  LEFT JOIN LATERAL (
       SELECT c.rebuild_done::float8 OPERATOR(pg_catalog./)
              NULLIF(EXTRACT(epoch FROM COALESCE(p.rebuild_finished_at, pg_catalog.now())
                                        OPERATOR(pg_catalog.-) p.rebuild_started_at)::float8, 0) AS rate
       ) rb ON true
  LEFT JOIN ocx.horizon_holder() hz ON true;
COMMENT ON VIEW ocx.projection_status IS
    'every projection: state, checkpoint (of its slowest partition), lag in events and seconds, last error (in full for the failed event''s tenant), dead letters, rebuild progress (done/total, events/s, ETA; shadow_checkpoint during a blue/green rebuild), the age and pid of the transaction holding the log horizon, partitions; read under the caller''s row-level security';
