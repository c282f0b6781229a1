-- Issue 11, item 9: every refused input gets an ocx SQLSTATE and follows a
-- documented rule (docs/errors.md, docs/reference.md#input-rules).
-- Runs in its own database: its events must not show in other tests.
\set SHOW_CONTEXT never
CREATE DATABASE ocx_faults_inputs;
\c ocx_faults_inputs
SET client_min_messages = warning;
CREATE EXTENSION ocx;
RESET client_min_messages;

-- source: at most 1024 bytes (it used to fail with 54000 from the index)
SELECT ocx.append('fi-1', NULL, jsonb_build_object('type', 'A', 'source',
    (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i)));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('fi-1', NULL, jsonb_build_object('type', 'A', 'source', repeat('s', 1025)));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('fi-1', NULL, jsonb_build_object('type', 'A', 'source', repeat('s', 1024)));
SELECT ocx.append_cloudevents('fi-2', NULL, jsonb_build_object('specversion', '1.0', 'id', '1',
    'type', 'A', 'source', repeat('s', 1025)));
\echo :LAST_ERROR_SQLSTATE
SET ocx.source = 'x';
SELECT set_config('ocx.source', repeat('s', 1025), false) IS NOT NULL;
SELECT ocx.append('fi-1', NULL, '{"type": "A"}');
\echo :LAST_ERROR_SQLSTATE
RESET ocx.source;

-- time: RFC 3339 only, with a zone
SELECT ocx.append('fi-3', NULL, '{"type": "A", "time": "yesterday"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('fi-3', NULL, '{"type": "A", "time": "J2451187"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('fi-3', NULL, '{"type": "A", "time": "2024-05-01 12:00:00"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('fi-3', NULL, '{"type": "A", "time": "2024-02-30T12:00:00Z"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('fi-3', NULL, '{"type": "A", "time": "May 1 2024 12:00 UTC"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('fi-4', NULL, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "A", "time": "yesterday"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('fi-3', NULL, '[{"type": "A", "time": "2024-05-01T12:00:00Z"},
                                  {"type": "A", "time": "2024-05-01t14:00:00.5+02:00"},
                                  {"type": "A", "time": "2024-05-01 12:00:00.123456-01:30"}]');
SELECT stream_version, time AT TIME ZONE 'UTC' AS utc FROM ocx.read_stream('fi-3') ORDER BY stream_version;

-- data_base64: RFC 4648 base64
SELECT ocx.append_cloudevents('fi-5', NULL, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "A", "data_base64": "!!!"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('fi-5', NULL, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "A", "data_base64": "aGVsbG8"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('fi-5', NULL, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "A", "data_base64": "aG=sbG8="}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('fi-5', NULL, '[{"specversion": "1.0", "id": "1", "source": "/s", "type": "A", "data_base64": "aGVsbG8="},
                                              {"specversion": "1.0", "id": "2", "source": "/s", "type": "A", "data_base64": "aGk="},
                                              {"specversion": "1.0", "id": "3", "source": "/s", "type": "A", "data_base64": ""}]');

-- stream_partition: partitions 1 .. 1024 (it used to raise 22012)
SELECT ocx.stream_partition('s', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.stream_partition('s', -3);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.stream_partition('s', 1025);
\echo :LAST_ERROR_SQLSTATE
-- the same partitions as before (the hash did not change)
SELECT ocx.stream_partition(s, 7) = (hashtext(s) & 2147483647) % 7 AS same
  FROM (VALUES ('order-1'), ('order-42'), ('')) v(s);

-- cursors: the global position is >= 0, so every cursor's text reads back
SELECT ocx.cursor('5', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT '5/-1'::ocx.cursor;
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.cursor('5', 0), ocx.cursor('5', 0)::text::ocx.cursor OPERATOR(ocx.=) ocx.cursor('5', 0) AS round_trip;

-- send_command: data plus metadata within ocx.max_event_size, a finite run_at
SELECT ocx.send_command('Big', jsonb_build_object('blob',
    (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 320000) i)));
\echo :LAST_ERROR_SQLSTATE
SET ocx.max_event_size = 1024;
SELECT ocx.send_command('Big', jsonb_build_object('blob', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('Big', '{}', metadata => jsonb_build_object('blob', repeat('x', 2000)));
\echo :LAST_ERROR_SQLSTATE
RESET ocx.max_event_size;
SELECT ocx.send_command('Later', '{}', run_at => 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('Later', '{}', run_at => '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('Later', '{}', run_at => '2030-01-01T00:00:00Z') IS NOT NULL AS sent;
SELECT count(*) FROM ocx.commands;

-- two-dimensional filter arrays (found by the fuzz test: PostgreSQL's 0A000
-- from array_position); an ocx SQLSTATE, nothing written
SELECT * FROM ocx.claim_commands('{{a,b},{c,d}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('fz_sub', types => '{{a,b},{c,d}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('fz_sub', categories => '{{a,b},{c,d}}');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION fz_handler(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT ocx.define_projection('fz_proj', 'fz_handler(ocx.event)', types => '{{a,b},{c,d}}');
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM ocx.subscriptions) + (SELECT count(*) FROM ocx.projections) AS defined;

\c contrib_regression
DROP DATABASE ocx_faults_inputs WITH (FORCE);
