
-- 61_retry.sql (issue 12): one retry policy shape, one backoff, and
-- order-preserving dead letters.
--
-- A retry policy is {"max_attempts": n, "base_delay": interval, "max_delay":
-- interval} for projections and command handlers alike, checked by one
-- function (ocx._retry_policy) and backed off by one (ocx.retry_delay, the C
-- function the projection worker calls too).  Projection policies gain
-- on_failure: "skip" (as before) or "park_stream": later events of a
-- dead-lettered event's stream are held back (ocx.dead_letters, state held)
-- until ocx.retry_dead_letter or the new ocx.skip_dead_letter resolves it.
-- The stored projection policies are rewritten into the new shape below (the
-- worker reads that shape only); the 0.2.0 keys are still accepted by
-- define_projection, with a WARNING (OX205).
--
-- ocx._define_projection, ocx._define_command_handler,
-- ocx.rebuild_projection and ocx.retry_dead_letter are redefined last by
-- 90_security.sql: their final text is there.

ALTER TABLE ocx.dead_letters ADD COLUMN holds_stream boolean NOT NULL DEFAULT false;
ALTER TABLE ocx.dead_letters DROP CONSTRAINT dead_letters_state_check;
ALTER TABLE ocx.dead_letters ADD CONSTRAINT dead_letters_state_check CHECK (state IN ('parked', 'held', 'resolved'));
COMMENT ON TABLE ocx.dead_letters IS
    'events a handler failed on after every retry, with the error (state parked; holds_stream: later events of its stream wait, on_failure park_stream), and the events held back behind them (state held); ocx.retry_dead_letter(id) and ocx.skip_dead_letter(id) resolve them';

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
CREATE OR REPLACE FUNCTION ocx._projection_retry(retry jsonb) RETURNS jsonb
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

-- The stored policies, in the new shape: max_attempts (at most 1000, the
-- bound of the new shape), base_delay and max_delay as intervals in their
-- canonical text (ocx._retry_policy prints them with IntervalStyle postgres),
-- on_failure "skip" (what 0.2.0 did).
UPDATE ocx.projections p
   SET retry = ocx._retry_policy(
           jsonb_build_object(
               'max_attempts', LEAST(COALESCE((p.retry ->> 'attempts')::numeric, 3), 1000)::integer,
               'base_delay', COALESCE(p.retry ->> 'base_delay_ms', '100') || ' milliseconds',
               'max_delay', COALESCE(p.retry ->> 'max_delay_ms', '10000') || ' milliseconds',
               'on_exhausted', COALESCE(p.retry ->> 'on_exhausted', 'dead_letter'),
               'on_failure', 'skip'),
           '{}', 'OX201', ARRAY['on_exhausted', 'on_failure'])
 WHERE NOT p.retry ? 'max_attempts';

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

CREATE FUNCTION ocx.skip_dead_letter(id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d ocx.dead_letters := ocx._parked_dead_letter(id);
    p ocx.projections := ocx._projection_row(d.projection);
BEGIN
    UPDATE ocx.dead_letters dl SET state = 'resolved', resolved_at = pg_catalog.now()
     WHERE dl.id OPERATOR(pg_catalog.=) d.id;
    PERFORM ocx._release_held(p, d.stream_id);
END;
$$;
COMMENT ON FUNCTION ocx.skip_dead_letter(bigint) IS
    'give up on a dead-lettered event: mark it resolved without running it, then apply the events of its stream held back behind it (on_failure park_stream), in this transaction';

CREATE OR REPLACE FUNCTION ocx.fail_command(command_id uuid, error text, retry boolean DEFAULT true,
                                 claim_token uuid DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c       ocx.commands := ocx._running_command(fail_command.command_id, fail_command.claim_token);
    h       ocx.command_handlers;
    delay   interval;
BEGIN
    SELECT * INTO h FROM ocx.command_handlers x WHERE x.command_type = c.type;
    IF NOT FOUND THEN
        h.max_attempts := 5; h.base_delay := '1 second'; h.max_delay := '5 minutes';
    END IF;
    IF coalesce(retry, true) AND c.attempts < h.max_attempts THEN
        delay := ocx.retry_delay(jsonb_build_object('base_delay', h.base_delay, 'max_delay', h.max_delay),
                                 c.attempts);
        UPDATE ocx.commands x SET status = 'pending', claimed_by = NULL, claimed_until = NULL,
               run_after = now() + delay, last_error = fail_command.error, updated_at = now()
         WHERE x.command_id = c.command_id;
        INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
            VALUES (c.command_id, 'failed', c.attempts, c.claimed_by,
                    coalesce(error, '') || ' (retry in ' || delay::text || ')');
        RETURN 'pending';
    END IF;
    UPDATE ocx.commands x SET status = 'dead_letter', claimed_by = NULL, claimed_until = NULL,
           last_error = fail_command.error, updated_at = now(), finished_at = now()
     WHERE x.command_id = c.command_id;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
        VALUES (c.command_id, 'dead_letter', c.attempts, c.claimed_by, error);
    RETURN 'dead_letter';
END
$$;
COMMENT ON FUNCTION ocx.fail_command(uuid, text, boolean, uuid) IS
    'record a failed attempt: retried with exponential backoff per the type''s policy, then (or with retry => false) a dead letter; returns the new status; claim_token (from claim_commands) must name the live claim, else OX324';
