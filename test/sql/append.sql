-- ocx.append / ocx.append_event: expected-version rules, batches, defaults
\set SHOW_CONTEXT never

-- a new stream: expected 0
SELECT ocx.append('acct-1', 0, '[{"type": "Opened", "data": {"owner": "ann"}},
                                 {"type": "Deposited", "data": {"amount": 100}}]');
-- exactly at 2
SELECT ocx.append('acct-1', 2, '{"type": "Deposited", "data": {"amount": 50}}');
-- any version
SELECT ocx.append('acct-1', NULL, '{"type": "Withdrawn", "data": {"amount": 30}}');
SELECT ocx.append_event('acct-1', 4, 'Deposited', '{"amount": 7}');
SELECT ocx.stream_version('acct-1'), ocx.stream_version('acct-missing');

SELECT stream_version, type, data, schema_version, source, metadata,
       correlation_id, causation_id, tenant_id
  FROM ocx.read_stream('acct-1');

-- versions are gap-free, positions increase with version, one txid per call
SELECT count(*) = max(stream_version) AS gap_free,
       bool_and(global_position > lag_pos) AS positions_increase
  FROM (SELECT stream_version, global_position,
               lag(global_position, 1, 0::bigint) OVER (ORDER BY stream_version) AS lag_pos
          FROM ocx.events WHERE stream_id = 'acct-1') s;
SELECT count(DISTINCT txid) AS txids FROM ocx.events WHERE stream_id = 'acct-1';

-- the stream row
SELECT stream_id, version, category, deleted FROM ocx.streams WHERE stream_id = 'acct-1';

-- wrong expected versions: own code, expected and actual in DETAIL, nothing written
SELECT ocx.append('acct-1', 3, '{"type": "Deposited", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('acct-1', 0, '{"type": "Deposited", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('acct-new', 4, '{"type": "Deposited", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('acct-1', 9, 'Deposited', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.stream_version('acct-1') AS still_5, ocx.stream_version('acct-new') AS still_0;

-- a conflict can be caught by code
DO $$
BEGIN
    PERFORM ocx.append('acct-1', 1, '{"type": "Deposited", "data": {}}');
EXCEPTION WHEN SQLSTATE 'OX001' THEN
    RAISE NOTICE 'conflict caught: %', SQLERRM;
END $$;

-- a large batch in one call
SELECT ocx.append('bulk-1', 0,
    (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', jsonb_build_object('n', i)))
       FROM generate_series(1, 2500) i));
SELECT count(*), min(stream_version), max(stream_version),
       bool_and((data->>'n')::int = stream_version) AS in_order
  FROM ocx.read_stream('bulk-1');

-- caller-given fields
SELECT ocx.append('acct-2', 0, '{"type": "Opened", "data": {"owner": "bob"},
    "id": "5f1c9f52-2d7e-4bb0-9a8a-6a1f0c4f3e11", "source": "urn:bank:web",
    "time": "2024-05-01T12:00:00Z", "schema_version": 2,
    "metadata": {"user": "u1"}, "correlation_id": "11111111-2222-3333-4444-555555555555",
    "causation_id": "66666666-7777-8888-9999-000000000000",
    "datacontenttype": "application/json"}');
SELECT event_id, source, time AT TIME ZONE 'UTC' AS utc, schema_version, metadata,
       correlation_id, causation_id
  FROM ocx.read_stream('acct-2');

-- generated ids are UUIDv7 and unique
SELECT count(DISTINCT event_id) = count(*) AS unique_ids,
       bool_and(substr(event_id::text, 15, 1) = '7') AS v7
  FROM ocx.events WHERE stream_id = 'bulk-1';

-- correlation and tracing from settings; explicit values win
BEGIN;
SET LOCAL ocx.correlation_id = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
SET LOCAL ocx.causation_id = 'bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee';
SET LOCAL ocx.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SELECT ocx.append('trace-1', 0, '[{"type": "A", "data": {}},
    {"type": "B", "data": {}, "correlation_id": "cccccccc-bbbb-cccc-dddd-eeeeeeeeeeee",
     "metadata": {"traceparent": "00-11111111111111111111111111111111-2222222222222222-00"}}]');
COMMIT;
SELECT type, correlation_id, causation_id, metadata->>'traceparent' AS traceparent
  FROM ocx.read_stream('trace-1');
SET ocx.correlation_id = 'not-a-uuid';
\echo :LAST_ERROR_SQLSTATE
SET ocx.traceparent = '00-XYZ';
\echo :LAST_ERROR_SQLSTATE

-- ocx.source names the producer of events without a source
SET ocx.source = 'urn:test:producer';
SELECT ocx.append('src-1', 0, '{"type": "A"}');
RESET ocx.source;
SELECT source, data FROM ocx.read_stream('src-1');

-- the category rule
SELECT ocx.category('order-42'), ocx.category('order-42-line-1'), ocx.category('order');
SELECT category FROM ocx.streams WHERE stream_id = 'bulk-1';
