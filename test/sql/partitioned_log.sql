-- A partitioned log (issue 15, docs/scaling.md "A partitioned log"):
-- ocx.partition_log, the partitions ahead, ocx.archive and the reads with
-- include_archived; the log's keys enforced across partitions.  In a
-- database of its own: the other tests keep an unpartitioned log.
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE DATABASE ocx_regress_partitioned;
\c ocx_regress_partitioned
SET client_min_messages = warning;
CREATE EXTENSION ocx;
CREATE ROLE ocx_regress_pl_reader IN ROLE ocx_reader;
CREATE ROLE ocx_regress_pl_writer IN ROLE ocx_writer;
CREATE ROLE ocx_regress_pl_admin IN ROLE ocx_admin;

-- least privileged first: a reader and a writer may call none of it
SET ROLE ocx_regress_pl_reader;
SELECT ocx.partition_log(10);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.archive('0/0');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.partition_ahead();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.log_partitions();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE ocx_regress_pl_writer;
SELECT ocx.partition_log(10);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.archive('0/0');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- an admin may archive and create partitions, but partitioning is a superuser's
SET ROLE ocx_regress_pl_admin;
SELECT ocx.partition_log(10);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.archive('0/0');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.partition_ahead() AS created_on_a_plain_log;
SELECT count(*) AS partitions FROM ocx.log_partitions();
RESET ROLE;

-- arguments
SELECT ocx.partition_log(9);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.partition_log(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.partition_log(10, 0);
\echo :LAST_ERROR_SQLSTATE

-- a log with history: plain, tagged and identified events, an aggregate
CREATE FUNCTION pl_count(s jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('n', COALESCE((s->>'n')::int, 0) + 1, 'last', e.type) $$;
SELECT ocx.define_aggregate('pl', 'pl_count(jsonb, ocx.event)'::regprocedure);
SELECT count(ocx.append('pl-' || (i % 3), NULL,
                        jsonb_build_object('type', 'Opened', 'data', jsonb_build_object('i', i))))
  FROM generate_series(1, 24) i;
SELECT ocx.append('pl-t', 0, '{"type": "Tagged", "data": {}, "tags": ["t:1"]}');
SELECT ocx.append('pl-id', 0, '{"type": "Id", "data": {}, "id": "00000000-0000-4000-8000-0000000000a1"}');

SELECT ocx.partition_log(10, 3);
SELECT ocx.partition_log(10);
\echo :LAST_ERROR_SQLSTATE
SELECT c.relkind AS events_relkind FROM pg_class c WHERE c.oid = 'ocx.events'::regclass;
SELECT ocx.partition_ahead() >= 0 AS ahead;
SELECT "partition", from_position, to_position, archived FROM ocx.log_partitions();
-- the old keys are gone from the live log's tables: the trigger holds them
SELECT count(*) AS unique_indexes_but_the_key FROM pg_index i
 WHERE i.indrelid IN (SELECT "partition" FROM ocx.log_partitions()) AND i.indisunique
   AND i.indkey::text <> (SELECT attnum::text FROM pg_attribute
                           WHERE attrelid = 'ocx.events'::regclass AND attname = 'global_position');

-- everything that held holds: reads, versions, idempotency, conflicts, tags
SELECT count(*) AS read_all FROM ocx.read_all(NULL, NULL);
SELECT stream_version, data FROM ocx.read_stream('pl-1') ORDER BY 1 LIMIT 3;
SELECT count(ocx.append('pl-' || (i % 3), NULL,
                        jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('i', i))))
  FROM generate_series(25, 50) i;
SELECT ocx.partition_ahead() >= 0 AS ahead;
SELECT "partition", from_position, to_position FROM ocx.log_partitions();
-- a batch past the partitions created ahead: refused, nothing written
SELECT ocx.append('pl-big', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'Big', 'data', '{}'::jsonb))
                                  FROM generate_series(1, 100)));
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS default_partition_rows FROM ocx_partitions.events_default;
SELECT ocx.stream_version('pl-big') AS big_version;
SELECT ocx.partition_ahead() >= 0 AS ahead;
SELECT stream_id, ocx.stream_version(stream_id), count(*), min(stream_version), max(stream_version)
  FROM ocx.events GROUP BY 1 ORDER BY 1;
