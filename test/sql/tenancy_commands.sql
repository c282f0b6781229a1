-- Commands keep tenants apart (issue 10, item 6): a command belongs to the
-- tenant that sent it.  Another tenant's reader sees nothing of it in
-- ocx.commands, ocx.command_history or ocx.command_status; another tenant's
-- writer can neither claim nor finish it, nor reuse its id.  A saga's step
-- commands (whose data is the saga's input) carry the saga's tenant, also
-- those the worker sends; a server-side handler runs with its command's
-- tenant, so the event it appends lands there.  Run as login roles that are
-- plain members of the ocx roles (superusers bypass row-level security).
\set SHOW_CONTEXT never

CREATE ROLE ocx_regress_tc_admin LOGIN IN ROLE ocx_admin;
CREATE ROLE ocx_regress_tc_acme LOGIN IN ROLE ocx_writer;
CREATE ROLE ocx_regress_tc_globex LOGIN IN ROLE ocx_writer;
CREATE ROLE ocx_regress_tc_globex_reader LOGIN IN ROLE ocx_reader;

-- the saga task and the command task, run here as well as by the worker,
-- until the saga is at the wanted step / the command is finished, with a
-- deadline (as a superuser, without a tenant)
CREATE FUNCTION tc_settle_saga(id uuid, want integer) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s ocx.saga_instances;
BEGIN
    FOR n IN 1..400 LOOP
        PERFORM ocx._saga_tick();
        SELECT * INTO s FROM ocx.saga_instances x WHERE x.saga_id = id;
        IF s.current_step = want THEN
            RETURN s.state || ' at step ' || s.current_step;
        END IF;
        PERFORM pg_sleep(0.025);
    END LOOP;
    RETURN 'timed out in ' || s.state || ' at step ' || s.current_step;
END $$;
CREATE FUNCTION tc_settle_command(id uuid) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    FOR n IN 1..400 LOOP
        PERFORM ocx._command_tick();
        SELECT c.status INTO st FROM ocx.commands c WHERE c.command_id = id;
        IF st IN ('succeeded', 'dead_letter') THEN
            RETURN st;
        END IF;
        PERFORM pg_sleep(0.025);
    END LOOP;
    RETURN 'timed out: ' || st;
END $$;

-- acme sends a command with a secret
SET ROLE ocx_regress_tc_acme;
SET ocx.tenant = 'acme';
SELECT ocx.send_command('tc.Pay', '{"card": "s3cr3t-card"}',
                        command_id => '7c000000-0000-4000-8000-000000000001');
RESET ocx.tenant;
RESET ROLE;

-- globex's reader sees none of it, in the tables or the view
SET ROLE ocx_regress_tc_globex_reader;
SET ocx.tenant = 'globex';
SELECT count(*) AS commands_seen FROM ocx.commands WHERE type LIKE 'tc.%';
SELECT count(*) AS secrets_seen FROM ocx.commands WHERE data::text ~ 's3cr3t';
SELECT count(*) AS history_seen FROM ocx.command_history
 WHERE command_id = '7c000000-0000-4000-8000-000000000001';
SELECT count(*) AS status_seen FROM ocx.command_status WHERE type LIKE 'tc.%';
-- nor does a session without a tenant
RESET ocx.tenant;
SELECT count(*) AS commands_seen FROM ocx.commands WHERE type LIKE 'tc.%';
SELECT count(*) AS history_seen FROM ocx.command_history
 WHERE command_id = '7c000000-0000-4000-8000-000000000001';
RESET ROLE;

-- globex's writer: its claim takes nothing, finishing the command by its
-- (known) id fails as for a command that does not exist, and so does
-- reusing its id
SET ROLE ocx_regress_tc_globex;
SET ocx.tenant = 'globex';
SELECT count(*) AS claimed FROM ocx.claim_commands('{tc.Pay}', 10, '1 hour', 'globex');
SELECT ocx.complete_command('7c000000-0000-4000-8000-000000000001', '{"stolen": true}',
                            claim_token => gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.fail_command('7c000000-0000-4000-8000-000000000001', 'stolen', false,
                        claim_token => gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.send_command('tc.Pay', '{"card": "s3cr3t-card"}',
                        command_id => '7c000000-0000-4000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET ocx.tenant;
RESET ROLE;
-- globex's admin cannot retry it either
SET ROLE ocx_regress_tc_admin;
SET ocx.tenant = 'globex';
SELECT ocx.retry_command('7c000000-0000-4000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET ocx.tenant;
RESET ROLE;

-- acme sees its command, untouched by globex, with its history
SET ROLE ocx_regress_tc_acme;
SET ocx.tenant = 'acme';
SELECT type, data ->> 'card' AS card, tenant_id, status, attempts, result
  FROM ocx.commands WHERE type LIKE 'tc.%';
SELECT event, attempt, actor FROM ocx.command_history
 WHERE command_id = '7c000000-0000-4000-8000-000000000001' ORDER BY at;
SELECT type, status, handled_by, jsonb_array_length(history) AS history
  FROM ocx.command_status WHERE type LIKE 'tc.%';
-- and claims and completes it
SELECT c.type, ocx.complete_command(c.command_id, '{"paid": true}', c.claim_token) AS completed
  FROM ocx.claim_commands('{tc.Pay}', 10, '1 hour', 'acme') c;
SELECT status, result FROM ocx.commands WHERE command_id = '7c000000-0000-4000-8000-000000000001';
-- a failed one: dead-lettered by acme, its last_error acme's only
SELECT ocx.send_command('tc.Pay', '{"card": "s3cr3t-other"}',
                        command_id => '7c000000-0000-4000-8000-000000000002');
SELECT ocx.fail_command(c.command_id, 'card s3cr3t-other declined', false, c.claim_token) AS failed
  FROM ocx.claim_commands('{tc.Pay}', 10, '1 hour', 'acme') c;
RESET ocx.tenant;
RESET ROLE;
SET ROLE ocx_regress_tc_globex_reader;
SET ocx.tenant = 'globex';
SELECT count(*) AS errors_seen FROM ocx.command_status WHERE last_error ~ 's3cr3t';
RESET ocx.tenant;
RESET ROLE;
-- acme's admin retries it
SET ROLE ocx_regress_tc_admin;
SET ocx.tenant = 'acme';
SELECT ocx.retry_command('7c000000-0000-4000-8000-000000000002');
SELECT status, last_error FROM ocx.command_status WHERE command_id = '7c000000-0000-4000-8000-000000000002';
RESET ocx.tenant;
RESET ROLE;

-- an acme saga: its step commands carry the saga's input and acme's tenant,
-- the first sent by start_saga, the second by the saga task (a superuser
-- without a tenant)
SET ROLE ocx_regress_tc_admin;
SELECT ocx.define_saga('tc_saga', '{"steps": [
    {"name": "charge", "command": "tc.Charge", "success": "Charged"},
    {"name": "ship", "command": "tc.Ship", "success": "Shipped"}]}');
RESET ROLE;
SET ROLE ocx_regress_tc_acme;
SET ocx.tenant = 'acme';
SELECT ocx.start_saga('tc_saga', '{"card": "s3cr3t-saga"}',
                      '7c000000-0000-4000-8000-0000000000a1') IS NOT NULL AS started;
-- step 1 succeeds (the client appends the success event, correlated to the saga)
SELECT ocx.append('tcs-1', 0, '{"type": "Charged", "data": {},
                                "correlation_id": "7c000000-0000-4000-8000-0000000000a1"}');
RESET ocx.tenant;
RESET ROLE;
SELECT tc_settle_saga('7c000000-0000-4000-8000-0000000000a1', 2);
SELECT type, tenant_id FROM ocx.commands
 WHERE correlation_id = '7c000000-0000-4000-8000-0000000000a1' ORDER BY seq;

SET ROLE ocx_regress_tc_globex_reader;
SET ocx.tenant = 'globex';
SELECT count(*) AS saga_commands_seen FROM ocx.commands
 WHERE correlation_id = '7c000000-0000-4000-8000-0000000000a1';
SELECT count(*) AS saga_inputs_seen FROM ocx.commands WHERE data::text ~ 's3cr3t-saga';
SELECT count(*) AS saga_status_seen FROM ocx.command_status
 WHERE correlation_id = '7c000000-0000-4000-8000-0000000000a1';
RESET ocx.tenant;
SELECT count(*) AS saga_commands_seen FROM ocx.commands
 WHERE correlation_id = '7c000000-0000-4000-8000-0000000000a1';
RESET ROLE;
SET ROLE ocx_regress_tc_acme;
SET ocx.tenant = 'acme';
SELECT c.type, c.data ->> 'card' AS card, s.status, s.history -> 0 ->> 'event' AS first_event
  FROM ocx.commands c JOIN ocx.command_status s USING (command_id)
 WHERE c.correlation_id = '7c000000-0000-4000-8000-0000000000a1' ORDER BY c.seq;
-- acme's claimer takes the step the worker sent
SELECT type, data ->> 'card' AS card FROM ocx.claim_commands('{tc.Ship}', 10, '1 hour', 'acme');
RESET ocx.tenant;
RESET ROLE;

-- a server-side handler, defined by an admin, runs with the command's
-- tenant: the event it appends is acme's, and only acme sees it
CREATE FUNCTION tc_stamp(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append('tch-' || (c.data ->> 'n'), 0, '{"type": "Stamped", "data": {}}');
    RETURN jsonb_build_object('tenant', current_setting('ocx.tenant'),
                              'visible', (SELECT count(*) FROM ocx.commands x WHERE x.type LIKE 'tc.%'));
END $$;
ALTER FUNCTION tc_stamp(ocx.command) OWNER TO ocx_regress_tc_admin;
SET ROLE ocx_regress_tc_admin;
SELECT ocx.define_command_handler('tc.Stamp', 'tc_stamp(ocx.command)', '{"max_attempts": 1}');
RESET ROLE;
SET ROLE ocx_regress_tc_acme;
SET ocx.tenant = 'acme';
SELECT ocx.send_command('tc.Stamp', '{"n": 1}', command_id => '7c000000-0000-4000-8000-000000000003');
RESET ocx.tenant;
RESET ROLE;
SELECT tc_settle_command('7c000000-0000-4000-8000-000000000003');
SELECT tenant_id, status, result, last_error FROM ocx.commands
 WHERE command_id = '7c000000-0000-4000-8000-000000000003';
SELECT stream_id, type, tenant_id, causation_id FROM ocx.events WHERE stream_id = 'tch-1';
SET ROLE ocx_regress_tc_globex_reader;
SET ocx.tenant = 'globex';
SELECT count(*) AS events_seen FROM ocx.events WHERE stream_id = 'tch-1';
RESET ocx.tenant;
SELECT count(*) AS events_seen FROM ocx.events WHERE stream_id = 'tch-1';
RESET ROLE;
SET ROLE ocx_regress_tc_acme;
SET ocx.tenant = 'acme';
SELECT stream_version, type FROM ocx.read_stream('tch-1');
RESET ocx.tenant;
RESET ROLE;

SELECT ocx.drop_command_handler('tc.Stamp');
DELETE FROM ocx.saga_instances WHERE saga_name = 'tc_saga';
DELETE FROM ocx.saga_definitions WHERE name = 'tc_saga';
DELETE FROM ocx.commands WHERE type LIKE 'tc.%';
DROP FUNCTION tc_stamp(ocx.command);
DROP FUNCTION tc_settle_saga(uuid, integer);
DROP FUNCTION tc_settle_command(uuid);
DROP OWNED BY ocx_regress_tc_admin, ocx_regress_tc_acme, ocx_regress_tc_globex, ocx_regress_tc_globex_reader;
DROP ROLE ocx_regress_tc_admin;
DROP ROLE ocx_regress_tc_acme;
DROP ROLE ocx_regress_tc_globex;
DROP ROLE ocx_regress_tc_globex_reader;
