-- ocx.trace(correlation_id): the causal tree of one correlation id.
\set SHOW_CONTEXT never

BEGIN;
SET LOCAL ocx.correlation_id = '7a000000-0000-4000-8000-000000000000';
SET LOCAL ocx.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
-- the root: no causation
SELECT ocx.append('trace-order-1', 0,
    '{"id": "7a000000-0000-4000-8000-000000000001", "type": "OrderPlaced", "data": {}}');
-- two events caused by it, one of them in another stream
SELECT ocx.append('trace-order-1', 1,
    '{"id": "7a000000-0000-4000-8000-000000000002", "type": "OrderPriced", "data": {},
      "causation_id": "7a000000-0000-4000-8000-000000000001"}');
SELECT ocx.append('trace-stock-1', NULL,
    '{"id": "7a000000-0000-4000-8000-000000000003", "type": "StockReserved", "data": {},
      "causation_id": "7a000000-0000-4000-8000-000000000001"}');
-- a grandchild, caused through the setting
SET LOCAL ocx.causation_id = '7a000000-0000-4000-8000-000000000003';
SELECT ocx.append('trace-ship-1', NULL,
    '{"id": "7a000000-0000-4000-8000-000000000004", "type": "ShipmentPlanned", "data": {}}');
-- its own traceparent in metadata wins over the setting
SELECT ocx.append('trace-ship-1', NULL,
    '{"id": "7a000000-0000-4000-8000-000000000005", "type": "ShipmentBooked", "data": {},
      "metadata": {"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"},
      "causation_id": "7a000000-0000-4000-8000-000000000004"}');
-- caused by something outside the trace: a root of its own
SET LOCAL ocx.causation_id = '7a000000-0000-4000-8000-0000000000ff';
SELECT ocx.append('trace-audit-1', NULL,
    '{"id": "7a000000-0000-4000-8000-000000000006", "type": "Audited", "data": {}}');
-- another correlation id: not part of the trace
SET LOCAL ocx.correlation_id = '7b000000-0000-4000-8000-000000000000';
SELECT ocx.append('trace-order-2', NULL,
    '{"id": "7b000000-0000-4000-8000-000000000001", "type": "OrderPlaced", "data": {},
      "causation_id": "7a000000-0000-4000-8000-000000000001"}');
COMMIT;

SELECT depth, kind, right(id::text, 2) AS id, right(causation_id::text, 2) AS cause,
       pg_catalog.repeat('  ', depth) || type AS tree, stream_id, stream_version,
       traceparent
  FROM ocx.trace('7a000000-0000-4000-8000-000000000000');

-- an unknown correlation id: an empty tree; NULL: nothing (STRICT)
SELECT count(*) FROM ocx.trace('7c000000-0000-4000-8000-000000000000');
SELECT count(*) FROM ocx.trace(NULL);

-- readers may trace
SET ROLE ocx_reader;
SELECT count(*) FROM ocx.trace('7a000000-0000-4000-8000-000000000000');
RESET ROLE;
