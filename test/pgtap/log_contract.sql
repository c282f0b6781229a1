-- pgTAP: the event log's schema, privileges, immutability and error-code contract.
BEGIN;
SELECT plan(62);

-- schema
SELECT has_schema('ocx');
SELECT has_table('ocx', 'events', 'the log exists');
SELECT has_table('ocx', 'streams', 'the stream table exists');
SELECT columns_are('ocx', 'events', ARRAY['global_position', 'stream_id', 'stream_version',
    'event_id', 'source', 'type', 'schema_version', 'time', 'data', 'metadata',
    'correlation_id', 'causation_id', 'tenant_id', 'txid', 'tags', 'hash']);
SELECT col_type_is('ocx', 'events', 'hash', 'bytea', 'col_type_is ocx, events, hash, bytea (the chain, docs/integrity.md)');
SELECT col_type_is('ocx', 'events', 'global_position', 'bigint', 'col_type_is ocx, events, global_position, bigint');
SELECT col_type_is('ocx', 'events', 'stream_version', 'bigint', 'col_type_is ocx, events, stream_version, bigint');
SELECT col_type_is('ocx', 'events', 'event_id', 'uuid', 'col_type_is ocx, events, event_id, uuid');
SELECT col_type_is('ocx', 'events', 'time', 'timestamp with time zone', 'col_type_is ocx, events, time, timestamp with time zone');
SELECT col_type_is('ocx', 'events', 'data', 'jsonb', 'col_type_is ocx, events, data, jsonb');
SELECT col_type_is('ocx', 'events', 'metadata', 'jsonb', 'col_type_is ocx, events, metadata, jsonb');
SELECT col_type_is('ocx', 'events', 'txid', 'xid8', 'col_type_is ocx, events, txid, xid8');
SELECT col_not_null('ocx', 'events', 'txid', 'col_not_null ocx, events, txid');
SELECT col_not_null('ocx', 'events', 'data', 'col_not_null ocx, events, data');
SELECT col_is_pk('ocx', 'events', 'global_position', 'col_is_pk ocx, events, global_position');
SELECT col_is_unique('ocx', 'events', ARRAY['stream_id', 'stream_version']);
SELECT col_is_unique('ocx', 'events', ARRAY['source', 'event_id']);
SELECT has_index('ocx', 'events', 'events_log_order_idx', ARRAY['txid', 'global_position'],
                 'the log-order index is (txid, global_position)');
SELECT col_is_pk('ocx', 'streams', 'stream_id', 'col_is_pk ocx, streams, stream_id');
SELECT col_type_is('ocx', 'streams', 'version', 'bigint', 'col_type_is ocx, streams, version, bigint');
SELECT has_column('ocx', 'streams', 'deleted', 'has_column ocx, streams, deleted');
SELECT has_column('ocx', 'streams', 'category', 'has_column ocx, streams, category');
SELECT has_type('ocx', 'event', 'composite ocx.event');
SELECT has_type('ocx', 'cursor', 'composite ocx.cursor');

-- the public functions, with their signatures and volatility
SELECT function_returns('ocx', 'append', ARRAY['text', 'bigint', 'jsonb'], 'bigint');
SELECT function_returns('ocx', 'append_event', ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'], 'bigint');
SELECT function_returns('ocx', 'append_cloudevents', ARRAY['text', 'bigint', 'jsonb'], 'bigint');
SELECT function_returns('ocx', 'to_cloudevent', ARRAY['ocx.event'], 'jsonb');
SELECT function_returns('ocx', 'read_stream', ARRAY['text', 'bigint', 'integer', 'text', 'text[]', 'boolean'], 'setof ocx.event');
SELECT function_returns('ocx', 'read_all', ARRAY['ocx.cursor', 'integer', 'text[]', 'text[]', 'boolean', 'timestamp with time zone', 'boolean'], 'setof ocx.event');
SELECT function_returns('ocx', 'read_category', ARRAY['text', 'ocx.cursor', 'integer', 'boolean', 'timestamp with time zone', 'boolean'], 'setof ocx.event');
SELECT function_returns('ocx', 'stream_version', ARRAY['text'], 'bigint');
SELECT function_returns('ocx', 'last_append_cursor', ARRAY[]::text[], 'ocx.cursor');
SELECT volatility_is('ocx', 'last_append_cursor', ARRAY[]::text[], 'volatile');
SELECT volatility_is('ocx', 'append', ARRAY['text', 'bigint', 'jsonb'], 'volatile');
SELECT volatility_is('ocx', 'read_stream', ARRAY['text', 'bigint', 'integer', 'text', 'text[]', 'boolean'], 'stable');
SELECT volatility_is('ocx', 'read_all', ARRAY['ocx.cursor', 'integer', 'text[]', 'text[]', 'boolean', 'timestamp with time zone', 'boolean'], 'stable');
SELECT function_returns('ocx', 'horizon_holder', ARRAY[]::text[], 'record');
SELECT volatility_is('ocx', 'horizon_holder', ARRAY[]::text[], 'volatile');
SELECT is(pg_catalog.pg_get_function_arguments('ocx.horizon_holder()'::regprocedure),
          'OUT pid integer, OUT xact_age interval, OUT backend_xid xid, OUT datname name, OUT prepared_gid text',
          'horizon_holder: the holder''s pid, age, xid, database and prepared gid');
SELECT is((SELECT count(*)::int FROM pg_proc p
            WHERE p.pronamespace = 'ocx'::regnamespace
              AND pg_catalog.obj_description(p.oid, 'pg_proc') IS NULL),
          0, 'every ocx function has a comment');
SELECT is((SELECT count(*)::int FROM pg_proc p
            WHERE p.pronamespace = 'ocx'::regnamespace AND p.prosecdef
              AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)),
          0, 'every SECURITY DEFINER function pins search_path');

