-- Bulk import and export (issue 16, docs/migrating.md): ocx.import_begin,
-- COPY into ocx.import_staging, ocx.import_commit; ocx.export.  In a
-- database of its own, so that the tests after it see the same log.
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset
CREATE DATABASE ocx_import_regress;
\c ocx_import_regress
SET client_min_messages = warning;
CREATE EXTENSION ocx;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET ocx.source = '/regress';

-- a batch: two streams interleaved, every column given on some line
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (stream_id, stream_version, type, data, metadata, event_id, source, "time",
                         schema_version, correlation_id, causation_id, tags) FROM STDIN (FORMAT csv);
imp-1,1,Opened,"{""owner"": ""ann""}",,00000000-0000-4000-8000-000000000001,/old,2020-01-02 03:04:05.123456+00,,,,
imp-2,1,Opened,"{""owner"": ""bob""}","{""k"": 1}",00000000-0000-4000-8000-000000000002,/old,2020-01-02T03:04:06Z,2,00000000-0000-4000-8000-0000000000c1,00000000-0000-4000-8000-0000000000c2,"[""b"", ""a""]"
imp-1,2,Deposited,"{""amount"": 10}",,00000000-0000-4000-8000-000000000003,/old,2020-01-02 03:04:07+00,,,,
\.
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT global_position, stream_id, stream_version, event_id, source, type, schema_version, time,
       data, metadata, correlation_id, causation_id, tags, length(hash) AS hash_len
  FROM ocx.events ORDER BY txid, global_position;
SELECT stream_id, version, category, head = (SELECT e.hash FROM ocx.events e WHERE e.stream_id = s.stream_id
                                               AND e.stream_version = s.version) AS head_is_last
  FROM ocx.streams s ORDER BY stream_id;
SELECT count(*) AS problems FROM ocx.verify();
-- the staging table is empty again
SELECT count(*) FROM ocx.import_staging;

-- an append continues an imported stream, and an import continues an appended one
SELECT ocx.append('imp-1', 2, '{"type": "Closed", "data": {}}');
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (stream_id, stream_version, type, data) FROM STDIN;
imp-1	4	Reopened	{}
imp-3	1	Opened	{"owner": "cy"}
\.
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT stream_id, stream_version, type FROM ocx.events ORDER BY txid, global_position;
SELECT count(*) AS problems FROM ocx.verify();

-- a repeated import of stored events is idempotent: skipped, nothing written
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (stream_id, stream_version, type, data, event_id, source) FROM STDIN (FORMAT csv);
imp-1,1,Opened,"{""owner"": ""ann""}",00000000-0000-4000-8000-000000000001,/old
imp-1,2,Deposited,"{""amount"": 10}",00000000-0000-4000-8000-000000000003,/old
imp-2,2,Renamed,{},00000000-0000-4000-8000-000000000004,/old
\.
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT count(*) AS events FROM ocx.events;

-- export: newline-delimited CloudEvents, resumable after a cursor
SELECT cloudevent FROM ocx.export() LIMIT 3;
SELECT count(*) FROM ocx.export(category => 'imp');
SELECT count(*) FROM ocx.export(category => 'none');
SELECT e.cloudevent ->> 'ocxstream' AS stream, e.cloudevent -> 'ocxversion' AS version
  FROM ocx.export("after" => (SELECT x."cursor" FROM ocx.export(max_count => 5) x
                              ORDER BY x."cursor" DESC LIMIT 1)) e;
