-- Sagas in ocx.stats, ocx.metrics() and ocx.trace(): a writer (not a
-- superuser) starts a one-step saga, a client handles its command, the saga
-- completes; the counters, the gauge by saga and state, and the causal tree
-- of the saga id show it.
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.settle(id uuid, want text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s ocx.saga_instances;
BEGIN
    FOR n IN 1..400 LOOP
        PERFORM ocx._saga_tick();
        SELECT * INTO s FROM ocx.saga_instances x WHERE x.saga_id = id;
        IF s.state = want THEN
            RETURN s.state;
        END IF;
        PERFORM pg_sleep(0.025);
    END LOOP;
    RETURN 'timed out in ' || s.state;
END $$;

SELECT ocx.define_saga('msaga_ship', '{"steps": [
    {"name": "ship", "command": "msaga.Ship", "success": "msaga.Shipped", "failure": "msaga.Lost"}]}');
CREATE ROLE ocx_regress_saga_writer IN ROLE ocx_writer;
CREATE TEMP TABLE before AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';

SET ROLE ocx_regress_saga_writer;
SELECT ocx.start_saga('msaga_ship', '{"order": 7}', '7f000000-0000-4000-8000-0000000000a1');
RESET ROLE;
SELECT type, correlation_id FROM ocx.claim_commands(ARRAY['msaga.Ship'], 1);
SELECT ocx.append('msaga_parcel-7', NULL, '{"type": "msaga.Shipped", "data": {},
                  "correlation_id": "7f000000-0000-4000-8000-0000000000a1"}');
SELECT pg_temp.settle('7f000000-0000-4000-8000-0000000000a1', 'completed');

SELECT s.name, s.value - b.value AS delta
  FROM ocx.stats s JOIN before b USING (name)
 WHERE s.name LIKE 'sagas%' ORDER BY s.name;
SELECT labels, value FROM ocx.stats WHERE name = 'sagas' AND labels ->> 'saga' = 'msaga_ship';
SELECT l FROM pg_catalog.regexp_split_to_table(ocx.metrics(), E'\n') AS l
 WHERE l LIKE 'ocx_sagas{saga="msaga_ship"%';
SELECT depth, kind, type, stream_id FROM ocx.trace('7f000000-0000-4000-8000-0000000000a1');

DROP ROLE ocx_regress_saga_writer;