-- pg_dump keeps the data
SELECT ok((SELECT extconfig @> ARRAY['ocx.events'::regclass::oid, 'ocx.streams'::regclass::oid,
                                     'ocx.events_global_position_seq'::regclass::oid]
             FROM pg_extension WHERE extname = 'ocx'),
          'events, streams and the position sequence are extension config tables');

-- privileges: nothing for PUBLIC on the log
SELECT table_privs_are('ocx', 'events', 'public', ARRAY[]::text[], 'PUBLIC has no rights on ocx.events');
SELECT table_privs_are('ocx', 'streams', 'public', ARRAY[]::text[], 'PUBLIC has no rights on ocx.streams');

-- immutability: triggers that fire ALWAYS
SELECT has_trigger('ocx', 'events', 'events_immutable_row', 'has_trigger ocx, events, events_immutable_row');
SELECT has_trigger('ocx', 'events', 'events_immutable_truncate', 'has_trigger ocx, events, events_immutable_truncate');
SELECT is((SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = 'ocx.events'::regclass AND tgname = 'events_immutable_row'), 'A',
          'the row trigger fires ALWAYS (also under session_replication_role = replica)');
SELECT is((SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = 'ocx.events'::regclass AND tgname = 'events_immutable_truncate'), 'A',
          'the truncate trigger fires ALWAYS');

SELECT lives_ok($$SELECT ocx.append('tap-1', 0, '{"type": "A", "data": {"v": 1}}')$$, 'append works');
SELECT throws_ok($$UPDATE ocx.events SET type = 'B' WHERE stream_id = 'tap-1'$$,
                 'OX009', 'the event log is append-only', 'the owner cannot UPDATE');
SELECT throws_ok($$DELETE FROM ocx.events WHERE stream_id = 'tap-1'$$,
                 'OX009', 'the event log is append-only', 'the owner cannot DELETE');
SELECT throws_ok($$TRUNCATE ocx.events$$, 'OX009', 'the event log is append-only', 'the owner cannot TRUNCATE');

-- even a role granted every privilege cannot change history
CREATE ROLE ocx_tap_granted;
GRANT USAGE ON SCHEMA ocx TO ocx_tap_granted;
GRANT ALL ON ocx.events TO ocx_tap_granted;
SET LOCAL ROLE ocx_tap_granted;
SELECT throws_ok($$DELETE FROM ocx.events$$, 'OX009', NULL, 'a role with ALL on the table cannot DELETE');
SELECT throws_ok($$TRUNCATE ocx.events$$, 'OX009', NULL, 'a role with ALL on the table cannot TRUNCATE');
RESET ROLE;

-- error codes
SELECT throws_ok($$SELECT ocx.append('tap-1', 0, '{"type": "A"}')$$, 'OX001', NULL, 'conflict is OX001');
SELECT throws_ok($$SELECT ocx.append('tap-1', -2, '{"type": "A"}')$$, 'OX007', NULL, 'negative expected version other than ocx.stream_exists() is OX007');
SELECT throws_ok($$SELECT ocx.append(NULL, 0, '{"type": "A"}')$$, 'OX003', NULL, 'NULL stream id is OX003');
SELECT throws_ok($$SELECT ocx.append('tap-2', 0, '[]')$$, 'OX008', NULL, 'empty batch is OX008');
SELECT throws_ok($$SELECT ocx.append('tap-2', 0, '{"data": {}}')$$, 'OX002', NULL, 'missing type is OX002');
SELECT throws_ok($$SELECT ocx.append_cloudevents('tap-2', 0, '{"id": "x"}')$$, 'OX006', NULL, 'invalid CloudEvent is OX006');
SELECT is(ocx.stream_version('tap-2'), 0::bigint, 'failed appends wrote nothing');

SELECT * FROM finish();
ROLLBACK;
