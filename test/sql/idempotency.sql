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

-- an id that another tenant's event holds, stored before the snapshot: OX004
-- under REPEATABLE READ as under READ COMMITTED (REPEATABLE READ said OX001,
-- "a concurrent transaction stored an event id", and that a retry would
-- help: the row-level security that hides the event was taken for the
-- snapshot; t/204_direct_differential.pl found it)
SET ocx.tenant = 'idem-acme';
SELECT ocx.append('idem-acme-1', NULL, '{"type": "A", "id": "00000000-0000-4000-8000-0000000000e1"}') AS acme_appended;
RESET ocx.tenant;
SELECT ocx.append('idem-other-1', NULL, '{"type": "A", "id": "00000000-0000-4000-8000-0000000000e1"}');
\echo :LAST_ERROR_SQLSTATE
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ocx.append('idem-other-1', NULL, '{"type": "A", "id": "00000000-0000-4000-8000-0000000000e1"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) AS idem_other_1 FROM ocx.events WHERE stream_id = 'idem-other-1';
