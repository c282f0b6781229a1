-- pgTAP: the bus's schema, API signatures, privileges and error codes.
BEGIN;
SELECT plan(54);

-- tables, views, types
SELECT has_table('ocx', 'bus_state', 'bus state table');
SELECT has_table('ocx', 'subscriptions', 'subscriptions table');
SELECT has_table('ocx', 'subscription_partitions', 'subscription partitions table');
SELECT has_table('ocx', 'subscription_consumers', 'subscription consumers table');
SELECT has_table('ocx', 'commands', 'commands table');
SELECT has_table('ocx', 'command_handlers', 'command handlers table');
SELECT has_table('ocx', 'command_history', 'command history table');
SELECT has_view('ocx', 'subscription_status', 'subscription status view');
SELECT has_view('ocx', 'command_status', 'command status view');
SELECT has_type('ocx', 'command', 'composite ocx.command');
SELECT col_is_pk('ocx', 'commands', 'command_id', 'commands keyed by command_id');
SELECT col_is_pk('ocx', 'command_handlers', 'command_type', 'one handler per command type');
SELECT has_index('ocx', 'commands', 'commands_log_order_idx', ARRAY['txid', 'seq'],
                 'commands are announced in (txid, seq) order');
SELECT is((SELECT count(*)::int FROM ocx.bus_state), 1, 'bus_state has its one row');

-- the public API
SELECT has_function('ocx', 'publish', ARRAY['text', 'jsonb']);
SELECT has_function('ocx', 'create_subscription', ARRAY['text', 'text[]', 'text[]', 'integer', 'ocx.cursor', 'interval', 'text']);
SELECT has_function('ocx', 'poll', ARRAY['text', 'integer', 'text']);
SELECT has_function('ocx', 'ack', ARRAY['text', 'ocx.cursor', 'text']);
SELECT has_function('ocx', 'drop_subscription', ARRAY['text', 'boolean']);
SELECT has_function('ocx', 'send_command', ARRAY['text', 'jsonb', 'uuid', 'uuid', 'uuid', 'jsonb', 'timestamp with time zone']);
SELECT has_function('ocx', 'define_command_handler', ARRAY['text', 'regprocedure', 'jsonb']);
SELECT has_function('ocx', 'claim_commands', ARRAY['text[]', 'integer', 'interval', 'text']);
SELECT has_function('ocx', 'complete_command', ARRAY['uuid', 'jsonb', 'uuid']);
SELECT has_function('ocx', 'fail_command', ARRAY['uuid', 'text', 'boolean', 'uuid']);
SELECT hasnt_function('ocx', 'complete_command', ARRAY['uuid', 'jsonb'], 'the unfenced 0.2.0 complete_command is gone');
SELECT hasnt_function('ocx', 'fail_command', ARRAY['uuid', 'text', 'boolean'], 'the unfenced 0.2.0 fail_command is gone');
SELECT function_returns('ocx', 'poll', ARRAY['text', 'integer', 'text'], 'setof ocx.event');
SELECT function_returns('ocx', 'send_command', ARRAY['text', 'jsonb', 'uuid', 'uuid', 'uuid', 'jsonb', 'timestamp with time zone'], 'uuid');
SELECT volatility_is('ocx', 'poll', ARRAY['text', 'integer', 'text'], 'volatile');

-- privileges: state tables and internal functions are not PUBLIC's
SELECT ok(NOT has_table_privilege('public', 'ocx.commands', 'SELECT'), 'PUBLIC cannot read commands');
SELECT ok(NOT has_table_privilege('public', 'ocx.subscription_partitions', 'UPDATE'), 'PUBLIC cannot move cursors');
SELECT ok(NOT has_table_privilege('public', 'ocx.bus_state', 'UPDATE'), 'PUBLIC cannot touch the bus state');
SELECT ok(NOT has_function_privilege('public', 'ocx._bus_tick()', 'EXECUTE'), 'PUBLIC cannot run the bus tick');
SELECT ok(NOT has_function_privilege('public', 'ocx._command_tick()', 'EXECUTE'), 'PUBLIC cannot run the command tick');
SELECT ok(NOT has_function_privilege('public',
          'ocx._claim_commands(text[], integer, interval, text)', 'EXECUTE'),
          'PUBLIC cannot claim server-handled commands');

