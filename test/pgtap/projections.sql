-- pgTAP: the projection API's objects, defaults, state changes and errors.
BEGIN;
SELECT plan(47);

SELECT has_table('ocx', 'projections', 'ocx.projections exists');
SELECT has_table('ocx', 'dead_letters', 'ocx.dead_letters exists');
SELECT has_view('ocx', 'projection_status', 'ocx.projection_status exists');
SELECT has_function('ocx', 'define_projection',
    ARRAY['text', 'regprocedure', 'text[]', 'text[]', 'text', 'jsonb', 'regprocedure', 'integer', 'regclass[]'], 'define_projection signature');
SELECT has_table('ocx', 'projection_partitions', 'ocx.projection_partitions exists');
SELECT col_default_is('ocx', 'projections', 'partitions', '1', 'a projection has one partition unless asked');
SELECT is((SELECT proargnames[7:11] FROM pg_proc WHERE oid = 'ocx.worker_status'::regproc),
          ARRAY['role', 'worker', 'unit', 'unit_since', 'units_run'],
          'worker_status shows role, worker, unit, unit_since, units_run');
SELECT has_function('ocx', 'drop_projection', ARRAY['text', 'boolean'], 'drop_projection');
SELECT has_function('ocx', 'pause_projection', ARRAY['text'], 'pause_projection');
SELECT has_function('ocx', 'resume_projection', ARRAY['text'], 'resume_projection');
SELECT has_function('ocx', 'rebuild_projection', ARRAY['text', 'boolean'], 'rebuild_projection');
SELECT has_function('ocx', 'retry_dead_letter', ARRAY['bigint'], 'retry_dead_letter');
SELECT has_function('ocx', 'skip_dead_letter', ARRAY['bigint'], 'skip_dead_letter');
SELECT function_returns('ocx', 'retry_delay', ARRAY['jsonb', 'integer'], 'interval', 'retry_delay(policy, attempt) returns interval');
SELECT volatility_is('ocx', 'retry_delay', ARRAY['jsonb', 'integer'], 'immutable', 'retry_delay is immutable');
SELECT has_column('ocx', 'dead_letters', 'holds_stream', 'dead_letters.holds_stream');
SELECT function_returns('ocx', 'wait_for', ARRAY['text', 'ocx.cursor', 'interval'], 'boolean',
    'wait_for(projection, cursor, timeout) returns boolean');
SELECT volatility_is('ocx', 'wait_for', ARRAY['text', 'ocx.cursor', 'interval'], 'volatile',
    'wait_for is volatile');
SELECT volatility_is('ocx', 'define_projection',
    ARRAY['text', 'regprocedure', 'text[]', 'text[]', 'text', 'jsonb', 'regprocedure', 'integer', 'regclass[]'], 'volatile',
    'define_projection is volatile');
SELECT columns_are('ocx', 'projection_status', ARRAY[
    'name', 'mode', 'state', 'checkpoint', 'events_applied', 'lag_events', 'lag_seconds',
    'last_error', 'last_error_at', 'failing_attempts', 'retry_at', 'dead_letters',
    'rebuild_done', 'rebuild_total', 'rebuild_rate', 'rebuild_eta',
    'handler', 'types', 'categories', 'retry', 'owner', 'horizon_age', 'horizon_pid', 'shadow_checkpoint', 'partitions', 'lag'],
    'projection_status columns');
SELECT col_type_is('ocx', 'projection_status', 'horizon_age', 'interval', 'horizon_age is an interval');
SELECT col_type_is('ocx', 'projection_status', 'horizon_pid', 'integer', 'horizon_pid is an integer');
SELECT col_type_is('ocx', 'projection_status', 'lag', 'interval', 'lag is an interval (lag_seconds, a number, is deprecated)');

CREATE TABLE tap_model (pos bigint);
CREATE FUNCTION tap_h(e ocx.event) RETURNS void LANGUAGE sql AS $$ INSERT INTO tap_model VALUES (e.global_position) $$;
CREATE FUNCTION tap_reset() RETURNS void LANGUAGE sql AS $$ INSERT INTO tap_model VALUES (-1) $$;

