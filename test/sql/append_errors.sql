-- Bad input gets a clear ocx error and writes nothing.
\set SHOW_CONTEXT never

SELECT ocx.append(NULL, 0, '{"type": "A"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('', 0, '{"type": "A"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append(repeat('x', 1025), 0, '{"type": "A"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', -2, '{"type": "A"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '42');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '"Opened"');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '[{"type": "A"}, 7]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": ""}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "data": [1, 2]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "data": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "metadata": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "id": "not-a-uuid"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "id": 12}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "correlation_id": "nope"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "time": "yesterday-ish"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "time": "infinity"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "schema_version": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "schema_version": 1.5}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "schema_version": "2"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "source": ""}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, '{"type": "A", "metdata": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, jsonb_build_object('type', repeat('T', 257)));
\echo :LAST_ERROR_SQLSTATE
-- one bad event spoils the whole batch
SELECT ocx.append('bad-1', 0, '[{"type": "A"}, {"type": "B"}, {"type": "C", "data": 3}]');
\echo :LAST_ERROR_SQLSTATE

-- the size limit
SET ocx.max_event_size = 1024;
SELECT ocx.append('bad-1', 0, jsonb_build_object('type', 'Big', 'data',
    jsonb_build_object('blob', repeat('x', 2000))));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('bad-1', 0, jsonb_build_object('type', 'Small', 'data',
    jsonb_build_object('blob', repeat('x', 100)))) AS small_is_fine;
RESET ocx.max_event_size;

-- append_event's own checks
SELECT ocx.append_event('bad-2', 0, NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('bad-2', 0, 'A', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('bad-2', 0, 'A', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('bad-2', 0, 'A', '{}', '"m"');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('bad-2', -5, 'A', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event(NULL, 0, 'A', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('bad-2', 0, '', '{}');
\echo :LAST_ERROR_SQLSTATE

-- nothing of the above was written
SELECT count(*) AS bad_events FROM ocx.events WHERE stream_id IN ('bad-1', 'bad-2') AND type <> 'Small';
SELECT count(*) AS bad_streams FROM ocx.streams WHERE stream_id = 'bad-2';

-- unknown settings in the ocx namespace are refused
SET ocx.no_such_setting = 1;
\echo :LAST_ERROR_SQLSTATE

-- read argument checks
SELECT * FROM ocx.read_stream(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_stream('');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_stream('x', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_stream('x', 1, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_all(NULL, -5);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_category(NULL);
\echo :LAST_ERROR_SQLSTATE

-- a read-only transaction gets PostgreSQL's read-only error, not an internal one
BEGIN READ ONLY;
SELECT ocx.append('ro-1', 0, '{"type": "A"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- ocx.source, the default source of events that give none, empty or too long: OX011
SET ocx.source = '';
SELECT ocx.append('aesrc-1', 0, '{"type": "A", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT repeat('x', 1025) AS long_source \gset
SET ocx.source = :'long_source';
SELECT ocx.append('aesrc-1', 0, '{"type": "A", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
-- an event that names its own source does not need the setting
SELECT ocx.append('aesrc-1', 0, '{"type": "A", "data": {}, "source": "urn:x"}');
RESET ocx.source;
SELECT stream_id, stream_version, source FROM ocx.read_stream('aesrc-1');
