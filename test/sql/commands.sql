-- Commands: handlers run by the worker's task, client claims, retries with
-- backoff, dead letters, correlation and causation, status and history.
\set SHOW_CONTEXT never

CREATE FUNCTION cmdt_place(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    -- the worker finishes the command with its claim token; the handler never sees it
    IF c.claim_token IS NOT NULL THEN
        RAISE EXCEPTION 'an in-server handler got the claim token';
    END IF;
    IF (c.data->>'fail')::boolean THEN
        PERFORM ocx.append('cmdt_order-' || (c.data->>'id'), NULL, '{"type": "Doomed", "data": {}}');
        RAISE EXCEPTION 'cannot place order %', c.data->>'id';
    END IF;
    PERFORM ocx.append('cmdt_order-' || (c.data->>'id'), NULL,
                       '[{"type": "Placed", "data": {}}, {"type": "Priced", "data": {}}]');
    RETURN jsonb_build_object('attempt', c.attempt, 'role', current_user);
END $$;
-- The worker's command task.  The ocx worker runs the same task when it is
-- loaded, so the test runs it itself and waits until no due command with a
-- server handler is left, whoever ran it.
CREATE FUNCTION cmdt_settle() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..500 LOOP
        PERFORM ocx._command_tick();
        IF NOT EXISTS (SELECT 1 FROM ocx.commands c
                         JOIN ocx.command_handlers h ON h.command_type = c.type AND h.handler IS NOT NULL
                        WHERE c.status IN ('pending', 'running') AND c.run_after <= clock_timestamp()) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END $$;
CREATE FUNCTION cmdt_void(c ocx.command) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION cmdt_wrong(x jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT x $$;

-- defining handlers, and the errors
SELECT ocx.define_command_handler('cmdt.Place', 'cmdt_place(ocx.command)',
                                  '{"max_attempts": 3, "base_delay": "1 hour", "max_delay": "2 hours"}');
-- define_X creates or replaces (0.2.0 raised OX321 here): the handler and
-- its policy are replaced, then defined back as they were
SELECT ocx.define_command_handler('cmdt.Place', 'cmdt_void(ocx.command)');
SELECT handler, max_attempts, base_delay FROM ocx.command_handlers WHERE command_type = 'cmdt.Place';
SELECT ocx.define_command_handler('cmdt.Place', 'cmdt_place(ocx.command)',
                                  '{"max_attempts": 3, "base_delay": "1 hour", "max_delay": "2 hours"}');
SELECT ocx.define_command_handler('cmdt.Void', 'cmdt_void(ocx.command)', '{"max_attempts": 1}');
SELECT ocx.define_command_handler('cmdt.Wrong', 'cmdt_wrong(jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler(NULL, 'cmdt_void(ocx.command)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('', 'cmdt_void(ocx.command)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('cmdt.Bad', 'cmdt_void(ocx.command)', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('cmdt.Bad', 'cmdt_void(ocx.command)', '{"attempts": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('cmdt.Bad', 'cmdt_void(ocx.command)', '{"base_delay": "soon"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('cmdt.Bad', 'cmdt_void(ocx.command)', '{"max_attempts": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('cmdt.Bad', 'cmdt_void(ocx.command)', '{"base_delay": "1 minute", "max_delay": "1 second"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_command_handler('cmdt.Bad');
\echo :LAST_ERROR_SQLSTATE
SELECT command_type, handler, max_attempts, base_delay, max_delay
  FROM ocx.command_handlers WHERE command_type LIKE 'cmdt.%' ORDER BY 1;

-- sending, and the errors
SELECT ocx.send_command(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('cmdt.Place', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('cmdt.Place', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('cmdt.Place', '{}', metadata => '"x"');
\echo :LAST_ERROR_SQLSTATE
-- given ids make a retry idempotent; a different command under the same id is refused
SELECT ocx.send_command('cmdt.Place', '{"id": 1}', command_id => 'c0000000-0000-4000-8000-000000000001');
SELECT ocx.send_command('cmdt.Place', '{"id": 1}', command_id => 'c0000000-0000-4000-8000-000000000001');
SELECT ocx.send_command('cmdt.Place', '{"id": 99}', command_id => 'c0000000-0000-4000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS one_command FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-000000000001';
-- correlation: given, from the setting, or the command's own id
SELECT ocx.send_command('cmdt.Place', '{"id": 2}', correlation_id => 'c0000000-0000-4000-8000-0000000000aa',
                        command_id => 'c0000000-0000-4000-8000-000000000002');
BEGIN;
SET LOCAL ocx.correlation_id = 'c0000000-0000-4000-8000-0000000000bb';
SET LOCAL ocx.causation_id = 'c0000000-0000-4000-8000-0000000000cc';
SELECT ocx.send_command('cmdt.Place', '{"id": 3, "fail": true}', command_id => 'c0000000-0000-4000-8000-000000000003');
COMMIT;
SELECT command_id, correlation_id, causation_id
  FROM ocx.commands WHERE type = 'cmdt.Place' ORDER BY seq;

-- the worker's task runs the handlers
SELECT cmdt_settle() AS settled;
SELECT command_id, status, attempts, result, last_error, run_after > now() + '50 minutes' AS backoff
  FROM ocx.command_status WHERE type = 'cmdt.Place' ORDER BY created_at, command_id;
-- what a handler appends carries the command's correlation id and the command as cause
SELECT stream_id, type, correlation_id, causation_id
  FROM ocx.events WHERE stream_id LIKE 'cmdt_order-%' ORDER BY stream_id, stream_version;
-- the failed attempt's writes were rolled back, the settings are back
SELECT count(*) AS doomed FROM ocx.events WHERE type = 'Doomed';
SELECT current_setting('ocx.correlation_id') = '' AS corr_reset,
       current_setting('ocx.causation_id') = '' AS cause_reset;
-- not due yet: nothing runs
SELECT cmdt_settle() AS settled;
SELECT status, attempts FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-000000000003';
-- due: the second and third attempt fail, then the command is a dead letter
UPDATE ocx.commands SET run_after = now() WHERE command_id = 'c0000000-0000-4000-8000-000000000003';
SELECT cmdt_settle() AS settled;
UPDATE ocx.commands SET run_after = now() WHERE command_id = 'c0000000-0000-4000-8000-000000000003';
SELECT cmdt_settle() AS settled;
SELECT status, attempts, last_error, finished_at IS NOT NULL AS finished,
       jsonb_path_query_array(history, '$[*].event') AS history
  FROM ocx.command_status WHERE command_id = 'c0000000-0000-4000-8000-000000000003';
-- a dead letter can be sent again (here after fixing its data)
UPDATE ocx.commands SET data = '{"id": 3}' WHERE command_id = 'c0000000-0000-4000-8000-000000000003';
SELECT ocx.retry_command('c0000000-0000-4000-8000-000000000003');
SELECT ocx.retry_command('c0000000-0000-4000-8000-000000000003');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.retry_command('c0000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
SELECT cmdt_settle() AS settled;
SELECT status, attempts, result FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-000000000003';
-- a void handler, run as the role recorded as its definer (a member of ocx_admin)
CREATE ROLE cmdt_role IN ROLE ocx_admin;
CREATE TABLE cmdt_private (n int);
CREATE FUNCTION cmdt_private_write(c ocx.command) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.cmdt_private VALUES (1) $$;
UPDATE ocx.command_handlers SET handler = 'cmdt_private_write(ocx.command)', handler_role = 'cmdt_role'
 WHERE command_type = 'cmdt.Void';
SELECT ocx.send_command('cmdt.Void', '{"id": 5}', command_id => 'c0000000-0000-4000-8000-000000000005');
GRANT USAGE ON SCHEMA ocx TO cmdt_role;
SELECT cmdt_settle() AS settled;
SELECT status, last_error LIKE '42501: permission denied%' AS denied_as_role
  FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-000000000005';
UPDATE ocx.command_handlers SET handler = 'cmdt_void(ocx.command)', handler_role = 'cmdt_role'
 WHERE command_type = 'cmdt.Void';
SELECT ocx.send_command('cmdt.Void', '{}', command_id => 'c0000000-0000-4000-8000-000000000006');
SELECT cmdt_settle() AS settled;
SELECT status, result FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-000000000006';
REVOKE USAGE ON SCHEMA ocx FROM cmdt_role;
-- a handler whose defining role is gone is never run
CREATE ROLE cmdt_gone;
UPDATE ocx.command_handlers SET handler_role = 'cmdt_gone' WHERE command_type = 'cmdt.Void';
DROP ROLE cmdt_gone;
DROP ROLE cmdt_role;
SELECT ocx.send_command('cmdt.Void', '{}', command_id => 'c0000000-0000-4000-8000-000000000007');
SELECT cmdt_settle() AS settled;
SELECT status, last_error LIKE 'the role (oid %) that defined the handler no longer exists' AS role_gone
  FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-000000000007';

-- clients claim commands of types without a server handler; a client keeps
-- the claim_token claim_commands returns, this test reads the stored one
CREATE FUNCTION pg_temp.tok(id uuid) RETURNS uuid LANGUAGE sql
    RETURN (SELECT c.claim_token FROM ocx.commands c WHERE c.command_id = id);
-- waits (polls, 10 s deadline) until a command's claim has expired: the next
-- statement's now() is past claimed_until
CREATE PROCEDURE pg_temp.wait_claim_expired(id uuid) LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
    WHILE clock_timestamp() <= (SELECT c.claimed_until FROM ocx.commands c WHERE c.command_id = id) LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'claim on % did not expire within 10 s', id;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
SELECT ocx.send_command('cmdt.Email', jsonb_build_object('n', i),
                        command_id => ('c0000000-0000-4000-8000-00000000010' || i)::uuid)
  FROM generate_series(1, 3) i;
SELECT * FROM ocx.claim_commands(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.claim_commands('{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.claim_commands(ARRAY['cmdt.Email'], 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.claim_commands(ARRAY['cmdt.Email'], 1, '0 seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.claim_commands(ARRAY['cmdt.Email', 'cmdt.Place']);
\echo :LAST_ERROR_SQLSTATE
SELECT command_id, type, data, attempt FROM ocx.claim_commands(ARRAY['cmdt.Email'], 2, claimer => 'w1');
SELECT command_id, type, data, attempt FROM ocx.claim_commands(ARRAY['cmdt.Email'], 2, claimer => 'w2');
SELECT count(*) AS none_left FROM ocx.claim_commands(ARRAY['cmdt.Email'], 2);
SELECT ocx.complete_command('c0000000-0000-4000-8000-000000000101', '{"sent": true}', pg_temp.tok('c0000000-0000-4000-8000-000000000101'));
SELECT ocx.complete_command('c0000000-0000-4000-8000-000000000101', NULL, pg_temp.tok('c0000000-0000-4000-8000-000000000101'));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.complete_command('c0000000-0000-4000-8000-0000000001ff');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.complete_command(NULL);
\echo :LAST_ERROR_SQLSTATE
-- a failure is retried after the default backoff (1 s, doubling); failed and
-- claimed again in one transaction (one now()), "not yet" does not depend on speed
BEGIN;
SELECT ocx.fail_command('c0000000-0000-4000-8000-000000000102', 'smtp down', claim_token => pg_temp.tok('c0000000-0000-4000-8000-000000000102'));
SELECT count(*) AS not_yet FROM ocx.claim_commands(ARRAY['cmdt.Email']);
COMMIT;
SELECT status, attempts, last_error, run_after > now() AS backing_off
  FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-000000000102';
-- retry => false: straight to the dead letters
SELECT ocx.fail_command('c0000000-0000-4000-8000-000000000103', 'bad address', retry => false, claim_token => pg_temp.tok('c0000000-0000-4000-8000-000000000103'));
SELECT ocx.fail_command('c0000000-0000-4000-8000-000000000103', 'again', claim_token => pg_temp.tok('c0000000-0000-4000-8000-000000000103'));
\echo :LAST_ERROR_SQLSTATE
-- a crashed claimer's command comes back after the visibility timeout
SELECT ocx.send_command('cmdt.Email', '{"n": 4}', command_id => 'c0000000-0000-4000-8000-000000000104');
-- (claimed and claimed again in one transaction: one now(), so "still claimed"
-- does not depend on speed; then poll, with a deadline, until the claim expired)
BEGIN;
SELECT command_id, attempt FROM ocx.claim_commands(ARRAY['cmdt.Email'], 1, '100 milliseconds', 'crasher');
SELECT count(*) AS still_claimed FROM ocx.claim_commands(ARRAY['cmdt.Email']);
COMMIT;
CALL pg_temp.wait_claim_expired('c0000000-0000-4000-8000-000000000104');
SELECT command_id, attempt FROM ocx.claim_commands(ARRAY['cmdt.Email'], 1, '1 minute', 'rescuer');
-- the rescuer completes it; completing it again is refused
SELECT ocx.complete_command('c0000000-0000-4000-8000-000000000104', '{"by": "rescuer"}', pg_temp.tok('c0000000-0000-4000-8000-000000000104'));
SELECT ocx.complete_command('c0000000-0000-4000-8000-000000000104', NULL, pg_temp.tok('c0000000-0000-4000-8000-000000000104'));
\echo :LAST_ERROR_SQLSTATE
-- a client-handled type with a policy: expired claims past max_attempts are dead letters
SELECT ocx.define_command_handler('cmdt.Sms', NULL, '{"max_attempts": 1}');
SELECT ocx.send_command('cmdt.Sms', '{}', command_id => 'c0000000-0000-4000-8000-000000000201');
SELECT command_id, attempt FROM ocx.claim_commands(ARRAY['cmdt.Sms'], 1, '100 milliseconds');
CALL pg_temp.wait_claim_expired('c0000000-0000-4000-8000-000000000201');
SELECT count(*) AS gone FROM ocx.claim_commands(ARRAY['cmdt.Sms']);
SELECT command_id, status, attempts, max_attempts, handled_by, last_error,
       jsonb_path_query_array(history, '$[*].event') AS history
  FROM ocx.command_status WHERE type IN ('cmdt.Email', 'cmdt.Sms') ORDER BY command_id;

-- purging finished commands
SELECT ocx.purge_commands(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.purge_commands('1 hour') AS purged_nothing_recent;
UPDATE ocx.commands SET finished_at = finished_at - interval '2 hours' WHERE type LIKE 'cmdt.%';
SELECT ocx.purge_commands('1 hour') AS purged_succeeded;
SELECT status, count(*) FROM ocx.commands WHERE type LIKE 'cmdt.%' GROUP BY 1 ORDER BY 1;
SELECT ocx.purge_commands('1 hour', dead_letters => true) AS purged_dead;
SELECT count(*) AS history_left FROM ocx.command_history h
  WHERE NOT EXISTS (SELECT 1 FROM ocx.commands c WHERE c.command_id = h.command_id);

DROP FUNCTION cmdt_settle();
DROP FUNCTION cmdt_private_write(ocx.command);
DROP TABLE cmdt_private;

-- the internal functions are not for PUBLIC
SELECT has_function_privilege('public', 'ocx._command_tick()', 'execute') AS public_tick;

-- claim_commands names at most 1,000 types (a custom plan of a huge array
-- costs tens of MB of backend memory): OX322 before anything is planned
SELECT count(*) FROM ocx.claim_commands((SELECT array_agg('t' || g) FROM generate_series(1, 1001) g));
\echo :LAST_ERROR_SQLSTATE
