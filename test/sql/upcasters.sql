-- Upcasters: v1 events read as v3 on every read path; stored events never change.
\set SHOW_CONTEXT never

-- events written before the type had a contract: schema version 1
SELECT ocx.append('upcust-1', 0, '[
  {"type": "up.Registered", "data": {"name": "Ann", "age": "42", "vip": "yes", "legacy": 1,
                                     "addr": {"city": "Oslo"}}},
  {"type": "up.Other", "data": {"x": 1}}
]');

-- the type moves to version 3: reading now needs the chain 1 -> 2 -> 3;
-- until it is defined, events are read at the version their chain reaches
SELECT ocx.define_event_type('up.Registered', 3);
SELECT schema_version, data FROM ocx.read_stream('upcust-1', 1, 1);

-- chain errors at definition time
SELECT ocx.define_upcaster('up.Registered', 2, spec => '{"op": "remove", "path": "legacy"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 3, spec => '{"op": "remove", "path": "legacy"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 0, spec => '{"op": "remove", "path": "legacy"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Nope', 1, spec => '{"op": "remove", "path": "legacy"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 1, spec => '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 1, spec => '[{"op": "explode"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 1, spec => '[{"op": "rename", "from": "a"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 1, spec => '[{"op": "cast", "path": "a", "to": "date"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 1, spec => '[{"op": "remove", "path": "a", "to": "b"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 1, spec => '[{"op": "default", "path": "a"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.Registered', 1, 'ocx.category(text)'::regprocedure);
\echo :LAST_ERROR_SQLSTATE

-- v1 -> v2: declarative steps
SELECT ocx.define_upcaster('up.Registered', 1, spec => '[
  {"op": "rename", "from": "name", "to": "full_name"},
  {"op": "cast", "path": "age", "to": "integer"},
  {"op": "cast", "path": "vip", "to": "boolean"},
  {"op": "default", "path": "country", "value": "NO"},
  {"op": "remove", "path": "legacy"},
  {"op": "move", "from": "addr.city", "to": "address.city"},
  {"op": "remove", "path": "addr"}
]');
SELECT schema_version, data FROM ocx.read_stream('upcust-1', 1, 1);
-- v2 -> v3: a function
CREATE FUNCTION public.up_v2_to_v3(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    RETURN d || pg_catalog.jsonb_build_object('display', (d->>'full_name') || ' (' || (d->>'country') || ')');
SELECT ocx.define_upcaster('up.Registered', 2, 'public.up_v2_to_v3(jsonb)'::regprocedure);
SELECT type, from_schema_version, transform, spec IS NOT NULL AS declarative
  FROM ocx.upcasters WHERE type = 'up.Registered' ORDER BY 2;

-- a v2 event written by a producer at version 2, and a current one
SELECT ocx.append('upcust-1', 2, '[
  {"type": "up.Registered", "schema_version": 2, "data": {"full_name": "Bo", "age": 7, "vip": false, "country": "SE"}},
  {"type": "up.Registered", "data": {"full_name": "Cy", "age": 9, "vip": true, "country": "DK", "display": "Cy!"}}
]');

-- every read path sees version 3
SELECT stream_version, type, schema_version, data FROM ocx.read_stream('upcust-1');
SELECT stream_version, schema_version, data FROM ocx.read_all(NULL, NULL) WHERE stream_id = 'upcust-1';
SELECT stream_version, schema_version, data FROM ocx.read_category('upcust', NULL, NULL);
SELECT (ocx.upcast(e)).data FROM ocx.read_stream('upcust-1', 1, 1) e;
-- a hand-made event with a schema_version below 1 (the log has none) is refused
SELECT ocx.upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                      -1, e.time, e.data, e.metadata, e.correlation_id, e.causation_id, e.tenant_id,
                      e.txid, e."cursor")::ocx.event)
  FROM ocx.read_stream('upcust-1', 1, 1) e;
\echo :LAST_ERROR_SQLSTATE

-- load: the apply function and the reducer see upcast events
CREATE FUNCTION public.up_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    RETURN CASE WHEN e.type = 'up.Registered'
                THEN state || pg_catalog.jsonb_build_object('names',
                        (state->'names') || pg_catalog.to_jsonb(e.data->>'display'),
                        'versions', (state->'versions') || pg_catalog.to_jsonb(e.schema_version))
                ELSE state END;
SELECT ocx.define_aggregate('up_customers', 'public.up_apply(jsonb, ocx.event)', '{"names": [], "versions": []}');
SELECT state FROM ocx.load('up_customers', 'upcust-1');
SELECT ocx.define_aggregate('up_customers_r', reducer => '{"up.Registered": [{"append": "names", "from": "display"}, {"add": "age", "from": "age"}]}');
SELECT state FROM ocx.load('up_customers_r', 'upcust-1');

-- the stored events are unchanged
SELECT stream_version, schema_version, data FROM ocx.events WHERE stream_id = 'upcust-1' ORDER BY 1;

-- a cast that cannot be done fails the read with OX121
SELECT ocx.append('upcust-2', 0, '{"type": "up.Registered", "schema_version": 1, "data": {"name": "Di", "age": "old"}}');
SELECT data FROM ocx.read_stream('upcust-2');
\echo :LAST_ERROR_SQLSTATE
-- a transform that returns null or a non-object fails with OX121
CREATE FUNCTION public.up_null(d jsonb) RETURNS jsonb LANGUAGE sql RETURN NULL::jsonb;
CREATE FUNCTION public.up_array(d jsonb) RETURNS jsonb LANGUAGE sql RETURN '[1]'::jsonb;
SELECT ocx.define_event_type('up.T', 2);
SELECT ocx.append('upt-1', 0, '{"type": "up.T", "schema_version": 1, "data": {}}');
SELECT ocx.define_upcaster('up.T', 1, 'public.up_null(jsonb)'::regprocedure);
SELECT data FROM ocx.read_stream('upt-1');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_upcaster('up.T', 1, 'public.up_array(jsonb)'::regprocedure);
SELECT data FROM ocx.read_stream('upt-1');
\echo :LAST_ERROR_SQLSTATE
-- changing an upcaster changes what aggregates see: snapshots are not reused
SELECT ocx.define_upcaster('up.T', 1, spec => '{"op": "default", "path": "n", "value": 1}');
SELECT ocx.define_aggregate('up_t', reducer => '{"up.T": [{"add": "n", "from": "n"}]}', snapshot_every => 1);
SELECT state FROM ocx.load('up_t', 'upt-1');
SELECT ocx.define_upcaster('up.T', 1, spec => '{"op": "default", "path": "n", "value": 5}');
SELECT state FROM ocx.load('up_t', 'upt-1');
SELECT snapshot_version, replayed FROM ocx.last_load();

-- an upcaster function changed by hand to one of another signature is never called
UPDATE ocx.upcasters SET spec = NULL, transform = 'ocx.category(text)'::regprocedure
 WHERE type = 'up.T' AND from_schema_version = 1;
SELECT data FROM ocx.read_stream('upt-1');
\echo :LAST_ERROR_SQLSTATE
-- an upcaster spec broken by hand fails only reads that need it
UPDATE ocx.upcasters SET transform = NULL, spec = '{"op": "explode"}'
 WHERE type = 'up.T' AND from_schema_version = 1;
SELECT data FROM ocx.read_stream('upt-1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.read_stream('upcust-1');
