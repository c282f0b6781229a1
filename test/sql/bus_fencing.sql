-- Claims and leases are fenced (issue 10, item 8).  A claimer whose
-- visibility timeout ran out, and a consumer whose lease ran out, can no
-- longer finish, dead-letter or acknowledge anything: they get an ocx
-- SQLSTATE and nothing changes.  Everything below the setup runs as a login
-- role that is only a member of ocx_writer, the way a client does.
\set SHOW_CONTEXT never

-- setup, as the administrator: the client role and the subscriptions
CREATE ROLE ocx_fence_client LOGIN IN ROLE ocx_writer;
SELECT ocx.define_subscription('fence_lease', categories => ARRAY['fencel'], lease => '1 second');
SELECT ocx.define_subscription('fence_group', categories => ARRAY['fenceg'], partitions => 2,
                               lease => '2 seconds');
-- one stream in each of fence_group's two partitions
SELECT min(x.s) FILTER (WHERE x.p = 0) AS g0, min(x.s) FILTER (WHERE x.p = 1) AS g1
  FROM (SELECT 'fenceg-' || i AS s, ocx.stream_partition('fenceg-' || i, 2) AS p
          FROM generate_series(1, 9) i) x \gset
SELECT :'g0' AS g0, :'g1' AS g1;

\c - ocx_fence_client
SELECT current_user, pg_has_role('ocx_writer', 'member') AS writer,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser;

-- 1. A claims with a 1 s visibility timeout; after 1.5 s B claims the same
-- command.  A's complete_command (with A's token) is refused and stores
-- nothing; B's succeeds and the history says B did it.
SELECT ocx.send_command('fence.Job', '{"n": 1}', command_id => 'f0000000-0000-4000-8000-000000000001');
SELECT claim_token AS a_token, attempt AS a_attempt
  FROM ocx.claim_commands(ARRAY['fence.Job'], 1, '1 second', 'A') \gset
SELECT pg_sleep(1.5);
SELECT claim_token AS b_token, attempt AS b_attempt
  FROM ocx.claim_commands(ARRAY['fence.Job'], 1, '1 minute', 'B') \gset
SELECT :a_attempt AS a_attempt, :b_attempt AS b_attempt, :'a_token' <> :'b_token' AS new_token;
SELECT ocx.complete_command('f0000000-0000-4000-8000-000000000001', '{"by": "A"}', :'a_token');
\echo :LAST_ERROR_SQLSTATE
SELECT status, claimed_by, result, jsonb_path_query_array(history, '$[*].event') AS events
  FROM ocx.command_status WHERE command_id = 'f0000000-0000-4000-8000-000000000001';
SELECT ocx.complete_command('f0000000-0000-4000-8000-000000000001', '{"by": "B"}', :'b_token');
SELECT status, claimed_by, result, jsonb_path_query_array(history, '$[*].event') AS events,
       jsonb_path_query_array(history, '$[*].actor') AS actors
  FROM ocx.command_status WHERE command_id = 'f0000000-0000-4000-8000-000000000001';
-- a finished claim cannot be finished again, by either claimer
SELECT ocx.complete_command('f0000000-0000-4000-8000-000000000001', '{"by": "A"}', :'a_token');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.complete_command('f0000000-0000-4000-8000-000000000001', '{"by": "B"}', :'b_token');
\echo :LAST_ERROR_SQLSTATE
SELECT result FROM ocx.command_status WHERE command_id = 'f0000000-0000-4000-8000-000000000001';

-- 2. the same race with fail_command: A cannot dead-letter B's live claim
SELECT ocx.send_command('fence.Job', '{"n": 2}', command_id => 'f0000000-0000-4000-8000-000000000002');
SELECT claim_token AS a_token FROM ocx.claim_commands(ARRAY['fence.Job'], 1, '1 second', 'A') \gset
SELECT pg_sleep(1.5);
SELECT claim_token AS b_token FROM ocx.claim_commands(ARRAY['fence.Job'], 1, '1 minute', 'B') \gset
SELECT ocx.fail_command('f0000000-0000-4000-8000-000000000002', 'A gave up', retry => false,
                        claim_token => :'a_token');