COPY (SELECT cloudevent FROM ocx.export(max_count => 1)) TO STDOUT (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02');

-- a parallel plan over the reader: the export, and an inlined SQL function
-- over read_all that is PARALLEL RESTRICTED (as a user may write one), each
-- the first read of a new session, in parallel mode (ocx.log_horizon() in the
-- leader raised "cannot update SecondarySnapshot during a parallel operation")
CREATE FUNCTION public.read_all_wrapped() RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL RESTRICTED
BEGIN ATOMIC
    SELECT * FROM ocx.read_all(NULL, NULL);
END;
\c ocx_import_regress
SET force_parallel_mode = on;
SELECT count(*) FROM public.read_all_wrapped();
\c ocx_import_regress
SET force_parallel_mode = on;
SELECT count(*) FROM ocx.export();
SELECT count(*) FROM ocx.read_category('imp', NULL, NULL);
RESET force_parallel_mode;
\set SHOW_CONTEXT never
SET ocx.source = '/regress';

-- an export imported into an empty database gives the same log
\c :regress_db
SET client_min_messages = warning;
CREATE DATABASE ocx_import_regress2;
RESET client_min_messages;
\c ocx_import_regress2
SET client_min_messages = warning;
CREATE EXTENSION ocx;
CREATE EXTENSION dblink;
RESET client_min_messages;
SELECT format('dbname=ocx_import_regress host=%s port=%s',
              split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port')) AS conn \gset
\set SHOW_CONTEXT never
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (cloudevent)
SELECT ce FROM dblink(:'conn', 'SELECT x.cloudevent::text FROM ocx.export() x') AS t(ce text);
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT count(*) AS problems FROM ocx.verify();
SELECT count(*) AS different FROM (
    SELECT row_number() OVER (ORDER BY txid, global_position) AS n, stream_id, stream_version, event_id, source,
           type, schema_version, time, data, metadata, correlation_id, causation_id, tags, hash
      FROM ocx.events
    EXCEPT
    SELECT row_number() OVER (), * FROM dblink(:'conn',
        'SELECT stream_id, stream_version, event_id, source, type, schema_version, time, data, metadata,
                correlation_id, causation_id, tags, hash FROM ocx.events ORDER BY txid, global_position')
        AS t(stream_id text, stream_version bigint, event_id uuid, source text, type text, schema_version int,
             time timestamptz, data jsonb, metadata jsonb, correlation_id uuid, causation_id uuid, tags text[],
             hash bytea)) d;
SELECT count(*) FROM ocx.events;
\c ocx_import_regress
\set SHOW_CONTEXT never
SET ocx.source = '/regress';

-- refusals: the first bad line, with its SQLSTATE; nothing of the batch is written
CREATE TEMP TABLE before AS SELECT count(*) AS n, max(global_position) AS p FROM ocx.events;
SELECT * FROM ocx.import_commit();
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT ocx.import_begin();
SELECT * FROM ocx.import_commit();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- COPY without import_begin in the transaction
BEGIN;
COPY ocx.import_staging (stream_id, stream_version, type) FROM STDIN (FORMAT csv);
bad-1,1,A
\.
SELECT * FROM ocx.import_commit();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CREATE FUNCTION try_import(rows text, cols text DEFAULT 'stream_id, stream_version, type, data',
                           detail boolean DEFAULT false)
    RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    st  text;
    det text;
BEGIN
    PERFORM ocx.import_begin();
    EXECUTE format('INSERT INTO ocx.import_staging (%1$s) SELECT %1$s FROM json_populate_recordset(NULL::ocx.import_staging, %2$L)',
                   cols, rows);
    PERFORM ocx.import_commit();
    RETURN 'imported';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL;
    RETURN st || ' ' || msg || CASE WHEN detail THEN E'\n' || det ELSE '' END;
END $$;
-- line 2: data is no JSON
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "data": "{}"},
                    {"stream_id": "bad-1", "stream_version": "2", "type": "A", "data": "{oops"}]');
-- line 1: data is no object; no type; version 0; version no integer; no version; empty stream id
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "data": "[1]"}]');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "data": "{}"}]');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "0", "type": "A"}]');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "one", "type": "A"}]');
SELECT try_import('[{"stream_id": "bad-1", "type": "A"}]');
SELECT try_import('[{"stream_id": "", "stream_version": "1", "type": "A"}]');
SELECT try_import('[{"stream_version": "1", "type": "A"}]');
-- bad ids, times, tags, metadata
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "event_id": "nope"}]',
                  'stream_id, stream_version, type, event_id');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "time": "yesterday-ish"}]',
                  'stream_id, stream_version, type, "time"');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "tags": "[\"\"]"}]',
                  'stream_id, stream_version, type, tags');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "metadata": "7"}]',
                  'stream_id, stream_version, type, metadata');
