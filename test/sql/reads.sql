-- Reads of issue 13: read_stream backward and by type, ocx.last_event, and
-- the expected version ocx.stream_exists().  Each read is checked for
-- tenancy (a reader of another tenant sees nothing), upcasting and as a
-- plain member of ocx_reader.
\set SHOW_CONTEXT never

-- rd.Item v1 events are upcast to v2 (qty renamed to n) on every read
SELECT ocx.append('rdstream-1', 0, '[
  {"type": "rd.Item", "data": {"qty": 1}},
  {"type": "rd.Note", "data": {"k": 2}},
  {"type": "rd.Item", "data": {"qty": 3}},
  {"type": "rd.Note", "data": {"k": 4}},
  {"type": "rd.Item", "data": {"qty": 5}}
]');
SELECT ocx.define_event_type('rd.Item', 2);
SELECT ocx.define_upcaster('rd.Item', 1, spec => '{"op": "rename", "from": "qty", "to": "n"}');

-- forward stays the default, from_version up
SELECT stream_version, type, schema_version, data FROM ocx.read_stream('rdstream-1');
SELECT stream_version FROM ocx.read_stream('rdstream-1', 2, 2);
SELECT stream_version FROM ocx.read_stream('rdstream-1', NULL, 2, 'forward');

-- backward: from the last version down (from_version NULL), or from
-- from_version down, upcast
SELECT stream_version, type, schema_version, data FROM ocx.read_stream('rdstream-1', direction => 'backward');
SELECT stream_version FROM ocx.read_stream('rdstream-1', 4, direction => 'backward');
SELECT stream_version FROM ocx.read_stream('rdstream-1', 4, 2, 'backward');
SELECT stream_version FROM ocx.read_stream('rdstream-1', 99, 2, 'backward');
SELECT count(*) AS below_version_one FROM ocx.read_stream('rdstream-1', 0, NULL, 'backward');
SELECT count(*) AS zero_count FROM ocx.read_stream('rdstream-1', NULL, 0, 'backward');
SELECT count(*) AS absent_stream FROM ocx.read_stream('rdstream-none', NULL, NULL, 'backward');
-- cursors are the events' own in either direction
SELECT bool_and(ocx.cursor_cmp(b.cursor, f.cursor) = 0) AS same_cursors
  FROM ocx.read_stream('rdstream-1', direction => 'backward') b
  JOIN ocx.read_stream('rdstream-1') f USING (global_position);

-- a type filter, both directions; filters apply before upcasting
SELECT stream_version, type, data FROM ocx.read_stream('rdstream-1', types => ARRAY['rd.Item']);
SELECT stream_version, type, data FROM ocx.read_stream('rdstream-1', NULL, 2, 'backward', ARRAY['rd.Item']);
SELECT stream_version, type FROM ocx.read_stream('rdstream-1', 3, NULL, 'backward', ARRAY['rd.Note', 'rd.Other']);
SELECT count(*) AS no_such_type FROM ocx.read_stream('rdstream-1', types => ARRAY['rd.Other']);
SELECT count(*) AS empty_types FROM ocx.read_stream('rdstream-1', types => ARRAY[]::text[]);

-- bad arguments: OX010 / OX003
SELECT * FROM ocx.read_stream('rdstream-1', direction => 'sideways');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_stream('rdstream-1', direction => 'BACKWARD');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_stream('rdstream-1', -1, NULL, 'backward');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_stream('rdstream-1', NULL, -1, 'backward');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_stream('', NULL, NULL, 'backward');
\echo :LAST_ERROR_SQLSTATE
-- NULL direction is forward
SELECT stream_version FROM ocx.read_stream('rdstream-1', 4, NULL, NULL);

-- each direction walks the index its own way, no sort (a prepared statement
-- with a generic plan too); with a constant direction the plan holds only
-- that direction's branch (no Append, no Sort over an empty Result)
EXPLAIN (COSTS OFF) SELECT * FROM ocx.read_stream('rdstream-1', NULL, 10, 'backward');
PREPARE rd_back(text, bigint, int, text) AS SELECT stream_version FROM ocx.read_stream($1, $2, $3, $4);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE rd_back('rdstream-1', NULL, 10, 'backward');
EXECUTE rd_back('rdstream-1', NULL, 2, 'backward');
EXECUTE rd_back('rdstream-1', NULL, 2, 'forward');
RESET plan_cache_mode;
DEALLOCATE rd_back;

