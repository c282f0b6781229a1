-- Issue 12, "one reader": every consumer reads the log through one
-- definition (sql/parts/22_reader.sql): ocx._read_log (the events after a
-- cursor below the horizon, selected by ocx._log_selects, upcast or as
-- stored) and ocx._log_tail.  read_all, poll, the saga task, the
-- subscription lag gauge, projection_status's lag and _count_matching now
-- call them; the worker's batch and the bus wake-up do too (src/reader.c,
-- src/bus.c).  Public signatures are unchanged.

CREATE FUNCTION ocx._log_selects(type text, stream_id text, types text[], categories text[])
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (_log_selects.types IS NULL OR _log_selects.type = ANY (_log_selects.types))
       AND (_log_selects.categories IS NULL
            OR ocx.category(_log_selects.stream_id) = ANY (_log_selects.categories));
COMMENT ON FUNCTION ocx._log_selects(text, text, text[], text[]) IS
    'internal: whether a reader with these types and categories (NULL: all) selects an event of this type and stream';

-- The one reader: the events after a cursor, in log order, below the
-- horizon (ocx.log_horizon() once for the read, or the horizon a consumer
-- took for its whole pass), that the filter selects, upcast or as stored.
-- Filters apply before upcasting: an event left out is never upcast.
CREATE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[], categories text[],
                              upcast boolean, horizon xid8 DEFAULT NULL, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN _read_log.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN _read_log.upcast IS FALSE THEN e.data
                ELSE ocx._upcast(e.type, e.schema_version, e.data) END, e.metadata, e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < COALESCE(_read_log.horizon, (SELECT ocx.log_horizon()))
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(CASE WHEN _read_log.after_time IS NULL THEN _read_log."after"
                                                                  ELSE ocx._read_start(_read_log."after", _read_log.after_time) END),
                                                   '0'::xid8),
                                          COALESCE(ocx.global_position(CASE WHEN _read_log.after_time IS NULL THEN _read_log."after"
                                                                            ELSE ocx._read_start(_read_log."after", _read_log.after_time) END),
                                                   0))
       AND (_read_log.after_time IS NULL OR e.time >= _read_log.after_time)
       AND ocx._log_selects(e.type, e.stream_id, _read_log.types, _read_log.categories)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log.max_count);
END;
COMMENT ON FUNCTION ocx._read_log(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader of the log: events after a cursor in gap-free log order, below the horizon (given, or ocx.log_horizon() once), selected by types and categories, upcast or as stored; after_time: only events whose time is >= it, started through the time map (ocx._read_start)';

-- The cursor of the last event below the horizon after a cursor (NULL when
-- there is none): where a consumer that found nothing it wants moves to.
CREATE FUNCTION ocx._log_tail("after" ocx.cursor, horizon xid8 DEFAULT NULL) RETURNS ocx.cursor
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < COALESCE(_log_tail.horizon, (SELECT ocx.log_horizon()))
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(_log_tail."after"), '0'::xid8),
                                          COALESCE(ocx.global_position(_log_tail."after"), 0))
     ORDER BY e.txid DESC, e.global_position DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx._log_tail(ocx.cursor, xid8) IS
    'internal: the cursor of the last event below the horizon (given, or ocx.log_horizon()) after a cursor, NULL when there is none';


CREATE OR REPLACE FUNCTION ocx.read_all("after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                             types text[] DEFAULT NULL, categories text[] DEFAULT NULL,
                             upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx._read_log(read_all."after", read_all.max_count, read_all.types,
                                read_all.categories, read_all.upcast, NULL, read_all.after_time);
END;
COMMENT ON FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[], boolean, timestamptz) IS
    'events after a cursor in gap-free log order (only transactions below the snapshot''s xmin); NULL max_count = no limit; upcast => false returns them as stored (schema_version and data as written), for events whose upcaster fails (OX121); after_time: only events whose time is >= it, found through the time map without scanning the log';

CREATE OR REPLACE FUNCTION ocx.read_category(category text, "after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                                  upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx.read_all(read_category."after", read_category.max_count, NULL,
                               ARRAY[ocx._stream_arg(read_category.category)], read_category.upcast,
                               read_category.after_time);