-- versions: a gap, out of line order, twice, not after the stream's version
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A"},
                    {"stream_id": "bad-1", "stream_version": "3", "type": "A"}]');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "2", "type": "A"},
                    {"stream_id": "bad-1", "stream_version": "1", "type": "A"}]');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A"},
                    {"stream_id": "bad-2", "stream_version": "1", "type": "A"},
                    {"stream_id": "bad-1", "stream_version": "1", "type": "A"}]');
SELECT try_import('[{"stream_id": "imp-3", "stream_version": "3", "type": "A"}]');
-- a stored version with another event
SELECT try_import('[{"stream_id": "imp-3", "stream_version": "1", "type": "Opened", "data": "{\"owner\": \"dan\"}"}]');
-- an event id twice in the batch, and one stored already
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "event_id": "00000000-0000-4000-8000-0000000000aa"},
                    {"stream_id": "bad-2", "stream_version": "1", "type": "A", "event_id": "00000000-0000-4000-8000-0000000000aa"}]',
                  'stream_id, stream_version, type, event_id');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "event_id": "00000000-0000-4000-8000-000000000001", "source": "/old"}]',
                  'stream_id, stream_version, type, event_id, source');
-- too large, a contract
SET ocx.max_event_size = 100;
SELECT try_import(format('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "data": "{\"x\": \"%s\"}"}]', repeat('y', 200)));
RESET ocx.max_event_size;
SELECT ocx.define_event_type('imp.Opened', 1, '{"type": "object", "required": ["owner"]}');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "imp.Opened", "data": "{\"owner\": \"x\"}"},
                    {"stream_id": "bad-2", "stream_version": "1", "type": "imp.Opened", "data": "{}"}]');
-- a cloudevent row: with other columns, without ocxstream, with a version that is no integer, bad JSON
SELECT try_import('[{"stream_id": "bad-1", "cloudevent": "{}"}]', 'stream_id, cloudevent');
SELECT try_import('[{"cloudevent": "{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"/s\", \"type\": \"A\"}"}]', 'cloudevent');
SELECT try_import('[{"cloudevent": "{\"specversion\": \"1.0\", \"id\": \"x\", \"source\": \"/s\", \"type\": \"A\", \"ocxstream\": \"bad-1\", \"ocxversion\": \"1\"}"}]', 'cloudevent');
SELECT try_import('[{"cloudevent": "{nope"}]', 'cloudevent');
-- a stream of another tenant, a deleted stream
SET ocx.tenant = 'acme';
SELECT try_import('[{"stream_id": "bad-9", "stream_version": "1", "type": "A"},
                    {"stream_id": "imp-2", "stream_version": "3", "type": "A"}]');
RESET ocx.tenant;
SELECT ocx.append('del-1', 0, '{"type": "A"}');
SELECT ocx.delete_stream('del-1', 1, hard => true);
SELECT try_import('[{"stream_id": "del-1", "stream_version": "2", "type": "A"}]');
-- a running inline projection applies the imported events it selects in the
-- import's transaction (before, the import refused them with OX661): once per
-- run of a stream's consecutive rows, in line order, as appends of those runs
-- would have applied them
CREATE TABLE imp_applied (n serial, stream_id text, stream_version bigint, type text);
CREATE FUNCTION imp_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'Boom' THEN
        RAISE EXCEPTION 'the handler refuses % at version %', e.stream_id, e.stream_version;
    END IF;
    INSERT INTO imp_applied (stream_id, stream_version, type) VALUES (e.stream_id, e.stream_version, e.type);
