-- Issue 11, item 2: one definition must not break every append in the
-- database.  Every definition is bounded (docs/contracts.md#bounds): schema
-- versions at most 10000, definitions at most 1 MB of JSON text nested at
-- most 32 levels, refused with OX112; the per-backend definition cache is
-- sized by the upcasters that exist, never by the largest version given.
-- Runs in its own database: its events must not show in other tests.
\set SHOW_CONTEXT never
CREATE DATABASE ocx_faults_definitions;
\c ocx_faults_definitions
SET client_min_messages = warning;
CREATE EXTENSION ocx;
RESET client_min_messages;

-- the reproduction: this used to fail every later append with
-- XX000 invalid memory alloc request size 18446744056529682432
SELECT ocx.define_event_type('X', 2147483647);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('fd-1', NULL, 'Y', '{}');
SELECT ocx.append_event('fd-1', NULL, 'X', '{}');
-- this one made each appending backend's cache grow to 458 MB
SELECT ocx.define_event_type('W', 60000000);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.event_types;

-- the bound itself: 10000 is allowed, 10001 is not
SELECT ocx.define_event_type('V', 10000);
SELECT ocx.define_event_type('V', 10001);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('fd-2', NULL, 'V', '{}');
SELECT schema_version FROM ocx.events WHERE stream_id = 'fd-2';

-- rows written before the bound existed (or by hand) still cost nothing:
-- the cache is sized by the upcasters that exist
INSERT INTO ocx.event_types (type, schema_version) VALUES ('X', 2147483647), ('W', 60000000);
SELECT ocx.append_event('fd-3', NULL, 'W', '{}');
SELECT ocx.append_event('fd-3', NULL, 'X', '{}');
SELECT ocx.append_event('fd-3', NULL, 'Y', '{}');
SELECT type, schema_version FROM ocx.read_stream('fd-3') ORDER BY stream_version;
SELECT sum(total_bytes) < 1024 * 1024 AS cache_under_1mb
  FROM pg_backend_memory_contexts WHERE name = 'ocx definition cache';
SELECT sum(total_bytes) < 64 * 1024 * 1024 AS backend_under_64mb
  FROM pg_backend_memory_contexts;
-- an upcaster written by hand far beyond the bound is ignored, not allocated
INSERT INTO ocx.upcasters (type, from_schema_version, spec, definer)
VALUES ('W', 50000000, '{"op": "remove", "path": "a"}', 'postgres');
SELECT ocx.append_event('fd-3', NULL, 'W', '{"a": 1}');
SELECT data FROM ocx.read_stream('fd-3') WHERE stream_version = 4;
SELECT sum(total_bytes) < 1024 * 1024 AS cache_under_1mb
  FROM pg_backend_memory_contexts WHERE name = 'ocx definition cache';

-- lowering a version (docs/contracts.md#lowering-a-version): the API only
-- moves forward; an operator edits the table and drops the upcasters above
SELECT ocx.define_event_type('X', 3);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
DELETE FROM ocx.upcasters WHERE type = 'W' AND from_schema_version >= 3;
UPDATE ocx.event_types SET schema_version = 3 WHERE type IN ('X', 'W');
COMMIT;
SELECT ocx.append_event('fd-4', NULL, 'X', '{}');
SELECT ocx.append_event('fd-4', NULL, 'W', '{}');
SELECT type, schema_version FROM ocx.read_stream('fd-4') ORDER BY stream_version;
SELECT ocx.define_event_type('X', 4);
SELECT type, schema_version FROM ocx.event_types WHERE type IN ('X', 'W') ORDER BY type;

-- nesting: a 10,000-deep schema is refused with OX112, so is 33 levels;
-- 32 levels are accepted
SELECT ocx.define_event_type('D', 1, (repeat('{"items":', 10000) || '{}' || repeat('}', 10000))::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('D', 1, (repeat('{"items":', 32) || '{}' || repeat('}', 32))::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('D', 1, (repeat('{"items":', 31) || '{}' || repeat('}', 31))::jsonb);
-- size: a schema over 1 MB of JSON text
SELECT ocx.define_event_type('E', 1, jsonb_build_object('description', repeat('x', 1024 * 1024)));
\echo :LAST_ERROR_SQLSTATE
-- the same bounds hold for upcaster specs and reducer rules
SELECT ocx.define_event_type('U', 2);
SELECT ocx.define_upcaster('U', 1, spec => (repeat('[', 40) || repeat(']', 40))::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('fd_agg', reducer => jsonb_build_object('U',
    (repeat('[', 40) || repeat(']', 40))::jsonb));
\echo :LAST_ERROR_SQLSTATE
-- a deep schema written by hand fails only the appends of its type
INSERT INTO ocx.event_types (type, schema_version, schema)
VALUES ('H', 1, (repeat('{"items":', 100) || '{}' || repeat('}', 100))::jsonb);
SELECT ocx.append_event('fd-5', NULL, 'H', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('fd-5', NULL, 'Y', '{}');

\c contrib_regression
DROP DATABASE ocx_faults_definitions WITH (FORCE);