-- the retry of a stored batch: the stored version, nothing written
SELECT ocx.append('pl-id', 0, '{"type": "Id", "data": {}, "id": "00000000-0000-4000-8000-0000000000a1"}') AS retry;
-- its id in another stream: OX004, as on an unpartitioned log
SELECT ocx.append('pl-other', NULL, '{"type": "Id", "data": {}, "id": "00000000-0000-4000-8000-0000000000a1"}');
\echo :LAST_ERROR_SQLSTATE
-- a wrong expected version: OX001
SELECT ocx.append('pl-1', 3, '{"type": "Late", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
-- the same id twice in one transaction (two statements): the second is the retry
BEGIN;
SELECT ocx.append('pl-tx', 0, '{"type": "T", "data": {}, "id": "00000000-0000-4000-8000-0000000000b1"}');
SELECT ocx.append('pl-tx2', 0, '{"type": "T", "data": {}, "id": "00000000-0000-4000-8000-0000000000b1"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- a duplicate written by hand meets the trigger (the unique index's error)
INSERT INTO ocx.events (stream_id, stream_version, event_id, source, type, time, data, txid)
SELECT stream_id, stream_version, gen_random_uuid(), source, type, time, data, txid
  FROM ocx.events WHERE stream_id = 'pl-1' AND stream_version = 1;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ocx.events (stream_id, stream_version, event_id, source, type, time, data, txid)
SELECT 'pl-hand', 1, event_id, source, type, time, data, txid
  FROM ocx.events WHERE stream_id = 'pl-id';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS tagged FROM ocx.read_tagged(ARRAY['t:1']);
SELECT state, version FROM ocx.load('pl', 'pl-2');
-- immutable, partitions included
UPDATE ocx.events SET type = 'x' WHERE stream_id = 'pl-1';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ocx_partitions.events_0;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ocx_partitions.events_0;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ocx.events;
\echo :LAST_ERROR_SQLSTATE
-- a reader reaches the log only through ocx.events
SET ROLE ocx_regress_pl_reader;
SELECT count(*) FROM ocx_partitions.events_0;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) > 0 AS reader_reads FROM ocx.read_all(NULL, NULL);
RESET ROLE;

-- archive: refused while a consumer has not passed the events
CREATE TABLE pl_seen (stream_id text, stream_version bigint);
CREATE FUNCTION pl_apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO pl_seen VALUES (e.stream_id, e.stream_version) $$;
-- paused before the worker sees it: it stays at the start of the log
BEGIN;
SELECT ocx.define_projection('pl_proj', 'pl_apply(ocx.event)'::regprocedure);
SELECT ocx.pause_projection('pl_proj');
COMMIT;
DO $$
BEGIN   -- the seals catch up with the log (the worker seals too)
    FOR i IN 1..100 LOOP
        PERFORM ocx.seal();
        EXIT WHEN (SELECT s.last_cursor FROM ocx.seals s ORDER BY s.last_cursor DESC LIMIT 1)
                  OPERATOR(ocx.>=) (SELECT ocx.cursor(e.txid, e.global_position) FROM ocx.events e
                      ORDER BY e.txid DESC, e.global_position DESC LIMIT 1);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
DO $$
BEGIN
    PERFORM ocx.archive(ocx.cursor(ocx.log_horizon(), 0));
EXCEPTION WHEN OTHERS THEN   -- the message without its cursors
    RAISE WARNING '% %', SQLSTATE, regexp_replace(SQLERRM, '[0-9]+/[0-9]+', 'T/P', 'g');
END
$$;
SELECT count(*) AS archived_partitions FROM ocx.log_partitions() WHERE archived;
SELECT ocx.drop_projection('pl_proj');
SELECT ocx.archive(NULL);
\echo :LAST_ERROR_SQLSTATE
-- nothing is before the first cursor
SELECT ocx.archive('0/1') AS archived_nothing;

-- before the 36th event in log order: the first partition (positions below
-- 30, all written before it) goes, the one holding it stays
SELECT ocx.archive((SELECT "cursor" FROM ocx.read_all(NULL, NULL) OFFSET 35 LIMIT 1)) AS archived;
SELECT "partition", from_position, to_position, archived FROM ocx.log_partitions() WHERE archived;
-- the live log lost the archived events, the archive has them
SELECT (SELECT count(*) FROM ocx.events) AS live, (SELECT count(*) FROM ocx_archive.events) AS archived;
SELECT count(*) AS read_all_live FROM ocx.read_all(NULL, NULL);
SELECT count(*) AS read_all_everything FROM ocx.read_all(NULL, NULL, include_archived => true);
-- in log order across the boundary
SELECT bool_and(ok) AS in_log_order FROM (
  SELECT (txid, global_position) > (lag(txid) OVER w, lag(global_position) OVER w) AS ok
    FROM ocx.read_all(NULL, NULL, include_archived => true) WINDOW w AS ()) x;