END $$;
BEGIN;
SELECT ocx.define_projection('imp_inline', 'imp_handler(ocx.event)', categories => '{inl}', mode => 'inline');
UPDATE ocx.projections SET state = 'running' WHERE name = 'imp_inline';
SELECT try_import('[{"stream_id": "other-1", "stream_version": "1", "type": "A"},
                    {"stream_id": "inl-1", "stream_version": "1", "type": "A",
                     "event_id": "00000000-0000-4000-8000-0000000000f1"},
                    {"stream_id": "inl-2", "stream_version": "1", "type": "B"},
                    {"stream_id": "inl-1", "stream_version": "2", "type": "C"},
                    {"stream_id": "inl-1", "stream_version": "3", "type": "D"}]',
                  'stream_id, stream_version, type, data, event_id');
SELECT stream_id, stream_version, type FROM imp_applied ORDER BY n;
-- the same rows again: nothing written, nothing applied
SELECT try_import('[{"stream_id": "inl-1", "stream_version": "1", "type": "A",
                     "event_id": "00000000-0000-4000-8000-0000000000f1"}]',
                  'stream_id, stream_version, type, data, event_id');
SELECT count(*) AS applied FROM imp_applied;
-- a handler's error fails the import (nothing of the batch written or
-- applied); its context names the lines of the run
SELECT try_import('[{"stream_id": "inl-3", "stream_version": "1", "type": "A"},
                    {"stream_id": "inl-3", "stream_version": "2", "type": "Boom"}]');
DO $$
DECLARE ctx text;
BEGIN
    PERFORM ocx.import_begin();
    INSERT INTO ocx.import_staging (stream_id, stream_version, type) VALUES
        ('inl-4', '1', 'A'), ('inl-5', '1', 'A'), ('inl-5', '2', 'Boom');
    PERFORM ocx.import_commit();
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;
    RAISE NOTICE 'context names the run: %',
        position('events of import lines from 2: stream "inl-5", versions 1 to 2' IN ctx) > 0;
END $$;
SELECT count(*) AS written, (SELECT count(*) FROM imp_applied) AS applied
  FROM ocx.events WHERE stream_id IN ('inl-3', 'inl-4', 'inl-5');
ROLLBACK;
-- a batch is taken in the order of its lines, which are the order the rows
-- came unless given: lines given in another order than the rows came are
-- taken by line (was: OX010 "line 2 comes after line 5"), a line given
-- twice is refused
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "line": 5},
                    {"stream_id": "bad-1", "stream_version": "2", "type": "A", "line": 2}]',
                  'stream_id, stream_version, type, line');
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "line": 5},
                    {"stream_id": "bad-1", "stream_version": "2", "type": "A", "line": 5}]',
                  'stream_id, stream_version, type, line');
BEGIN;
SELECT try_import('[{"stream_id": "lines-1", "stream_version": "2", "type": "B", "line": 20},
                    {"stream_id": "lines-1", "stream_version": "1", "type": "A", "line": 10}]',
                  'stream_id, stream_version, type, line');
SELECT stream_version, type FROM ocx.events WHERE stream_id = 'lines-1' ORDER BY global_position;
ROLLBACK;
-- the rows of a batch are not in the table in the order they came when their
-- sizes vary (a row that does not fit on the last page goes to an earlier one
-- with room): the import reads them by line (was: OX010 "line N of
-- ocx.import_staging comes after line M", for a batch of default lines)
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, data)
SELECT 'scat-' || (g % 3), (g / 3 + 1)::text, 'A',
       '{"p": "' || repeat('x', (ARRAY[100, 1900, 700, 1500, 300, 1100, 50])[g % 7 + 1]) || '"}'
  FROM generate_series(0, 2999) g ORDER BY g;