SELECT lives_ok($$SELECT ocx.define_projection('tap', 'tap_h(ocx.event)', reset => 'tap_reset()')$$,
    'define an async projection');
SELECT results_eq($$SELECT mode, state, ocx.global_position(checkpoint), events_applied, dead_letters
                      FROM ocx.projection_status WHERE name = 'tap'$$,
    $$VALUES ('async'::text, 'running'::text, 0::bigint, 0::bigint, 0::bigint)$$,
    'a new async projection starts at the beginning of the log');
SELECT is((SELECT retry FROM ocx.projections WHERE name = 'tap'),
    '{"max_attempts": 3, "base_delay": "00:00:00.1", "max_delay": "00:00:10", "on_exhausted": "dead_letter", "on_failure": "skip"}'::jsonb,
    'the default retry policy');
SELECT lives_ok($$SELECT ocx.define_projection('tap', 'tap_h(ocx.event)', types => '{A}', retry => '{"max_attempts": 7}')$$,
    'redefine it');
SELECT results_eq($$SELECT types, (retry->>'max_attempts')::int, (retry->>'base_delay')::interval FROM ocx.projections WHERE name = 'tap'$$,
    $$VALUES ('{A}'::text[], 7, '100 milliseconds'::interval)$$, 'redefinition replaces the filter and merges the policy with defaults');
SELECT is((SELECT handler FROM ocx.projections WHERE name = 'tap'), 'public.tap_h(ocx.event)',
    'the handler is stored schema-qualified');

SELECT lives_ok($$SELECT ocx.pause_projection('tap')$$, 'pause');
SELECT is((SELECT state FROM ocx.projections WHERE name = 'tap'), 'paused', 'paused');
SELECT lives_ok($$SELECT ocx.resume_projection('tap')$$, 'resume');
SELECT is((SELECT state FROM ocx.projections WHERE name = 'tap'), 'running', 'running again');

SELECT lives_ok($$SELECT ocx.rebuild_projection('tap')$$, 'rebuild without a reset function');
SELECT is((SELECT state FROM ocx.projections WHERE name = 'tap'), 'rebuilding', 'rebuilding');
SELECT lives_ok($$SELECT ocx.define_projection('tap2', 'tap_h(ocx.event)', reset => 'tap_reset()')$$, 'another');
SELECT lives_ok($$SELECT ocx.rebuild_projection('tap2')$$, 'rebuild with a reset function');
SELECT is((SELECT count(*) FROM tap_model WHERE pos = -1), 1::bigint, 'the reset function ran');

INSERT INTO ocx.dead_letters (projection, global_position, txid, stream_id, event_id, type, attempts, error)
VALUES ('tap2', 1, '1', 's-1', gen_random_uuid(), 'A', 3, 'boom');
SELECT is((SELECT dead_letters FROM ocx.projection_status WHERE name = 'tap2'), 1::bigint, 'dead letters are counted');
SELECT lives_ok($$SELECT ocx.drop_projection('tap2')$$, 'drop');
SELECT is((SELECT count(*) FROM ocx.dead_letters WHERE projection = 'tap2'), 0::bigint, 'its dead letters went with it');

SELECT throws_ok($$SELECT ocx.define_projection('tap', 'tap_h(ocx.event)', mode => 'inline')$$,
    'OX201', NULL, 'a projection keeps its mode');
SELECT throws_ok($$SELECT ocx.drop_projection('nope')$$, 'OX200', 'projection "nope" does not exist',
    'unknown projection');
SELECT throws_ok($$SELECT ocx.retry_dead_letter(0)$$, 'OX220', NULL, 'unknown dead letter');
SELECT throws_ok($$SELECT ocx.skip_dead_letter(0)$$, 'OX220', NULL, 'skip: unknown dead letter');
SELECT throws_ok($$INSERT INTO ocx.dead_letters (projection, attempts, error, state) VALUES ('tap', 0, 'x', 'lost')$$,
    '23514', NULL, 'dead letter states are parked, held and resolved');
SELECT throws_ok($$SELECT ocx.define_projection('tap', 'tap_h(ocx.event)', retry => '{"max_attempts": 2, "attempts": 2}')$$,
    'OX201', NULL, 'the old and the new spelling of a key together');

SELECT * FROM finish();
ROLLBACK;
