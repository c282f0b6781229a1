-- Issue 12, "One reader": the consumers that still read the log their own
-- way read it through the one reader (sql/parts/22_reader.sql).
--
-- The saga task: its events are the rows ocx._read_log hands out (revealed,
-- as stored), no longer rows of ocx.events joined by position;
-- ocx._saga_on_event takes an ocx.event.
DROP FUNCTION ocx._saga_on_event(ocx.events);

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

-- One round of the saga task: events after the cursor, then finished
-- compensations, then timeouts, and with check_dead_letters the step
-- commands that ended as dead letters (a slow path: the caller asks for it
-- about once a second, as it costs a lookup per running saga).  Returns the
-- number of transitions made plus max_events when the event batch was full
-- (the caller runs it again at once).
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