SELECT count(*) FILTER (WHERE line < prev) > 0 AS scattered
  FROM (SELECT line, lag(line) OVER (ORDER BY ctid) AS prev FROM ocx.import_staging) s;
SELECT * FROM ocx.import_commit();
SELECT count(*) = 3000 AS all_in_line_order FROM (
    SELECT stream_version = row_number() OVER (PARTITION BY stream_id ORDER BY global_position) AS ok
      FROM ocx.events WHERE stream_id LIKE 'scat-%') s WHERE ok;
ROLLBACK;
-- a refused batch lists every bad line in the error's detail: each line with
-- its message and SQLSTATE, the first one's SQLSTATE and message raised
-- (try_import(..., detail => true) shows the detail)
-- line 2 no JSON, line 3 not after the stream's last good line, line 4 no
-- stream id, line 5 a gap after a stored stream, line 6 data no object, line
-- 7 an id given on line 1 too, line 8 another tenant's stream
UPDATE ocx.streams SET tenant_id = 'other' WHERE stream_id = 'imp-2';
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "event_id": "00000000-0000-4000-8000-0000000000bb"},
                    {"stream_id": "bad-1", "stream_version": "2", "type": "A", "data": "{oops"},
                    {"stream_id": "bad-1", "stream_version": "3", "type": "A"},
                    {"stream_id": "", "stream_version": "1", "type": "A"},
                    {"stream_id": "imp-3", "stream_version": "5", "type": "A"},
                    {"stream_id": "bad-2", "stream_version": "1", "type": "A", "data": "[1]"},
                    {"stream_id": "bad-3", "stream_version": "1", "type": "A", "event_id": "00000000-0000-4000-8000-0000000000bb"},
                    {"stream_id": "imp-2", "stream_version": "3", "type": "A"}]',
                  'stream_id, stream_version, type, data, event_id', detail => true);
UPDATE ocx.streams SET tenant_id = NULL WHERE stream_id = 'imp-2';
-- an event id stored already, on two lines of a batch that is good otherwise
SELECT try_import('[{"stream_id": "bad-1", "stream_version": "1", "type": "A", "event_id": "00000000-0000-4000-8000-000000000001", "source": "/old"},
                    {"stream_id": "bad-1", "stream_version": "2", "type": "A"},
                    {"stream_id": "bad-2", "stream_version": "1", "type": "A", "event_id": "00000000-0000-4000-8000-000000000003", "source": "/old"}]',
                  'stream_id, stream_version, type, event_id, source', detail => true);
-- stored versions that are other events, with a good row between
SELECT try_import('[{"stream_id": "imp-1", "stream_version": "1", "type": "Opened", "data": "{}"},
                    {"stream_id": "imp-3", "stream_version": "2", "type": "A"},
                    {"stream_id": "imp-2", "stream_version": "1", "type": "Opened", "data": "{}"}]', detail => true);
-- 30 bad lines: the first 20 listed, and how many more
SELECT try_import(json_agg(json_build_object('stream_id', 'bad-' || g, 'stream_version', 'v' || g, 'type', 'A'))::text,
                  detail => true)
  FROM generate_series(1, 30) g;

-- nothing of any refused batch was written
SELECT count(*) = b.n AS same_count, max(global_position) = b.p AS same_last FROM ocx.events, before b GROUP BY b.n, b.p;
SELECT count(*) FROM ocx.streams WHERE stream_id LIKE 'bad-%';