SELECT count(*) AS category FROM ocx.read_category('pl', NULL, NULL, include_archived => true);
SELECT count(*) AS stream_live, min(stream_version) FROM ocx.read_stream('pl-1');
SELECT count(*) AS stream_all, min(stream_version) FROM ocx.read_stream('pl-1', include_archived => true);
SELECT count(*) AS backward_all FROM ocx.read_stream('pl-1', direction => 'backward', include_archived => true);
-- load: refused without the archive, equal to the replay with it
SELECT state FROM ocx.load('pl', 'pl-2');
\echo :LAST_ERROR_SQLSTATE
SELECT state, version FROM ocx.load('pl', 'pl-2', include_archived => true);
-- an archived id is still taken
SELECT ocx.append('pl-again', NULL, '{"type": "Id", "data": {}, "id": "00000000-0000-4000-8000-0000000000a1"}');
\echo :LAST_ERROR_SQLSTATE
-- the archive is immutable too, and a reader reads it only through its parent
DELETE FROM ocx_archive.events;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ocx_archive.events_0;
\echo :LAST_ERROR_SQLSTATE
SET ROLE ocx_regress_pl_reader;
SELECT count(*) > 0 AS reader_reads_archive FROM ocx.read_all(NULL, NULL, include_archived => true);
SELECT count(*) FROM ocx_archive.events_0;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- everything below the horizon whose range is used up (the refused batch
-- stopped at position 90, the first past the partitions: those below it are used up)
SELECT ocx.partition_ahead() >= 0 AS ahead;

SELECT ocx.archive(ocx.cursor(ocx.log_horizon(), 0)) AS archived;
SELECT min(from_position), max(to_position), count(*) FROM ocx.log_partitions() WHERE archived;
SELECT (SELECT count(*) FROM ocx.events) AS live, (SELECT count(*) FROM ocx_archive.events) AS archived;
-- appends go on
SELECT ocx.stream_version('pl-1') AS before_append;
SELECT ocx.append('pl-1', ocx.stream_version('pl-1'), '{"type": "After", "data": {}}') AS appended;
SELECT count(*) AS stream_all_after FROM ocx.read_stream('pl-1', include_archived => true);

-- a batch of 300 identified events (past 128 id locks a transaction takes
-- the lock of every id instead: the lock table does not fill up)
UPDATE ocx.log_partitioning SET ahead = 40;
SELECT ocx.partition_ahead() > 0 AS more_ahead;
BEGIN;
SELECT ocx.append('pl-batch', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'B', 'data', jsonb_build_object('i', i),
                                     'id', md5('pl-batch' || i)::uuid) ORDER BY i)
                                    FROM generate_series(1, 300) i)) AS batch;
-- the id locks it holds (locktag field4 0x6f69): 128 and the lock of every id, not 300
SELECT count(*) AS id_locks_held, bool_or(classid = 0 AND objid = 0 AND mode = 'ExclusiveLock') AS every_id_locked
  FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 28521 AND pid = pg_backend_pid();
COMMIT;
SELECT ocx.append('pl-batch', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'B', 'data', jsonb_build_object('i', i),
                                     'id', md5('pl-batch' || i)::uuid) ORDER BY i)
                                    FROM generate_series(1, 300) i)) AS batch_retry;
SELECT ocx.append('pl-batch-2', 0, jsonb_build_object('type', 'B', 'data', '{}'::jsonb, 'id', md5('pl-batch' || 150)::uuid));
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS batch_events FROM ocx.events WHERE stream_id = 'pl-batch';

-- append_if on a partitioned log: the condition is checked through each
-- partition's tags index (it read the partitioned index, which has no storage:
-- "could not open file", 58P01; t/204_direct_differential.pl found it)
SELECT ocx.append('pl-tagged-1', NULL, '{"type": "A", "tags": ["pl-seat:1"]}') AS tagged;
SELECT ocx.append_if('{"stream_id": "pl-tagged-2", "type": "A", "tags": ["pl-seat:1"]}', '{"tags": ["pl-seat:1"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "pl-tagged-2", "type": "A", "tags": ["pl-seat:2"]}', '{"tags": ["pl-seat:2"]}') IS NOT NULL AS decided;
SELECT stream_id, tags FROM ocx.events WHERE stream_id LIKE 'pl-tagged-%' ORDER BY global_position;

-- the bulk import writes only to a plain log: refused before its rows are
-- parsed, with what to do instead (import first, then partition)
\set VERBOSITY default
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type) VALUES ('pl-imp-1', '1', 'A');
SELECT * FROM ocx.import_commit();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
\set VERBOSITY terse

\c contrib_regression
DROP DATABASE ocx_regress_partitioned;
DROP ROLE ocx_regress_pl_reader;
DROP ROLE ocx_regress_pl_writer;
DROP ROLE ocx_regress_pl_admin;