\echo :LAST_ERROR_SQLSTATE
SELECT status, claimed_by, last_error, jsonb_path_query_array(history, '$[*].event') AS events
  FROM ocx.command_status WHERE command_id = 'f0000000-0000-4000-8000-000000000002';
-- a call without a token (a 0.2.0 client) finishes nothing either
SELECT ocx.fail_command('f0000000-0000-4000-8000-000000000002', 'no token', false);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.complete_command('f0000000-0000-4000-8000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.fail_command('f0000000-0000-4000-8000-000000000002', 'B failed', claim_token => :'b_token');
SELECT status, claimed_by, last_error, jsonb_path_query_array(history, '$[*].event') AS events,
       jsonb_path_query_array(history, '$[*].actor') AS actors
  FROM ocx.command_status WHERE command_id = 'f0000000-0000-4000-8000-000000000002';

-- 3. a claim whose visibility timeout ran out is lost even before anyone
-- takes it over: the claimer gets OX324, the command stays running
SELECT ocx.send_command('fence.Job', '{"n": 3}', command_id => 'f0000000-0000-4000-8000-000000000003');
SELECT claim_token AS a_token FROM ocx.claim_commands(ARRAY['fence.Job'], 1, '1 second', 'A') \gset
SELECT pg_sleep(1.5);
SELECT ocx.complete_command('f0000000-0000-4000-8000-000000000003', '{"late": true}', :'a_token');
\echo :LAST_ERROR_SQLSTATE
SELECT status, result FROM ocx.command_status WHERE command_id = 'f0000000-0000-4000-8000-000000000003';

-- 4. leases: x polls (1 s lease) and is slow; after 1.5 s its ack is
-- refused with OX303 and acknowledges nothing; polling again redelivers
SELECT ocx.append('fencel-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
SELECT stream_version, "cursor" AS x_cursor FROM ocx.poll('fence_lease', 10, 'x') OFFSET 1 \gset
SELECT pg_sleep(1.5);
SELECT ocx.ack('fence_lease', :'x_cursor', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT owner, acked, delivered IS NOT NULL AS in_flight FROM ocx.subscription_status WHERE name = 'fence_lease';
SELECT stream_version FROM ocx.poll('fence_lease', 10, 'x');
SELECT ocx.ack('fence_lease', :'x_cursor', 'x');
SELECT acked::text = :'x_cursor' AS acked_all FROM ocx.subscription_status WHERE name = 'fence_lease';

-- 5. consumer groups: a polls alone and holds both partitions; c joins
-- (its share stays with a, which has events in flight); a stalls past its
-- 2 s lease and b takes a's expired partition of b's share.  a still holds
-- the other one, but its ack is refused as a whole and writes nothing.
SELECT ocx.append(:'g0', 0, '{"type": "G", "data": {}}'), ocx.append(:'g1', 0, '{"type": "G", "data": {}}');
WITH e AS (SELECT * FROM ocx.poll('fence_group', 10, 'a'))
SELECT count(*) AS a_got,
       (SELECT l."cursor" FROM e l ORDER BY l.txid DESC, l.global_position DESC LIMIT 1) AS a_cursor
  FROM e \gset
SELECT :a_got AS a_got;
SELECT pg_sleep(1.2);
SELECT count(*) AS c_got FROM ocx.poll('fence_group', 10, 'c');
SELECT pg_sleep(1.2);
SELECT stream_id FROM ocx.poll('fence_group', 10, 'b');
SELECT partition, owner, acked FROM ocx.subscription_status WHERE name = 'fence_group' ORDER BY partition;
SELECT ocx.ack('fence_group', :'a_cursor', 'a');
\echo :LAST_ERROR_SQLSTATE
SELECT partition, owner, acked, lease_until < now() AS a_lease_expired
  FROM ocx.subscription_status WHERE name = 'fence_group' ORDER BY partition;
-- the partition a still held goes to c on its next poll, with its event
SELECT stream_id FROM ocx.poll('fence_group', 10, 'c');
SELECT partition, owner FROM ocx.subscription_status WHERE name = 'fence_group' ORDER BY partition;

-- cleanup, as the administrator
\c - postgres
SELECT ocx.drop_subscription('fence_lease'), ocx.drop_subscription('fence_group');
DROP ROLE ocx_fence_client;