-- a user's triggers on ocx.events run for the imported rows as for an
-- INSERT: BEFORE and AFTER each row, with the function's own settings
-- (SECURITY DEFINER, SET search_path) on every call (the BEFORE trigger's
-- lookups lived in the chunk's memory, reset after 1,000 rows, and later
-- calls read freed memory: the wrong search_path, "relation does not
-- exist"), and once AFTER the statement with its NEW TABLE (was: "relation
-- newrows does not exist"); no slot of the trigger calls is left behind
-- (was: a TupleDesc reference leak warning at commit)
BEGIN;
CREATE TABLE trig_seen (kind text, path text, n bigint);
CREATE FUNCTION imp_trig() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO trig_seen VALUES (TG_WHEN || ' ' || TG_LEVEL, current_setting('search_path'), NEW.stream_version);
    RETURN NEW;
END $$;
CREATE FUNCTION imp_stmt_trig() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO trig_seen SELECT 'AFTER STATEMENT', current_setting('search_path'), count(*) FROM newrows;
    RETURN NULL;
END $$;
CREATE TRIGGER imp_before BEFORE INSERT ON ocx.events FOR EACH ROW EXECUTE FUNCTION imp_trig();
CREATE TRIGGER imp_after AFTER INSERT ON ocx.events FOR EACH ROW EXECUTE FUNCTION imp_trig();
CREATE TRIGGER imp_stmt AFTER INSERT ON ocx.events REFERENCING NEW TABLE AS newrows
    FOR EACH STATEMENT EXECUTE FUNCTION imp_stmt_trig();
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type)
SELECT 'trg-' || (g % 10), (g / 10 + 1)::text, 'Tagged' FROM generate_series(0, 2499) g ORDER BY g / 10, g % 10;
SELECT * FROM ocx.import_commit();
SELECT kind, path, count(*), sum(n) FROM trig_seen GROUP BY kind, path ORDER BY kind;
COMMIT;
SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'trg-%';
DROP TRIGGER imp_before ON ocx.events;
DROP TRIGGER imp_after ON ocx.events;
DROP TRIGGER imp_stmt ON ocx.events;

-- a batch of 20,000 distinct tags (a tag per customer, say): more tag locks
-- than the shared lock table holds ("out of shared memory" before); above
-- 1,000 tags an append or import takes the tenant's one all-tags lock instead
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, tags)
SELECT 'cust-' || (g % 100), (g / 100 + 1)::text, 'Tagged', '["customer:' || g || '"]'
  FROM generate_series(0, 19999) g ORDER BY g / 100, g % 100;
SELECT * FROM ocx.import_commit();
SELECT count(*) AS locks_held FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory';
COMMIT;
SELECT count(*) AS events, count(DISTINCT tags[1]) AS tags FROM ocx.events WHERE stream_id LIKE 'cust-%';
SELECT stream_id, stream_version FROM ocx.read_tagged('{customer:12345}');

-- an import counts in ocx.stats as an append does: one call, its events and bytes
CREATE TEMP TABLE counted AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (stream_id, stream_version, type, data, metadata) FROM STDIN (FORMAT csv);
cnt-1,1,A,"{""a"": 1}","{""m"": 2}"
cnt-1,2,B,{},
cnt-2,1,A,{},
\.
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT s.name, s.value - c.value AS delta
  FROM ocx.stats s JOIN counted c USING (name)
 WHERE s.name IN ('appends', 'events', 'bytes', 'idempotent_retries')
 ORDER BY s.name;
SELECT (SELECT sum(pg_column_size(data) + pg_column_size(metadata)) FROM ocx.events WHERE stream_id LIKE 'cnt-%')
     = (SELECT s.value - c.value FROM ocx.stats s JOIN counted c USING (name) WHERE s.name = 'bytes') AS bytes_match;

-- and sets ocx.last_append_cursor() to its last event, cleared when it rolls back
SELECT ocx.cursor(txid, global_position) OPERATOR(ocx.=) ocx.last_append_cursor() AS import_is_last
  FROM ocx.events WHERE stream_id LIKE 'cnt-%' ORDER BY global_position DESC LIMIT 1;
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (stream_id, stream_version, type) FROM STDIN (FORMAT csv);
cnt-3,1,A
\.
SELECT * FROM ocx.import_commit();
ROLLBACK;
SELECT ocx.last_append_cursor() IS NULL AS cleared_by_rollback;