-- the setting
SELECT is(current_setting('ocx.notify_mode'), 'worker', 'wake-ups come from the worker by default');

-- error codes
SELECT throws_ok($$SELECT ocx.publish('x', jsonb_build_object('k', repeat('x', 8000)))$$, 'OX310',
                 NULL, 'oversized publish payload is OX310');
SELECT throws_ok($$SELECT ocx.publish('ocx_events', '{}')$$, 'OX311', NULL, 'reserved channel is OX311');
SELECT throws_ok($$SELECT ocx.publish('x', NULL)$$, 'OX312', NULL, 'null payload is OX312');
SELECT throws_ok($$SELECT * FROM ocx.poll('tap_missing')$$, 'OX300', NULL, 'unknown subscription is OX300');
SELECT throws_ok($$SELECT ocx.create_subscription('tap_s', partitions => 0)$$, 'OX301', NULL, 'bad partitions is OX301');
SELECT lives_ok($$SELECT ocx.create_subscription('tap_s')$$, 'create a subscription');
SELECT throws_ok($$SELECT ocx.create_subscription('tap_s')$$, 'OX302', NULL, 'duplicate subscription is OX302');
SELECT throws_ok($$SELECT ocx.ack('tap_s', '1/1'::ocx.cursor, 'ghost')$$, 'OX303', NULL, 'ack without a partition is OX303');
SELECT throws_ok($$SELECT ocx.complete_command('00000000-0000-4000-8000-000000000000')$$, 'OX320', NULL,
                 'unknown command is OX320');
SELECT lives_ok($$SELECT ocx.define_command_handler('tap.Cmd', NULL)$$, 'define a client-handled command type');
SELECT lives_ok($$SELECT ocx.define_command_handler('tap.Cmd', NULL)$$, 'a second define replaces the handler (0.2.0: OX321)');
SELECT throws_ok($$SELECT ocx.send_command('tap.Cmd', '[]')$$, 'OX322', NULL, 'non-object command data is OX322');
SELECT throws_ok($$SELECT ocx.fail_command(ocx.send_command('tap.Cmd', '{}'), 'x', claim_token => gen_random_uuid())$$,
                 'OX324', NULL, 'failing an unclaimed command is OX324');
SELECT lives_ok($$SELECT ocx.send_command('tap.Cmd', '{}')$$, 'send a client-handled command');
SELECT throws_ok($$SELECT ocx.complete_command(c.command_id) FROM ocx.claim_commands(ARRAY['tap.Cmd']) c$$,
                 'OX324', NULL, 'completing without the claim token is OX324');
SELECT throws_ok($$SELECT ocx.retry_command(ocx.send_command('tap.Cmd', '{}'))$$, 'OX323', NULL,
                 'retrying a command that is not a dead letter is OX323');

-- The tenant policy is one the planner can estimate: with 20,000 pending
-- commands without a tenant, the claim's pick (run as ocx_owner, subject to
-- the policy) is estimated as an equality (0.5% of the rows without
-- statistics on the expression, 100 here) and takes the pending index
-- in order, not a sequential scan and a sort of the whole queue (the
-- IS NOT DISTINCT FROM form was estimated as 0 rows: 17 claims/s at 300,000).
INSERT INTO ocx.commands (command_id, type, data, correlation_id)
    SELECT u, 'tap.Many', '{}', u FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, 20000)) s;
ANALYZE ocx.commands;
CREATE FUNCTION public.tap_plan(q text) RETURNS json LANGUAGE plpgsql AS $f$
DECLARE j json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO j;
    RETURN j;
END $f$;
SET LOCAL ROLE ocx_owner;
SELECT cmp_ok((public.tap_plan($$SELECT * FROM ocx.commands c WHERE c.status = 'pending'
                                  AND c.type = 'tap.Many'$$) -> 0 -> 'Plan' ->> 'Plan Rows')::float8,
              '>', 10::float8, 'the tenant policy on ocx.commands is estimated like an equality (not as 0 rows)');
SELECT unalike(public.tap_plan($$SELECT c.command_id FROM ocx.commands c WHERE c.status = 'pending'
                                 AND c.type = 'tap.Many' AND c.run_after <= now()
                                 ORDER BY c.seq LIMIT 1 FOR UPDATE SKIP LOCKED$$)::text,
              '%"Node Type": "Sort"%', 'a one-command claim does not sort the queue');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
