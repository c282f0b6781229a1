-- Idempotent appends by (source, id), EventStoreDB's rules.
\set SHOW_CONTEXT never

SELECT ocx.append('idem-1', 0, '[
  {"type": "A", "data": {"n": 1}, "id": "00000000-0000-4000-8000-000000000001"},
  {"type": "B", "data": {"n": 2}, "id": "00000000-0000-4000-8000-000000000002"}]');

-- the same batch again at the same expected version: success, nothing written
SELECT ocx.append('idem-1', 0, '[
  {"type": "A", "data": {"n": 1}, "id": "00000000-0000-4000-8000-000000000001"},
  {"type": "B", "data": {"n": 2}, "id": "00000000-0000-4000-8000-000000000002"}]') AS retry_returns;
-- ... and with expected = any
SELECT ocx.append('idem-1', NULL, '[
  {"type": "A", "data": {"n": 1}, "id": "00000000-0000-4000-8000-000000000001"},
  {"type": "B", "data": {"n": 2}, "id": "00000000-0000-4000-8000-000000000002"}]') AS retry_any_returns;
SELECT count(*) AS events, ocx.stream_version('idem-1') AS version
  FROM ocx.events WHERE stream_id = 'idem-1';

-- the stream moves on; the old retry still succeeds without writing
SELECT ocx.append('idem-1', 2, '{"type": "C", "data": {}, "id": "00000000-0000-4000-8000-000000000003"}');
SELECT ocx.append('idem-1', 0, '[
  {"type": "A", "data": {"n": 1}, "id": "00000000-0000-4000-8000-000000000001"},
  {"type": "B", "data": {"n": 2}, "id": "00000000-0000-4000-8000-000000000002"}]') AS old_retry;
SELECT ocx.append_event('idem-1', 2, 'C', '{}', '{}', '00000000-0000-4000-8000-000000000003') AS single_retry;
SELECT count(*) AS events FROM ocx.events WHERE stream_id = 'idem-1';

-- a retry with the wrong expected version is a conflict
SELECT ocx.append('idem-1', 1, '{"type": "C", "data": {}, "id": "00000000-0000-4000-8000-000000000003"}');
\echo :LAST_ERROR_SQLSTATE

-- partial overlap: error
SELECT ocx.append('idem-1', 3, '[
  {"type": "C", "data": {}, "id": "00000000-0000-4000-8000-000000000003"},
  {"type": "D", "data": {}, "id": "00000000-0000-4000-8000-000000000004"}]');
\echo :LAST_ERROR_SQLSTATE
-- same id, different payload: error
SELECT ocx.append('idem-1', 2, '{"type": "C", "data": {"changed": true}, "id": "00000000-0000-4000-8000-000000000003"}');
\echo :LAST_ERROR_SQLSTATE
-- same id in another stream: error
SELECT ocx.append('idem-2', 0, '{"type": "A", "data": {"n": 1}, "id": "00000000-0000-4000-8000-000000000001"}');
\echo :LAST_ERROR_SQLSTATE
-- same batch, other order: error
SELECT ocx.append('idem-1', 0, '[
  {"type": "B", "data": {"n": 2}, "id": "00000000-0000-4000-8000-000000000002"},
  {"type": "A", "data": {"n": 1}, "id": "00000000-0000-4000-8000-000000000001"}]');
\echo :LAST_ERROR_SQLSTATE
-- the same id twice in one batch: error
SELECT ocx.append('idem-3', 0, '[
  {"type": "A", "data": {}, "id": "00000000-0000-4000-8000-0000000000aa"},
  {"type": "A", "data": {}, "id": "00000000-0000-4000-8000-0000000000aa"}]');
\echo :LAST_ERROR_SQLSTATE
-- the same id under another source is another event
SELECT ocx.append('idem-4', 0, '{"type": "A", "data": {"n": 1}, "source": "urn:other",
                                 "id": "00000000-0000-4000-8000-000000000001"}') AS other_source_ok;

SELECT count(*) AS events_idem_1 FROM ocx.events WHERE stream_id = 'idem-1';
SELECT count(*) AS events_idem_2_3 FROM ocx.events WHERE stream_id IN ('idem-2', 'idem-3');