-- who may: ocx_admin imports; ocx_writer may not; ocx_reader exports
CREATE ROLE imp_admin IN ROLE ocx_admin;
CREATE ROLE imp_writer IN ROLE ocx_writer;
CREATE ROLE imp_reader IN ROLE ocx_reader;
SET ROLE imp_writer;
SELECT ocx.import_begin();
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ocx.import_staging (stream_id) VALUES ('adm-0');
\echo :LAST_ERROR_SQLSTATE
SET ROLE imp_reader;
SELECT count(*) FROM ocx.export();
SET ROLE imp_admin;
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (stream_id, stream_version, type) FROM STDIN (FORMAT csv);
adm-1,1,A
\.
SELECT * FROM ocx.import_commit();
COMMIT;
RESET ROLE;
SELECT stream_id, tenant_id FROM ocx.events WHERE stream_id = 'adm-1';
-- as whom: ocx_owner's rights
SELECT p.proname, p.prosecdef, r.rolname
  FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
 WHERE p.pronamespace = 'ocx'::regnamespace AND p.proname IN ('import_begin', 'import_commit', 'export')
 ORDER BY 1;
SELECT has_function_privilege('ocx_writer', 'ocx.import_commit()', 'EXECUTE') AS writer,
       has_function_privilege('ocx_admin', 'ocx.import_commit()', 'EXECUTE') AS admin,
       has_table_privilege('ocx_admin', 'ocx.import_staging', 'INSERT') AS admin_copies,
       has_function_privilege('ocx_admin', 'ocx._import_write()', 'EXECUTE') AS admin_writes;
DROP ROLE imp_admin, imp_writer, imp_reader;

-- each exported CloudEvent is ocx.to_cloudevent(e) with the attributes the
-- import reads back, which win over metadata extensions of the same names
-- (the export's definition before it was one C call, kept as the oracle):
-- tags, a schema version above 1, ids, a CloudEvent's own id and data kept
-- in metadata._ce, and metadata named like the export's attributes
SELECT ocx.append('exq-1', NULL, '[
  {"type": "Q", "data": {"a": 1}, "tags": ["x", "b"], "schema_version": 3,
   "correlation_id": "0190a6d2-7c4e-7a3b-8d3f-0123456789ab",
   "metadata": {"ocxstream": "evil", "ocxversion": 99, "ocxtags": "no", "schemaversion": 7,
                "subject": "s", "weird": {"o": 1}}},
  {"type": "Q", "data": {"b": 2}, "metadata": {"ocxtags": "kept: the event has no tags"}}]');
SELECT ocx.append_cloudevents('exq-2', NULL, '[{"specversion": "1.0", "id": "not-a-uuid", "source": "urn:exq",
                                                "type": "Q", "data": [1, 2], "ocxversion": 5}]');
SELECT count(*) > 20000 AS many_events,
       count(*) FILTER (WHERE x.cloudevent IS DISTINCT FROM ocx.to_cloudevent(e)
                          || jsonb_build_object('ocxstream', e.stream_id, 'ocxversion', e.stream_version,
                                                'schemaversion', e.schema_version)
                          || COALESCE((SELECT jsonb_build_object('ocxtags', array_to_json(t.tags)::text)
                                         FROM ocx.events t
                                        WHERE t.global_position = e.global_position AND t.tags IS NOT NULL),
                                      '{}')) AS different
  FROM ocx.export() x
  JOIN ocx.read_all(NULL, NULL, upcast => false) e ON x."cursor"::text = e."cursor"::text;
SELECT x.cloudevent - 'id' - 'time' AS cloudevent FROM ocx.export(category => 'exq') x;

\c :regress_db
DROP DATABASE ocx_import_regress WITH (FORCE);
DROP DATABASE ocx_import_regress2 WITH (FORCE);