-- ocx.last_event: one row or none, upcast, optionally of one type
SELECT stream_version, type, schema_version, data FROM ocx.last_event('rdstream-1');
SELECT stream_version, type, data FROM ocx.last_event('rdstream-1', 'rd.Note');
SELECT stream_version, type, schema_version, data FROM ocx.last_event('rdstream-1', 'rd.Item');
SELECT count(*) AS no_such_type FROM ocx.last_event('rdstream-1', 'rd.Other');
SELECT count(*) AS absent_stream FROM ocx.last_event('rdstream-none');
SELECT (ocx.last_event('rdstream-1')).stream_version AS in_select_list;
SELECT * FROM ocx.last_event(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.last_event('');
\echo :LAST_ERROR_SQLSTATE
-- last_event is inlined into the caller's query: one backward index scan;
-- the soft-deleted versions it skips come from ocx._hidden_through, run once
-- in the index condition, and that is C: a SQL function there (never inlined,
-- as its body has a subquery) was parsed and planned on every read
EXPLAIN (COSTS OFF) SELECT * FROM ocx.last_event('rdstream-1');
SELECT l.lanname AS hidden_through_language
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'ocx._hidden_through(text)'::regprocedure;

-- ocx.stream_exists(): the expected version "the stream exists, any version"
SELECT ocx.stream_exists();
SELECT ocx.append('rdexists-1', ocx.stream_exists(), '{"type": "rd.Note", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('rdexists-1', ocx.stream_exists(), 'rd.Note', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('rdexists-1', ocx.stream_exists(),
    '{"specversion": "1.0", "id": "rd-ce-1", "source": "/rd", "type": "rd.Note", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS nothing_written FROM ocx.events WHERE stream_id = 'rdexists-1';
SELECT count(*) AS no_stream_row FROM ocx.streams WHERE stream_id = 'rdexists-1';
SELECT ocx.append('rdexists-1', 0, '{"type": "rd.Note", "data": {"v": 1}}');
SELECT ocx.append('rdexists-1', ocx.stream_exists(), '{"type": "rd.Note", "data": {"v": 2}}');
SELECT ocx.append_event('rdexists-1', ocx.stream_exists(), 'rd.Note', '{"v": 3}');
SELECT ocx.append('rdexists-1', ocx.stream_exists(),
    '[{"type": "rd.Note", "data": {"v": 4}}, {"type": "rd.Note", "data": {"v": 5}}]');
-- with ids: the write path of batches with caller-given ids, and an
-- idempotent retry of it
SELECT ocx.append('rdexists-1', ocx.stream_exists(),
    '[{"id": "5b1c7a8e-0000-4000-8000-000000000001", "type": "rd.Note", "data": {"v": 6}}]');
SELECT ocx.append('rdexists-1', ocx.stream_exists(),
    '[{"id": "5b1c7a8e-0000-4000-8000-000000000001", "type": "rd.Note", "data": {"v": 6}}]') AS idempotent_retry;
SELECT ocx.append('rdexists-2', ocx.stream_exists(),
    '[{"id": "5b1c7a8e-0000-4000-8000-000000000002", "type": "rd.Note", "data": {}}]');
\echo :LAST_ERROR_SQLSTATE
-- a retry of a batch that created its stream does not meet "exists"
SELECT ocx.append('rdexists-3', 0,
    '[{"id": "5b1c7a8e-0000-4000-8000-000000000003", "type": "rd.Note", "data": {}}]');
SELECT ocx.append('rdexists-3', ocx.stream_exists(),
    '[{"id": "5b1c7a8e-0000-4000-8000-000000000003", "type": "rd.Note", "data": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT stream_version, data ->> 'v' AS v FROM ocx.read_stream('rdexists-1');
SELECT ocx.stream_version('rdexists-1');
-- other negative versions stay refused
SELECT ocx.append('rdexists-1', -2, '{"type": "rd.Note", "data": {}}');
\echo :LAST_ERROR_SQLSTATE

-- Tenancy and least privilege: a plain member of ocx_reader of tenant acme
-- reads acme's stream, one of globex reads nothing of it.
CREATE ROLE ocx_regress_rd_writer NOLOGIN IN ROLE ocx_writer;
CREATE ROLE ocx_regress_rd_reader NOLOGIN IN ROLE ocx_reader;
SET ROLE ocx_regress_rd_writer;
SET ocx.tenant = 'acme';
SELECT ocx.append('rdtenant-1', 0, '[
  {"type": "rd.Item", "schema_version": 1, "data": {"qty": 10}},
  {"type": "rd.Note", "data": {"k": 20}},
  {"type": "rd.Item", "schema_version": 1, "data": {"qty": 30}}
]');
-- stream_exists is tenant-bound too: globex cannot append to acme's stream
SET ocx.tenant = 'globex';
SELECT ocx.append('rdtenant-1', ocx.stream_exists(), '{"type": "rd.Note", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SET ocx.tenant = 'acme';
SELECT ocx.append('rdtenant-1', ocx.stream_exists(), '{"type": "rd.Note", "data": {"k": 40}}');
SET ROLE ocx_regress_rd_reader;
SELECT ocx.append('rdtenant-1', ocx.stream_exists(), '{"type": "rd.Note", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT stream_version, type, schema_version, data, tenant_id
  FROM ocx.read_stream('rdtenant-1', NULL, 2, 'backward');
SELECT stream_version, data FROM ocx.read_stream('rdtenant-1', types => ARRAY['rd.Item']);
SELECT stream_version, type, schema_version, data FROM ocx.last_event('rdtenant-1', 'rd.Item');
SELECT stream_version, type FROM ocx.last_event('rdtenant-1');
SET ocx.tenant = 'globex';
SELECT count(*) AS globex_backward FROM ocx.read_stream('rdtenant-1', NULL, NULL, 'backward');
SELECT count(*) AS globex_typed FROM ocx.read_stream('rdtenant-1', NULL, NULL, 'backward', ARRAY['rd.Item']);
SELECT count(*) AS globex_last FROM ocx.last_event('rdtenant-1');
SELECT count(*) AS globex_last_typed FROM ocx.last_event('rdtenant-1', 'rd.Item');
RESET ocx.tenant;
SELECT count(*) AS untenanted_last FROM ocx.last_event('rdtenant-1');
RESET ROLE;

-- privileges as granted
SELECT p.oid::regprocedure AS fn, pg_catalog.has_function_privilege('ocx_reader', p.oid, 'EXECUTE') AS reader
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'ocx'::regnamespace
   AND p.proname IN ('read_stream', 'last_event', 'stream_exists', '_direction_arg')
 ORDER BY 1::text;

DELETE FROM ocx.event_types WHERE type = 'rd.Item';
DROP ROLE ocx_regress_rd_writer;
DROP ROLE ocx_regress_rd_reader;
