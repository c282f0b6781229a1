-- Projections: definitions, errors, async and inline application, retries,
-- dead letters, pause/resume, rebuild.  Streams here are "pj*-..." only.
\set SHOW_CONTEXT never
\set VERBOSITY terse

CREATE TABLE pj_model (stream_id text, n int, pos bigint);
CREATE FUNCTION pj_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ->> 'poison' = 'yes' THEN
        RAISE EXCEPTION 'poison event in %', e.stream_id USING ERRCODE = '22023';
    END IF;
    INSERT INTO pj_model VALUES (e.stream_id, (e.data ->> 'n')::int, e.global_position);
END $$;
CREATE FUNCTION pj_reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM pj_model $$;
CREATE FUNCTION pj_bad_handler(x int) RETURNS void LANGUAGE sql AS $$ SELECT $$;

-- Wait (up to 20 s) until the projection has applied everything it can see.
CREATE FUNCTION pj_wait(p text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    FOR i IN 1..400 LOOP
        SELECT * INTO s FROM ocx.projection_status WHERE name = p;
        EXIT WHEN s.state = 'stopped'
              OR (s.lag_events = 0 AND s.state IN ('running', 'paused') AND s.retry_at IS NULL);
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN s.state || ' lag=' || s.lag_events;
END $$;

-- argument errors
SELECT ocx.define_projection('1bad', 'pj_handler(ocx.event)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection(NULL, 'pj_handler(ocx.event)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_bad_handler(int)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', mode => 'sometimes');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', types => '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', categories => '{pj,NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', retry => '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', retry => '{"tries": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', retry => '{"max_attempts": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', retry => '{"max_attempts": 1.5}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', retry => '{"on_exhausted": "shrug"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', retry => '{"base_delay": "500 milliseconds", "max_delay": "10 milliseconds"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', reset => 'pj_bad_handler(int)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_projection('pj_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.pause_projection('pj_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.resume_projection('pj_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.rebuild_projection('pj_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.retry_dead_letter(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.retry_dead_letter(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.projections WHERE name LIKE 'pj%';

-- an async projection: past and new events, in log order, exactly once
SELECT ocx.append_event('pja-1', NULL, 'Added', '{"n": 1}');
SELECT ocx.define_projection('pj', 'pj_handler(ocx.event)', categories => '{pja}',
                             retry => '{"max_attempts": 2, "base_delay": "10 milliseconds", "max_delay": "20 milliseconds"}',
                             reset => 'pj_reset()');
SELECT ocx.append('pja-1', 1, '[{"type": "Added", "data": {"n": 2}}, {"type": "Added", "data": {"n": 3}}]');
SELECT ocx.append_event('pjb-1', NULL, 'Added', '{"n": 99}');  -- another category
SELECT pj_wait('pj');
SELECT stream_id, n FROM pj_model ORDER BY pos;
SELECT name, mode, state, events_applied, lag_events, lag_seconds, dead_letters, last_error
  FROM ocx.projection_status WHERE name = 'pj';
-- lag: the same as an interval (lag_seconds is its deprecated numeric twin)
SELECT lag, pg_typeof(lag) FROM ocx.projection_status WHERE name = 'pj';
-- the checkpoint is at or past the last event it wanted (past the events of
-- other categories that followed)
SELECT checkpoint OPERATOR(ocx.>=) (SELECT ocx.cursor(txid, global_position) FROM ocx.events
                                    WHERE stream_id = 'pja-1' ORDER BY txid DESC, global_position DESC LIMIT 1)
  FROM ocx.projection_status WHERE name = 'pj';

-- a poison event is retried, parked, and the projection goes on
SELECT ocx.append('pja-2', NULL, '[{"type": "Added", "data": {"poison": "yes"}}, {"type": "Added", "data": {"n": 5}}]');
SELECT pj_wait('pj');
SELECT stream_id, n FROM pj_model ORDER BY pos;
SELECT state, dead_letters, regexp_replace(last_error, '\d+', 'N') AS last_error
  FROM ocx.projection_status WHERE name = 'pj';
SELECT projection, stream_id, stream_version, type, attempts, error, sqlstate, state
  FROM ocx.dead_letters WHERE projection = 'pj';
-- still poison: the retry fails and the letter stays parked
SELECT ocx.retry_dead_letter((SELECT id FROM ocx.dead_letters WHERE projection = 'pj'));
\echo :LAST_ERROR_SQLSTATE
-- fixed handler: the retry applies it
CREATE OR REPLACE FUNCTION pj_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pj_model VALUES (e.stream_id, coalesce((e.data ->> 'n')::int, -1), e.global_position);
END $$;
SELECT ocx.retry_dead_letter((SELECT id FROM ocx.dead_letters WHERE projection = 'pj'));
SELECT state FROM ocx.dead_letters WHERE projection = 'pj';
DO $$
BEGIN
    PERFORM ocx.retry_dead_letter((SELECT id FROM ocx.dead_letters WHERE projection = 'pj'));
EXCEPTION WHEN SQLSTATE 'OX220' THEN
    RAISE NOTICE 'already resolved: %', SQLSTATE;
END $$;
SELECT stream_id, n FROM pj_model ORDER BY pos;

-- pause: nothing applied; resume: caught up.  "Nothing applied" is read after the
-- worker has provably run past the event: a probe projection on the same category
-- applies it, then an event appended after that one (a later pass)
CREATE TABLE pj_probe_seen (stream_id text);
CREATE FUNCTION pj_probe(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO pj_probe_seen VALUES (e.stream_id) $$;
SELECT ocx.define_projection('pj_probe', 'pj_probe(ocx.event)', categories => '{pja,pjq}');
SELECT pj_wait('pj_probe');
SELECT ocx.pause_projection('pj');
SELECT ocx.append_event('pja-3', NULL, 'Added', '{"n": 6}');
SELECT pj_wait('pj_probe');
SELECT ocx.append_event('pjq-1', NULL, 'Probe', '{}');
SELECT pj_wait('pj_probe');
SELECT count(*) AS probe_saw_both FROM pj_probe_seen WHERE stream_id IN ('pja-3', 'pjq-1');
SELECT ocx.drop_projection('pj_probe');
SELECT state, lag_events FROM ocx.projection_status WHERE name = 'pj';
SELECT lag > '0' AS lagging, extract(epoch FROM lag)::float8 = lag_seconds AS lag_seconds_is_lag
  FROM ocx.projection_status WHERE name = 'pj';
SELECT count(*) FROM pj_model WHERE stream_id = 'pja-3';
SELECT ocx.resume_projection('pj');
SELECT pj_wait('pj');
SELECT count(*) FROM pj_model WHERE stream_id = 'pja-3';

-- rebuild: reset, replay from the start, same read model
CREATE TABLE pj_before AS SELECT * FROM pj_model;
SELECT ocx.rebuild_projection('pj');
SELECT pj_wait('pj');
SELECT state, rebuild_done, rebuild_total, rebuild_rate > 0 AS has_rate, dead_letters
  FROM ocx.projection_status WHERE name = 'pj';
SELECT count(*) AS differences FROM (
    (SELECT * FROM pj_model EXCEPT ALL SELECT * FROM pj_before)
    UNION ALL
    (SELECT * FROM pj_before EXCEPT ALL SELECT * FROM pj_model)) d;

-- the "stop" policy stops the projection at the failing event
CREATE TABLE pj_stop_model (pos bigint);
CREATE FUNCTION pj_stop_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'Bad' THEN RAISE EXCEPTION 'bad event'; END IF;
    INSERT INTO pj_stop_model VALUES (e.global_position);
END $$;
SELECT ocx.define_projection('pj_stop', 'pj_stop_handler(ocx.event)', categories => '{pjs}',
                             retry => '{"max_attempts": 1, "on_exhausted": "stop"}');
SELECT ocx.append('pjs-1', NULL, '[{"type": "Ok", "data": {}}, {"type": "Bad", "data": {}}, {"type": "Ok", "data": {}}]');
SELECT pj_wait('pj_stop');
SELECT state, events_applied, lag_events, dead_letters, regexp_replace(last_error, '\d+', 'N') AS last_error
  FROM ocx.projection_status WHERE name = 'pj_stop';
SELECT count(*) FROM pj_stop_model;
CREATE OR REPLACE FUNCTION pj_stop_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pj_stop_model VALUES (e.global_position);
END $$;
SELECT ocx.resume_projection('pj_stop');
SELECT pj_wait('pj_stop');
SELECT state, events_applied, lag_events FROM ocx.projection_status WHERE name = 'pj_stop';

-- inline: applied in the appending transaction, rolled back with it
CREATE TABLE pj_inline_model (pos bigint, type text);
CREATE FUNCTION pj_inline_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ->> 'fail' = 'yes' THEN RAISE EXCEPTION 'inline handler refuses'; END IF;
    INSERT INTO pj_inline_model VALUES (e.global_position, e.type);
END $$;
SELECT ocx.append_event('pji-1', NULL, 'Opened', '{}');
SELECT ocx.define_projection('pj_inline', 'pj_inline_handler(ocx.event)', types => '{Opened,Closed}',
                             categories => '{pji}', mode => 'inline');
SELECT pj_wait('pj_inline');
SELECT type FROM pj_inline_model ORDER BY pos;
BEGIN;
SELECT ocx.append_event('pji-1', NULL, 'Closed', '{}');
SELECT ocx.append_event('pji-1', NULL, 'Ignored', '{}');
SELECT type FROM pj_inline_model ORDER BY pos;  -- visible before commit
ROLLBACK;
SELECT type FROM pj_inline_model ORDER BY pos;
SELECT ocx.append_event('pji-2', NULL, 'Opened', '{"fail": "yes"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.stream_version('pji-2');
SELECT ocx.pause_projection('pj_inline');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('pj_inline', 'pj_inline_handler(ocx.event)', mode => 'async');
\echo :LAST_ERROR_SQLSTATE
SELECT mode, state, lag_events FROM ocx.projection_status WHERE name = 'pj_inline';

-- what a handler appends in the worker is caused by the handled event and
-- shares its correlation id and trace
CREATE FUNCTION pj_echo(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append_event('pjecho-1', NULL, 'Echoed', '{}');
END $$;
SELECT ocx.define_projection('pj_echo', 'pj_echo(ocx.event)', categories => '{pje}');
BEGIN;
SET LOCAL ocx.correlation_id = '0b6c2a47-3d38-4a0e-9c55-55a1c1e4a001';
SET LOCAL ocx.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SELECT ocx.append_event('pje-1', NULL, 'Shouted', '{}');
COMMIT;
SELECT pj_wait('pj_echo');
SELECT echo.correlation_id = orig.correlation_id AS same_correlation,
       echo.causation_id = orig.event_id AS caused_by_it,
       echo.metadata ->> 'traceparent' = orig.metadata ->> 'traceparent' AS same_trace
  FROM ocx.events echo, ocx.events orig
 WHERE echo.stream_id = 'pjecho-1' AND orig.stream_id = 'pje-1';
SELECT current_setting('ocx.correlation_id') = '' AS session_untouched;
SELECT ocx.drop_projection('pj_echo');

-- handlers get events upcast to the type's current schema version, as every
-- read returns them (async and inline alike)
CREATE TABLE pj_up_model (via text, schema_version int, data jsonb);
CREATE FUNCTION pj_up_async(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.pj_up_model VALUES ('async', e.schema_version, e.data) $$;
CREATE FUNCTION pj_up_inline(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.pj_up_model VALUES ('inline', e.schema_version, e.data) $$;
SELECT ocx.append_event('pjup-1', NULL, 'pjup.Renamed', '{"nm": "Ann"}');
SELECT ocx.define_event_type('pjup.Renamed', 2);
SELECT ocx.define_upcaster('pjup.Renamed', 1, spec => '[{"op": "rename", "from": "nm", "to": "name"}]');
SELECT ocx.define_projection('pj_up_async', 'pj_up_async(ocx.event)', categories => '{pjup}');
SELECT ocx.define_projection('pj_up_inline', 'pj_up_inline(ocx.event)', categories => '{pjup}', mode => 'inline');
SELECT pj_wait('pj_up_async'), pj_wait('pj_up_inline');
SELECT via, schema_version, data FROM pj_up_model ORDER BY via;
-- an old-version event appended now reaches the inline handler upcast too
SELECT ocx.append('pjup-1', NULL, '[{"type": "pjup.Renamed", "schema_version": 1, "data": {"nm": "Bob"}}]');
SELECT via, schema_version, data FROM pj_up_model WHERE data ->> 'name' = 'Bob' AND via = 'inline';
SELECT ocx.drop_projection('pj_up_async'), ocx.drop_projection('pj_up_inline');

-- the worker is visible
SELECT count(*) FROM ocx.worker_status() WHERE datname = current_database() AND state = 'running';
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ocx worker' AND datname = current_database();

-- drop removes the definition and its dead letters
SELECT ocx.drop_projection('pj');
SELECT ocx.drop_projection('pj_stop');
SELECT ocx.drop_projection('pj_inline');
SELECT count(*) FROM ocx.projections WHERE name LIKE 'pj%';
SELECT count(*) FROM ocx.dead_letters WHERE projection LIKE 'pj%';
SELECT ocx.append_event('pji-1', NULL, 'Closed', '{}');
SELECT count(*) FROM pj_inline_model;
