-- The contract of the definition and snapshot tables (aggregates, event
-- types, upcasters, snapshots, modules) and of the functions over them.
BEGIN;
SELECT plan(45);

SELECT has_table('ocx', 'aggregates', 'ocx.aggregates exists');
SELECT has_table('ocx', 'snapshots', 'ocx.snapshots exists');
SELECT has_table('ocx', 'event_types', 'ocx.event_types exists');
SELECT has_table('ocx', 'upcasters', 'ocx.upcasters exists');
SELECT has_table('ocx', 'modules', 'ocx.modules exists');

SELECT col_is_pk('ocx', 'aggregates', 'aggregate_type', 'aggregates keyed by aggregate_type');
SELECT col_is_pk('ocx', 'snapshots', ARRAY['aggregate_type', 'stream_id', 'version'],
                 'snapshots keyed by (aggregate_type, stream_id, version)');
SELECT col_is_pk('ocx', 'event_types', 'type', 'event_types keyed by type');
SELECT col_is_pk('ocx', 'upcasters', ARRAY['type', 'from_schema_version'],
                 'upcasters keyed by (type, from_schema_version)');
SELECT col_is_pk('ocx', 'modules', 'name', 'modules keyed by name');

SELECT col_type_is('ocx', 'aggregates', 'apply', 'regprocedure', 'apply is a regprocedure');
SELECT col_type_is('ocx', 'aggregates', 'reducer', 'jsonb', 'reducer is jsonb');
SELECT col_type_is('ocx', 'aggregates', 'initial_state', 'jsonb', 'initial_state is jsonb');
SELECT col_type_is('ocx', 'aggregates', 'snapshot_every', 'integer', 'snapshot_every is integer');
SELECT col_not_null('ocx', 'aggregates', 'definition_version', 'definition_version is not null');
SELECT col_type_is('ocx', 'snapshots', 'state', 'jsonb', 'snapshot state is jsonb');
SELECT col_type_is('ocx', 'snapshots', 'version', 'bigint', 'snapshot version is bigint');
SELECT col_not_null('ocx', 'snapshots', 'fingerprint', 'snapshot fingerprint is not null');
SELECT col_type_is('ocx', 'event_types', 'schema_version', 'integer', 'schema_version is integer');
SELECT col_type_is('ocx', 'upcasters', 'transform', 'regprocedure', 'transform is a regprocedure');
SELECT col_type_is('ocx', 'upcasters', 'spec', 'jsonb', 'spec is jsonb');

SELECT fk_ok('ocx', 'snapshots', 'aggregate_type', 'ocx', 'aggregates', 'aggregate_type',
             'snapshots belong to an aggregate');
SELECT fk_ok('ocx', 'upcasters', 'type', 'ocx', 'event_types', 'type',
             'upcasters belong to an event type');

SELECT has_trigger('ocx', 'event_types', 'event_types_changed', 'event_types invalidates the cache');
SELECT has_trigger('ocx', 'upcasters', 'upcasters_changed', 'upcasters invalidates the cache');
SELECT has_trigger('ocx', 'aggregates', 'aggregates_changed', 'aggregates invalidates the cache');

SELECT has_function('ocx', 'define_aggregate', ARRAY['text', 'regprocedure', 'jsonb', 'integer', 'jsonb']);
SELECT has_function('ocx', 'load', ARRAY['text', 'text', 'bigint', 'timestamp with time zone', 'boolean']);
SELECT has_function('ocx', 'snapshot', ARRAY['text', 'text']);
SELECT has_function('ocx', 'define_event_type', ARRAY['text', 'integer', 'jsonb']);
SELECT has_function('ocx', 'define_upcaster', ARRAY['text', 'integer', 'regprocedure']);
SELECT has_function('ocx', 'define_upcaster', ARRAY['text', 'integer', 'jsonb']);
SELECT has_function('ocx', 'define_module', ARRAY['text', 'jsonb']);
SELECT function_returns('ocx', 'snapshot', ARRAY['text', 'text'], 'bigint');
SELECT volatility_is('ocx', 'load', ARRAY['text', 'text', 'bigint', 'timestamp with time zone', 'boolean'], 'volatile',
                     'load is volatile (it may store a snapshot)');

-- nothing is granted to PUBLIC on the tables
SELECT ok(NOT EXISTS (
    SELECT FROM information_schema.role_table_grants
     WHERE grantee = 'PUBLIC' AND table_schema = 'ocx'
       AND table_name IN ('aggregates', 'snapshots', 'event_types', 'upcasters', 'modules')),
    'nothing on the definition tables is granted to PUBLIC');

-- constraints that keep the definitions sound
SELECT throws_ok($$INSERT INTO ocx.aggregates (aggregate_type, definer) VALUES ('tap_none', current_user::regrole)$$,
                 '23514', NULL, 'an aggregate has an apply or a reducer');
SELECT throws_ok($$INSERT INTO ocx.aggregates (aggregate_type, reducer, snapshot_every, definer)
                   VALUES ('tap_zero', '{"T": []}', 0, current_user::regrole)$$,
                 '23514', NULL, 'snapshot_every is positive');
SELECT throws_ok($$INSERT INTO ocx.event_types (type, schema_version) VALUES ('tap.T', 0)$$,
                 '23514', NULL, 'schema versions are positive');
SELECT throws_ok($$INSERT INTO ocx.snapshots (aggregate_type, stream_id, version, state, definition_version, fingerprint)
                   VALUES ('tap_missing', 's', 1, '{}', 1, 0)$$,
                 '23503', NULL, 'a snapshot needs its aggregate');

-- deleting an aggregate deletes its snapshots; deleting a type its upcasters
SELECT lives_ok($$SELECT ocx.define_aggregate('tap_agg', reducer => '{"tap.E": [{"add": "n", "value": 1}]}', snapshot_every => 1);
                  SELECT ocx.append('tapagg-1', 0, '{"type": "tap.E", "data": {}}');
                  SELECT ocx.load('tap_agg', 'tapagg-1')$$,
                'an aggregate is loaded with snapshot_every 1');
SELECT ok((SELECT count(*) FROM ocx.snapshots WHERE aggregate_type = 'tap_agg') > 0,
          'the aggregate has a snapshot');
SELECT lives_ok($$DELETE FROM ocx.aggregates WHERE aggregate_type = 'tap_agg'$$,
                'an aggregate with snapshots can be deleted');
SELECT is((SELECT count(*) FROM ocx.snapshots WHERE aggregate_type = 'tap_agg'), 0::bigint,
          'its snapshots went with it');
SELECT lives_ok($$SELECT ocx.define_event_type('tap.V', 2);
                  SELECT ocx.define_upcaster('tap.V', 1, spec => '{"op": "remove", "path": "x"}');
                  DELETE FROM ocx.event_types WHERE type = 'tap.V'$$,
                'an event type with upcasters can be deleted');

SELECT * FROM finish();
ROLLBACK;
