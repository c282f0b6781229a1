-- Issue 11, item 1: a log order that belongs to the database.
--
-- Events and commands store their writer's transaction id in the database's
-- log xid space (the cluster's id plus ocx.log_space.xid_offset) and readers
-- compare with ocx.log_horizon(), the snapshot's xmin in the same space.
-- The offset is 0 here, so nothing stored changes meaning; a restore raises
-- it (src/logspace.c).  read_all and poll take the new horizon in
-- 52_poison.sql, privilege_rules grants the two functions in 90_security.sql;
-- the saga task and the gauges, final text here.

-- The log xid space (docs/architecture.md, "Log order across clusters"):
-- events store their writer's transaction id plus xid_offset, and readers
-- compare with their snapshot's xmin plus xid_offset.  The offset is 0 until
-- a restore: the row is dumped with the data, and the restore's COPY into
-- the row CREATE EXTENSION made raises it by 2^48 above both, so that every
-- new transaction orders after every restored event in any cluster.
CREATE TABLE ocx.log_space (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    xid_offset  bigint NOT NULL DEFAULT 0 CHECK (xid_offset >= 0),
    restores    integer NOT NULL DEFAULT 0 CHECK (restores >= 0),
    restored_at timestamptz
);
INSERT INTO ocx.log_space DEFAULT VALUES;
COMMENT ON TABLE ocx.log_space IS
    'one row: the offset from this cluster''s transaction ids to the log''s (0 until the database is restored)';
COMMENT ON COLUMN ocx.log_space.xid_offset IS
    'added to a transaction id to give its log txid; raised by 2^48 at each restore';
COMMENT ON COLUMN ocx.log_space.restores IS 'how many restores this database''s log has been through';
SELECT pg_catalog.pg_extension_config_dump('ocx.log_space', '');

CREATE FUNCTION ocx._log_space_restore() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE ocx.log_space s
       SET xid_offset = GREATEST(s.xid_offset, NEW.xid_offset) OPERATOR(pg_catalog.+) 281474976710656,
           restores = GREATEST(s.restores, NEW.restores) OPERATOR(pg_catalog.+) 1,
           restored_at = pg_catalog.now()
     WHERE s.id;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION ocx._log_space_restore() IS
    'trigger: a restore''s COPY into ocx.log_space raises the offset by 2^48 above the restored and the existing one instead of failing on its key';
CREATE TRIGGER log_space_restore BEFORE INSERT ON ocx.log_space
    FOR EACH ROW EXECUTE FUNCTION ocx._log_space_restore();

CREATE FUNCTION ocx._log_space_changed() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_log_space_changed';
COMMENT ON FUNCTION ocx._log_space_changed() IS
    'internal trigger: every backend rereads the log xid offset';
CREATE TRIGGER log_space_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.log_space
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._log_space_changed();

CREATE FUNCTION ocx.log_txid() RETURNS xid8
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'ocx_log_txid';
COMMENT ON FUNCTION ocx.log_txid() IS
    'the current transaction''s id in the log xid space (pg_current_xact_id() plus ocx.log_space.xid_offset); assigns one like pg_current_xact_id()';
CREATE FUNCTION ocx.log_horizon() RETURNS xid8
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'ocx_log_horizon';
COMMENT ON FUNCTION ocx.log_horizon() IS
    'the snapshot''s xmin in the log xid space: every event with a txid below it is committed or gone, so readers see only those';

ALTER TABLE ocx.commands ALTER COLUMN txid SET DEFAULT ocx.log_txid();

CREATE OR REPLACE FUNCTION ocx._saga_run(max_events integer, check_dead_letters boolean) RETURNS integer
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
    e       ocx.events;
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
        SELECT e2.txid, e2.global_position INTO last_tx, last_gp
          FROM ocx.events e2
         WHERE e2.txid < horizon
           AND (e2.txid, e2.global_position) > (cur.txid, cur.global_position)
         ORDER BY e2.txid DESC, e2.global_position DESC
         LIMIT 1;
    ELSE
        SELECT b.txid, b.global_position, b.n INTO last_tx, last_gp, seen FROM (
            SELECT e2.txid, e2.global_position, count(*) OVER () AS n
              FROM ocx.events e2
             WHERE e2.txid < horizon
               AND (e2.txid, e2.global_position) > (cur.txid, cur.global_position)
             ORDER BY e2.txid, e2.global_position
             LIMIT max_events) b
         ORDER BY b.txid DESC, b.global_position DESC
         LIMIT 1;
        IF last_tx IS NOT NULL THEN
            FOR e IN
                SELECT e2.* FROM ocx.events e2
                  JOIN ocx.saga_instances x ON x.saga_id = e2.correlation_id AND x.state = 'running'
                 WHERE e2.txid < horizon
                   AND (e2.txid, e2.global_position) > (cur.txid, cur.global_position)
                   AND (e2.txid, e2.global_position) <= (last_tx, last_gp)
                 ORDER BY e2.txid, e2.global_position
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