END;
COMMENT ON FUNCTION ocx.read_category(text, ocx.cursor, integer, boolean, timestamptz) IS
    'the events of one category (stream ids "category-...") in gap-free log order; upcast => false returns them as stored; after_time: only events whose time is >= it';


CREATE OR REPLACE FUNCTION ocx._count_matching(types text[], categories text[]) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT pg_catalog.count(*) FROM ocx.events e
     WHERE ocx._log_selects(e.type, e.stream_id, _count_matching.types, _count_matching.categories);
END;
COMMENT ON FUNCTION ocx._count_matching(text[], text[]) IS 'internal: how many events a projection filter selects';


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
REVOKE ALL ON ocx.projection_status FROM PUBLIC;


CREATE OR REPLACE FUNCTION ocx.poll(name text, max_count integer DEFAULT 100, consumer text DEFAULT 'default')
    RETURNS SETOF ocx.event
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub     ocx.subscriptions;
    live    text[];
    nlive   integer;
    me      integer;
    evs     ocx.event[];
    tail    ocx.cursor;
    horizon xid8;
    lo_txid xid8;
    lo_pos  bigint;
    end_txid xid8;
    end_pos bigint;
    ev      ocx.event;
    msg     text;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._bus_name_arg('consumer name', consumer);
    IF max_count IS NULL OR max_count < 0 OR max_count > 100000 THEN
        RAISE EXCEPTION 'max_count must be between 0 and 100000'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(max_count::text, 'NULL'));
    END IF;
    SELECT * INTO sub FROM ocx.subscriptions s
     WHERE s.name = poll.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.create_subscription.';
    END IF;

    -- forget consumers gone for long (their partitions were taken over long ago)
    DELETE FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name AND c.last_seen < now() - sub.lease * 10;
    INSERT INTO ocx.subscription_consumers AS c (subscription, consumer, last_seen)
        VALUES (sub.name, poll.consumer, now())
        ON CONFLICT ON CONSTRAINT subscription_consumers_pkey DO UPDATE SET last_seen = excluded.last_seen;
    SELECT array_agg(c.consumer ORDER BY c.consumer) INTO live
      FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name
       AND c.last_seen > now() - sub.lease;
    nlive := cardinality(live);
    me := array_position(live, poll.consumer) - 1;

    -- give back partitions that now belong to another consumer, once acknowledged
    UPDATE ocx.subscription_partitions p SET owner = NULL, lease_until = NULL, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name AND p.owner = poll.consumer
       AND p.partition % nlive <> me
       AND (p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));
    -- take this consumer's share when it is free, its holder's lease ran out,
    -- or its holder has nothing in flight
    UPDATE ocx.subscription_partitions p SET owner = poll.consumer, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name
       AND p.partition % nlive = me
       AND p.owner IS DISTINCT FROM poll.consumer
       AND (p.owner IS NULL OR p.lease_until < now()
            OR p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));

    -- one horizon for the whole poll (every transaction below it has ended,
    -- so the log there is complete): the read and the move past what it
    -- filters out must agree
    horizon := ocx.log_horizon();
    SELECT q.acked_txid, q.acked_position INTO lo_txid, lo_pos FROM ocx.subscription_partitions q
     WHERE q.subscription = sub.name AND q.owner = poll.consumer
     ORDER BY q.acked_txid, q.acked_position LIMIT 1;

    -- the events as stored, through the one reader (filters first: an event
    -- filtered out is never upcast), after the lowest acknowledged cursor
    SELECT array_agg(x ORDER BY (x).txid, (x).global_position) INTO evs FROM (
        SELECT e.*
          FROM ocx._read_log(ocx.cursor(lo_txid, lo_pos), NULL, sub.types, sub.categories, false, horizon) e
          JOIN ocx.subscription_partitions p
            ON p.subscription = sub.name
           AND p.owner = poll.consumer
           AND p.partition = ocx.stream_partition(e.stream_id, sub.partitions)
         WHERE (e.txid, e.global_position) > (p.acked_txid, p.acked_position)
         ORDER BY e.txid, e.global_position
         LIMIT max_count) x;

    -- upcast like every read; a poison event (its upcaster fails, OX121)
    -- fails the poll (on_poison = stop) or is handed over as stored, marked
    -- in metadata.ocx_poison, and recorded as the subscription's dead letter
    IF evs IS NOT NULL THEN
        BEGIN
            SELECT array_agg(ocx._upcast_event(evs[i]) ORDER BY i) INTO evs
              FROM pg_catalog.generate_subscripts(evs, 1) i;
        EXCEPTION WHEN SQLSTATE 'OX121' THEN
            IF sub.on_poison = 'stop' THEN
                RAISE;
            END IF;
            FOR i IN 1 .. cardinality(evs) LOOP
                BEGIN
                    evs[i] := ocx._upcast_event(evs[i]);
                EXCEPTION WHEN SQLSTATE 'OX121' THEN
                    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
                    ev := evs[i];
                    INSERT INTO ocx.subscription_dead_letters AS d
                        (subscription, global_position, txid, stream_id, stream_version, event_id,
                         type, schema_version, sqlstate, error, tenant_id)
                        VALUES (sub.name, ev.global_position, ev.txid, ev.stream_id, ev.stream_version,
                                ev.event_id, ev.type, ev.schema_version, 'OX121', msg, ev.tenant_id)
                        ON CONFLICT ON CONSTRAINT subscription_dead_letters_pkey DO NOTHING;
                    ev.metadata := ev.metadata || jsonb_build_object('ocx_poison',
                        jsonb_build_object('sqlstate', 'OX121', 'error', msg));
                    evs[i] := ev;
                END;
            END LOOP;
        END;
    END IF;

    -- nothing for this consumer up to the horizon: the scan went through
    -- the whole log below it, so its partitions move to the last event there
    -- and the next poll starts after it (a subscription never rescans the
    -- history it filters out; nothing is in flight to ack)
    IF evs IS NULL AND max_count > 0 AND lo_txid IS NOT NULL THEN
        SELECT ocx.txid(t), ocx.global_position(t) INTO end_txid, end_pos
          FROM ocx._log_tail(ocx.cursor(lo_txid, lo_pos), horizon) t;
    END IF;

    IF evs IS NOT NULL THEN
        tail := (evs[cardinality(evs)])."cursor";
    END IF;
    -- what is in flight now: everything up to the last event handed out (a
    -- poll of 0 events only renews the lease)
    UPDATE ocx.subscription_partitions p
       SET lease_until = now() + sub.lease,
           (delivered_txid, delivered_position) =
               (SELECT ocx.txid(g), ocx.global_position(g) FROM (
                    SELECT greatest(tail, ocx.cursor(p.acked_txid, p.acked_position)) AS g
                     WHERE tail IS NOT NULL) s)
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count > 0;
    UPDATE ocx.subscription_partitions p SET lease_until = now() + sub.lease
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count = 0;
    IF end_txid IS NOT NULL THEN
        UPDATE ocx.subscription_partitions p SET acked_txid = end_txid, acked_position = end_pos
         WHERE p.subscription = sub.name AND p.owner = poll.consumer
           AND (p.acked_txid, p.acked_position) < (end_txid, end_pos);
    END IF;

    IF evs IS NOT NULL THEN
        RETURN QUERY SELECT * FROM unnest(evs);
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.poll(text, integer, text) IS
    'up to max_count events after the acknowledged cursor, in gap-free log order, upcast (a poison event as stored, marked, per on_poison), from the partitions this consumer holds; an empty poll moves their cursor to the last event below its horizon, so the next poll scans only what is new';


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
        SELECT ocx.txid(t), ocx.global_position(t) INTO last_tx, last_gp
          FROM ocx._log_tail(ocx.cursor(cur.txid, cur.global_position), horizon) t;
    ELSE
        -- the batch, through the one reader (as stored: sagas read data as written)
        SELECT b.txid, b.global_position, b.n INTO last_tx, last_gp, seen FROM (
            SELECT rl.txid, rl.global_position, count(*) OVER () AS n
              FROM ocx._read_log(ocx.cursor(cur.txid, cur.global_position), max_events,
                                 NULL, NULL, false, horizon) rl) b
         ORDER BY b.txid DESC, b.global_position DESC
         LIMIT 1;
        IF last_tx IS NOT NULL THEN
            FOR e IN
                SELECT e2.* FROM ocx._read_log(ocx.cursor(cur.txid, cur.global_position), seen,
                                               NULL, NULL, false, horizon) rl
                  JOIN ocx.events e2 ON e2.global_position = rl.global_position
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
