-- pgTAP: the sagas' schema, API signatures, privileges, and a saga driven by
-- hand inside one transaction (the worker cannot see it before ROLLBACK).
BEGIN;
SELECT plan(38);

-- tables, view, indexes
SELECT has_table('ocx', 'saga_definitions', 'saga definitions table');
SELECT has_table('ocx', 'saga_instances', 'saga instances table');
SELECT has_table('ocx', 'saga_steps', 'saga step log');
SELECT has_table('ocx', 'saga_cursor', 'saga task checkpoint');
SELECT has_view('ocx', 'saga_status', 'saga status view');
SELECT col_is_pk('ocx', 'saga_instances', 'saga_id', 'sagas keyed by id');
SELECT col_is_pk('ocx', 'saga_definitions', 'name', 'definitions keyed by name');
SELECT has_index('ocx', 'saga_instances', 'saga_instances_deadline_idx', ARRAY['deadline'], 'deadlines are indexed');
SELECT ok((SELECT count(*) FROM ocx.saga_cursor) <= 1, 'saga_cursor has at most one row (made by the first round)');
SELECT columns_are('ocx', 'saga_status', ARRAY['saga_id', 'saga_name', 'state', 'current_step', 'step_name',
    'steps', 'command_id', 'command_status', 'age', 'deadline', 'error', 'started_at', 'updated_at',
    'finished_at', 'transitions'], 'saga_status columns');

-- the public API
SELECT has_function('ocx', 'define_saga', ARRAY['text', 'jsonb']);
SELECT has_function('ocx', 'drop_saga', ARRAY['text', 'boolean']);
SELECT has_function('ocx', 'start_saga', ARRAY['text', 'jsonb', 'uuid']);
SELECT has_function('ocx', 'abort_saga', ARRAY['uuid', 'text']);
SELECT function_returns('ocx', 'start_saga', ARRAY['text', 'jsonb', 'uuid'], 'uuid');
SELECT function_returns('ocx', 'abort_saga', ARRAY['uuid', 'text'], 'text');
SELECT volatility_is('ocx', 'start_saga', ARRAY['text', 'jsonb', 'uuid'], 'volatile');
SELECT volatility_is('ocx', '_saga_render', ARRAY['jsonb', 'jsonb'], 'immutable');

-- privileges: state and internals are not PUBLIC's
SELECT ok(NOT has_table_privilege('public', 'ocx.saga_instances', 'UPDATE'), 'PUBLIC cannot change sagas');
SELECT ok(NOT has_table_privilege('public', 'ocx.saga_steps', 'INSERT'), 'PUBLIC cannot write the step log');
SELECT ok(NOT has_table_privilege('public', 'ocx.saga_cursor', 'UPDATE'), 'PUBLIC cannot move the saga cursor');
SELECT ok(NOT has_function_privilege('public', 'ocx._saga_tick()', 'EXECUTE'), 'PUBLIC cannot run the saga task');
SELECT ok(NOT has_function_privilege('public', 'ocx._saga_run(integer, boolean)', 'EXECUTE'), 'PUBLIC cannot run a round');
SELECT ok(NOT has_function_privilege('public', 'ocx._saga_send(ocx.saga_instances, integer, boolean, uuid)', 'EXECUTE'),
          'PUBLIC cannot send saga commands directly');
SELECT ok((SELECT bool_and(c.oid = ANY (e.extconfig)) FROM pg_extension e,
           unnest(ARRAY['ocx.saga_definitions', 'ocx.saga_instances', 'ocx.saga_steps', 'ocx.saga_cursor']::regclass[]) c(oid)
           WHERE e.extname = 'ocx'), 'saga tables are dumped by pg_dump');

-- errors carry their SQLSTATE
SELECT throws_ok($$SELECT ocx.define_saga('pt_bad', '{"steps": [{"name": "a"}]}')$$, 'OX401');
SELECT throws_ok($$SELECT ocx.start_saga('pt_missing', '{}')$$, 'OX400');
SELECT throws_ok($$SELECT ocx.start_saga('pt_missing', '"x"')$$, 'OX403');
SELECT throws_ok($$SELECT ocx.abort_saga('00000000-0000-0000-0000-0000000000aa')$$, 'OX404');

-- a saga in this transaction: start sends step 1, a success event and a tick
-- send step 2, a failure event compensates step 1
SELECT lives_ok($$SELECT ocx.define_saga('pt_two', '{"steps": [
    {"name": "a", "command": "pt.A", "success": "pt.ADone", "compensation": {"command": "pt.UndoA", "data": {"x": "$.steps.a.x"}}},
    {"name": "b", "command": "pt.B", "success": "pt.BDone", "failure": "pt.BFailed"}]}')$$, 'define a two-step saga');
SELECT is(ocx.start_saga('pt_two', '{"k": 1}', '00000000-0000-0000-0000-0000000000b1'),
          '00000000-0000-0000-0000-0000000000b1'::uuid, 'start returns the given id');
SELECT is((SELECT type FROM ocx.commands WHERE correlation_id = '00000000-0000-0000-0000-0000000000b1'),
          'pt.A', 'step a''s command is sent in the starting transaction');
-- the events are not committed yet, so no round can see them in log order:
-- apply them with the function a round applies to each event
SELECT ok(ocx.append('pt-1', NULL, '{"type": "pt.ADone", "data": {"x": 7},
                     "correlation_id": "00000000-0000-0000-0000-0000000000b1"}') = 1, 'append step a''s success event');
SELECT ok(ocx._saga_on_event((SELECT e FROM ocx.read_stream('pt-1') e WHERE e.stream_version = 1)),
          'the success event advances the saga');
SELECT is((SELECT step_name || ':' || state FROM ocx.saga_status WHERE saga_id = '00000000-0000-0000-0000-0000000000b1'),
          'b:running', 'the saga is at step b');
SELECT ok(ocx.append('pt-1', NULL, '{"type": "pt.BFailed", "data": {},
                     "correlation_id": "00000000-0000-0000-0000-0000000000b1"}') = 2, 'append step b''s failure event');
SELECT ok(ocx._saga_on_event((SELECT e FROM ocx.read_stream('pt-1') e WHERE e.stream_version = 2)),
          'the failure event stops the saga');
SELECT is((SELECT type || ' ' || data::text FROM ocx.commands
            WHERE correlation_id = '00000000-0000-0000-0000-0000000000b1' ORDER BY seq DESC LIMIT 1),
          'pt.UndoA {"x": 7}', 'step a''s compensation is sent with data from a''s success event');

SELECT * FROM finish();
ROLLBACK;
