-- Counters move with appends; ocx.stats and ocx.metrics() report them.
-- Counters are cluster-wide and cumulative, so the test compares deltas.
\set SHOW_CONTEXT never

SELECT value AS shared_memory FROM ocx.stats WHERE name = 'shared_memory';
SELECT count(*) AS counters, count(DISTINCT name) AS distinct_names
  FROM ocx.stats WHERE kind = 'counter';

CREATE TEMP TABLE before AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';

SELECT ocx.append('metrics-1', 0, '[{"type": "A", "data": {"a": 1}}, {"type": "B", "data": {}}]');
SELECT ocx.append_event('metrics-1', 2, 'C', '{"c": "x"}', '{"m": 1}');
SELECT ocx.append_event('metrics-1', 0, 'C', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('metrics-1', 1, '{"type": "D", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('metrics-2', NULL, '[{"id": "0e0c8a4e-5d0e-4a0a-8f7e-0000000000a1", "type": "A", "data": {}}]');
SELECT ocx.append('metrics-2', NULL, '[{"id": "0e0c8a4e-5d0e-4a0a-8f7e-0000000000a1", "type": "A", "data": {}}]');
-- a refused event counts nothing
SELECT ocx.append('metrics-3', NULL, '{"data": {}}');
\echo :LAST_ERROR_SQLSTATE

-- appends 3 (the idempotent retry and the failures wrote nothing), events 4,
-- conflicts 2, idempotent retries 1; bytes are data plus metadata
SELECT s.name, s.value - b.value AS delta
  FROM ocx.stats s JOIN before b USING (name)
 WHERE s.name IN ('appends', 'events', 'bytes', 'conflicts', 'idempotent_retries')
 ORDER BY s.name;

-- a rolled-back append still counted: counters measure work, not commits
CREATE TEMP TABLE before2 AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';
BEGIN;
SELECT ocx.append('metrics-4', NULL, '{"type": "A", "data": {}}');
ROLLBACK;
SELECT s.name, s.value - b.value AS delta
  FROM ocx.stats s JOIN before2 b USING (name)
 WHERE s.name IN ('appends', 'events') ORDER BY s.name;

-- aggregate loads: replays, replayed events, snapshots written and used
CREATE TEMP TABLE before3 AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';
SELECT ocx.define_aggregate('metrics_agg', reducer => '{"*": [{"append": "seen", "from": "$version"}]}',
                            snapshot_every => 2);
SELECT state, version FROM ocx.load('metrics_agg', 'metrics-1');
SELECT state, version FROM ocx.load('metrics_agg', 'metrics-1');
SELECT s.name, s.value - b.value AS delta
  FROM ocx.stats s JOIN before3 b USING (name)
 WHERE s.name IN ('replays', 'replay_events', 'snapshot_hits', 'snapshots_written') ORDER BY s.name;
DELETE FROM ocx.aggregates WHERE aggregate_type = 'metrics_agg';

-- saga counters, from the state transitions of a table shaped like the
-- sagas subsystem's ocx.saga_instances (the trigger the install script adds there)
CREATE TABLE metrics_sagas (id int PRIMARY KEY, state text NOT NULL DEFAULT 'running');
CREATE TRIGGER count_started AFTER INSERT ON metrics_sagas
    FOR EACH ROW EXECUTE FUNCTION ocx._count_sagas('state');
CREATE TRIGGER count_finished AFTER UPDATE OF state ON metrics_sagas
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION ocx._count_sagas('state');
CREATE TEMP TABLE before4 AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';
INSERT INTO metrics_sagas (id) SELECT g FROM generate_series(1, 4) g;
UPDATE metrics_sagas SET state = 'compensating' WHERE id IN (2, 3);
UPDATE metrics_sagas SET state = CASE id WHEN 1 THEN 'completed' WHEN 2 THEN 'compensated' ELSE 'failed' END
 WHERE id IN (1, 2, 3);
SELECT s.name, s.value - b.value AS delta
  FROM ocx.stats s JOIN before4 b USING (name)
 WHERE s.name LIKE 'sagas%' ORDER BY s.name;
DROP TABLE metrics_sagas;
SELECT ocx._count_sagas();
\echo :LAST_ERROR_SQLSTATE

-- ocx.metrics(): the same numbers in the exposition format
CREATE TEMP TABLE m AS
SELECT l.line
  FROM pg_catalog.regexp_split_to_table(ocx.metrics(), E'\n') AS l(line)
 WHERE l.line <> '';
-- every line is a HELP, a TYPE or a sample with a number
SELECT count(*) AS bad_lines FROM m
 WHERE line !~ '^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge))$'
   AND line !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? -?[0-9]+(\.[0-9]+)?$';
SELECT line FROM m WHERE line ~ '^# (HELP|TYPE) ocx_(events_total|log_position) ' ORDER BY line;
-- the log horizon's holder: one sample each, whether or not a transaction
-- holds it now (0 when none)
SELECT line FROM m WHERE line ~ '^# (HELP|TYPE) ocx_horizon_' ORDER BY line;
SELECT count(*) FILTER (WHERE line ~ '^ocx_horizon_age_seconds [0-9]+(\.[0-9]+)?$') AS age_samples,
       count(*) FILTER (WHERE line ~ '^ocx_horizon_holder_pid [0-9]+$') AS pid_samples
  FROM m;
SELECT (SELECT pg_catalog.split_part(line, ' ', 2)::bigint FROM m WHERE line ~ '^ocx_events_total ')
     = (SELECT value FROM ocx.stats WHERE name = 'events') AS metrics_match_stats;

-- label values are escaped
SELECT ocx._prometheus_escape(E'a"b\\c\nd', true) AS label, ocx._prometheus_escape(E'a"b\nc', false) AS help;

-- who may do what: readers read, only admins reset
SET ROLE ocx_reader;
SELECT count(*) > 0 AS reader_sees_stats FROM ocx.stats;
SELECT ocx.metrics() LIKE '%ocx_appends_total%' AS reader_sees_metrics;
SELECT ocx.reset_stats();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE ocx_admin;
SELECT ocx.reset_stats();
RESET ROLE;
SELECT count(*) AS nonzero_after_reset FROM ocx.stats WHERE kind = 'counter' AND value <> 0;
SELECT reset_time > pg_catalog.now() - interval '1 minute' AS reset_time_moved
  FROM ocx.stats WHERE name = 'appends';
