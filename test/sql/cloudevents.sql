-- CloudEvents 1.0 structured mode: append_cloudevents and to_cloudevent.
\set SHOW_CONTEXT never

-- a full event with extensions: the round trip gives back exactly what went in
CREATE TEMP TABLE ce_in(n int, ce jsonb);
INSERT INTO ce_in VALUES
 (1, '{"specversion": "1.0", "id": "0f4c8c55-6f0e-4f4e-9f5e-2b7b9f0e1a01",
       "source": "urn:shop:checkout", "type": "com.shop.order.placed",
       "time": "2024-05-01T12:00:00Z", "datacontenttype": "application/json",
       "dataschema": "https://shop.example/schemas/placed.json", "subject": "order-77",
       "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
       "partitionkey": "eu", "priority": 3, "urgent": true,
       "correlationid": "7b0a4b9e-2f0e-4d6a-9a47-5d1f9e0f7c11",
       "data": {"total": 99.5, "items": [{"sku": "A", "qty": 2}]}}'),
 -- a non-UUID id, string data, no time
 (2, '{"specversion": "1.0", "id": "evt-42", "source": "/sensors/7", "type": "reading",
       "datacontenttype": "text/plain", "data": "21.5 C"}'),
 -- binary data, no datacontenttype
 (3, '{"specversion": "1.0", "id": "b1", "source": "/cam", "type": "frame",
       "time": "2024-05-01T14:00:00.123456+02:00", "data_base64": "aGVsbG8="}'),
 -- no data at all, an array as data would be (4); non-uuid correlation id kept as is
 (4, '{"specversion": "1.0", "id": "x4", "source": "/s", "type": "ping",
       "correlationid": "req-17"}'),
 (5, '{"specversion": "1.0", "id": "x5", "source": "/s", "type": "list", "data": [1, 2, 3]}');

SELECT ocx.append_cloudevents('ce-1', 0, (SELECT jsonb_agg(ce ORDER BY n) FROM ce_in));

SELECT i.n, ocx.to_cloudevent(e) = i.ce AS round_trip_exact
  FROM ocx.read_stream('ce-1') e JOIN ce_in i ON i.n = e.stream_version
 ORDER BY i.n;
-- (3): time normalized to UTC, the same instant
SELECT ocx.to_cloudevent(e) - 'time' = i.ce - 'time' AS rest_equal,
       (ocx.to_cloudevent(e)->>'time')::timestamptz = (i.ce->>'time')::timestamptz AS same_instant,
       ocx.to_cloudevent(e)->>'time' AS utc_time
  FROM ocx.read_stream('ce-1') e JOIN ce_in i ON i.n = e.stream_version
 WHERE i.n = 3;

-- how they are stored
SELECT stream_version, type, source, data, correlation_id,
       metadata - 'traceparent' AS metadata
  FROM ocx.read_stream('ce-1');

-- a single (non-batch) CloudEvent
SELECT ocx.append_cloudevents('ce-2', 0, '{"specversion": "1.0", "id": "s1",
    "source": "/single", "type": "one", "data": {"k": "v"}}');

-- events appended with ocx.append become valid CloudEvents; metadata that is no
-- valid extension travels as "ocxmetadata"
SELECT ocx.append('ce-3', 0, '{"type": "Opened", "data": {"a": 1},
    "id": "3d1f0b7e-1c1a-4c55-9a7e-0c4b2d1e5f60", "source": "urn:bank", "time": "2024-01-02T03:04:05Z",
    "schema_version": 3, "metadata": {"user_id": 7, "region": "eu", "tags": ["x"]}}');
SELECT ocx.to_cloudevent(e) FROM ocx.read_stream('ce-3') e;
-- ... and come back unchanged through append_cloudevents
SELECT ocx.append_cloudevents('ce-4', 0,
    (SELECT ocx.to_cloudevent(e) FROM ocx.read_stream('ce-3') e)
    || '{"id": "4d1f0b7e-1c1a-4c55-9a7e-0c4b2d1e5f60"}');
SELECT a.type = b.type AND a.source = b.source AND a.time = b.time AND a.data = b.data
       AND a.metadata = b.metadata AND a.schema_version = b.schema_version AS ocx_round_trip
  FROM ocx.read_stream('ce-3') a, ocx.read_stream('ce-4') b;

-- the same CloudEvent again is an idempotent retry (id + source)
SELECT ocx.append_cloudevents('ce-2', 0, '{"specversion": "1.0", "id": "s1",
    "source": "/single", "type": "one", "data": {"k": "v"}}') AS retry;
SELECT count(*) FROM ocx.read_stream('ce-2');

-- invalid CloudEvents are rejected and write nothing
SELECT ocx.append_cloudevents('ce-bad', 0, '{"id": "1", "source": "/s", "type": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "source": "/s", "type": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "1", "type": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "1", "source": "/s"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "", "source": "/s", "type": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": 1.0, "id": "1", "source": "/s", "type": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": "soon"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "Bad_Name": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "ext": {"o": 1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {}, "data_base64": "AA=="}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "ocxmetadata": "[1]"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '[{"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, "x"]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, 'true');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ce-bad', 0, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS nothing_written FROM ocx.events WHERE stream_id = 'ce-bad';
