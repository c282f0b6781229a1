-- Order-preserving dead letters: "on_failure": "park_stream" holds back the
-- rest of a dead-lettered event's stream (other streams go on) until the
-- dead letter is retried or skipped; then the held events are applied in
-- order, exactly once.  Streams here are "psa-*", "psb-*".
\set SHOW_CONTEXT never
\set VERBOSITY terse

CREATE TABLE ps_applied (seq serial PRIMARY KEY, stream_id text, version bigint);
-- the handler fails on the events listed here
CREATE TABLE ps_broken (stream_id text, version bigint);
CREATE FUNCTION ps_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM ps_broken b WHERE b.stream_id = e.stream_id AND b.version = e.stream_version) THEN
        RAISE EXCEPTION 'broken event %/%', e.stream_id, e.stream_version USING ERRCODE = '22023';
    END IF;
    INSERT INTO ps_applied (stream_id, version) VALUES (e.stream_id, e.stream_version);
END $$;
-- Wait (deadline 30 s) until the worker has read everything and retries nothing.
CREATE FUNCTION ps_wait() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s record;
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    LOOP
        SELECT * INTO s FROM ocx.projection_status WHERE name = 'ps';
        EXIT WHEN s.lag_events = 0 AND s.retry_at IS NULL AND s.state = 'running';
        IF clock_timestamp() > deadline THEN
            RETURN 'timed out: ' || s.state || ' lag=' || s.lag_events;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN 'caught up';
END $$;
CREATE FUNCTION ps_add(stream text) RETURNS bigint LANGUAGE sql
    RETURN ocx.append(stream, NULL, '{"type": "PsEvent", "data": {}}');
CREATE VIEW ps_letters AS
    SELECT stream_id, stream_version, state, holds_stream, attempts, sqlstate
      FROM ocx.dead_letters WHERE projection = 'ps' ORDER BY global_position;

SELECT ocx.define_projection('ps', 'ps_handler(ocx.event)', categories => '{psa,psb}',
    retry => '{"max_attempts": 2, "base_delay": "10 milliseconds", "max_delay": "20 milliseconds",
               "on_failure": "park_stream"}');

-- A's 2nd event always fails; A's 3rd and 4th and B's events come after it
INSERT INTO ps_broken VALUES ('psa-1', 2);
SELECT ps_add('psa-1'), ps_add('psa-1');
SELECT ps_add('psb-1');
SELECT ps_add('psa-1');
SELECT ps_add('psb-1');
SELECT ps_add('psa-1');
SELECT ps_add('psb-1');
SELECT ps_wait();
-- B is applied, A stops at its dead letter: A 3 and 4 are held back
SELECT stream_id, version FROM ps_applied ORDER BY seq;
SELECT * FROM ps_letters;
-- the checkpoint is past the held events: nothing is lagging or retrying
SELECT state, lag_events, dead_letters, failing_attempts, retry_at FROM ocx.projection_status WHERE name = 'ps';

-- later events of A are held too, B flows on
SELECT ps_add('psa-1'), ps_add('psb-1');
SELECT ps_wait();
SELECT stream_id, version FROM ps_applied WHERE seq > 4 ORDER BY seq;
SELECT * FROM ps_letters;

-- a retry that fails again changes nothing
SELECT ocx.retry_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'ps' AND state = 'parked';
\echo :LAST_ERROR_SQLSTATE
-- held events are not dead letters one can retry or skip (OX220)
\set VERBOSITY sqlstate
SELECT ocx.retry_dead_letter(min(id)) FROM ocx.dead_letters WHERE projection = 'ps' AND state = 'held';
SELECT ocx.skip_dead_letter(min(id)) FROM ocx.dead_letters WHERE projection = 'ps' AND state = 'held';
\set VERBOSITY terse
SELECT * FROM ps_letters;

-- fixed: the retry applies A 2, then the held A 3, 4, 5 in order
DELETE FROM ps_broken;
SELECT ocx.retry_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'ps' AND state = 'parked';
SELECT stream_id, version FROM ps_applied WHERE seq > 4 ORDER BY seq;
SELECT * FROM ps_letters;
-- A flows again
SELECT ps_add('psa-1');
SELECT ps_wait();
SELECT stream_id, version FROM ps_applied WHERE seq > 9 ORDER BY seq;
-- exactly once, in stream order
SELECT stream_id, count(*) AS events, count(DISTINCT version) AS distinct_versions,
       bool_and(in_order) AS in_order
  FROM (SELECT stream_id, version,
               version > coalesce(lag(version) OVER (PARTITION BY stream_id ORDER BY seq), 0) AS in_order
          FROM ps_applied) x
 GROUP BY stream_id ORDER BY stream_id;

-- skip: A 7 fails, A 8 is held; skipping A 7 applies A 8 (A 7 never)
INSERT INTO ps_broken VALUES ('psa-1', 7);
SELECT ps_add('psa-1'), ps_add('psa-1');
SELECT ps_wait();
SELECT * FROM ps_letters WHERE state <> 'resolved';
SELECT ocx.skip_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'ps' AND state = 'parked';
SELECT stream_id, version FROM ps_applied WHERE seq > 10 ORDER BY seq;
SELECT * FROM ps_letters WHERE stream_version >= 7;
-- a resolved dead letter cannot be skipped again (OX220)
\set VERBOSITY sqlstate
SELECT ocx.skip_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'ps' AND stream_version = 7;
\set VERBOSITY terse

-- a held event that fails when released becomes its stream's dead letter,
-- and the events after it stay held
INSERT INTO ps_broken VALUES ('psa-1', 9), ('psa-1', 10);
SELECT ps_add('psa-1'), ps_add('psa-1'), ps_add('psa-1');
SELECT ps_wait();
SELECT * FROM ps_letters WHERE state <> 'resolved';
DELETE FROM ps_broken WHERE version = 9;
-- (A 9 is applied, A 10 fails: it is the dead letter now, A 11 waits behind it)
SELECT ocx.retry_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'ps' AND state = 'parked';
SELECT stream_id, version FROM ps_applied WHERE seq > 11 ORDER BY seq;
SELECT * FROM ps_letters WHERE state <> 'resolved';
DELETE FROM ps_broken;
SELECT ocx.retry_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'ps' AND state = 'parked';
SELECT stream_id, version FROM ps_applied WHERE seq > 11 ORDER BY seq;
SELECT count(*) AS waiting FROM ocx.dead_letters WHERE projection = 'ps' AND state <> 'resolved';

-- "skip" (the default) parks the event and goes on with its stream
SELECT ocx.define_projection('ps', 'ps_handler(ocx.event)', categories => '{psa,psb}',
    retry => '{"max_attempts": 1, "on_failure": "skip"}');
INSERT INTO ps_broken VALUES ('psb-1', 5);
SELECT ps_add('psb-1'), ps_add('psb-1');
SELECT ps_wait();
SELECT stream_id, version FROM ps_applied WHERE seq > 13 ORDER BY seq;
SELECT * FROM ps_letters WHERE state <> 'resolved';

-- dropping the projection drops its dead letters and held events
SELECT ocx.drop_projection('ps');
SELECT count(*) AS letters_left FROM ocx.dead_letters WHERE projection = 'ps';
DROP VIEW ps_letters;
