-- Nothing leaks across tenants (issue 10, item 6): a member of ocx_reader
-- with ocx.tenant = 'globex' does not see acme's event data in
-- ocx.projection_status.last_error (a handler error that quotes the event)
-- nor in ocx.saga_instances.input; acme sees its own.  And appending to a
-- stream id another tenant holds is OX012, whatever the expected version.
\set SHOW_CONTEXT never

CREATE ROLE ocx_regress_leak_admin LOGIN IN ROLE ocx_admin;
CREATE ROLE ocx_regress_leak_writer LOGIN IN ROLE ocx_writer;
CREATE ROLE ocx_regress_leak_reader LOGIN IN ROLE ocx_reader;

-- an acme projection whose handler fails quoting the event's data
CREATE FUNCTION leak_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'cannot pay salary %', e.data ->> 'secret';
END $$;
ALTER FUNCTION leak_handler(ocx.event) OWNER TO ocx_regress_leak_admin;
SET ROLE ocx_regress_leak_admin;
SELECT ocx.define_projection('leak_proj', 'leak_handler(ocx.event)', categories => '{acme.leak}',
                             retry => '{"max_attempts": 1000, "base_delay": "1 minute", "max_delay": "1 minute"}');
RESET ROLE;

SET ROLE ocx_regress_leak_writer;
SET ocx.tenant = 'acme';
SELECT ocx.append_event('acme.leak-ceo', 0, 'SalarySet', '{"secret": "s3cr3t-salary"}');
RESET ocx.tenant;
RESET ROLE;

-- wait (with a deadline, as a superuser) until the worker recorded the error
CREATE FUNCTION leak_wait() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..600 LOOP
        IF EXISTS (SELECT FROM ocx.projection_status WHERE name = 'leak_proj' AND last_error IS NOT NULL) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;
SELECT leak_wait() AS error_recorded;

-- an acme saga whose input holds a secret
SELECT ocx.define_saga('leak_saga', '{"steps": [{"name": "pay", "command": "leak.Pay", "success": "Paid"}]}');
SET ROLE ocx_regress_leak_writer;
SET ocx.tenant = 'acme';
SELECT ocx.start_saga('leak_saga', '{"secret": "s3cr3t-input"}',
                      '1eac0000-0000-4000-8000-000000000001') IS NOT NULL AS started;
RESET ocx.tenant;
RESET ROLE;

-- globex's reader: neither the event data nor the saga input
SET ROLE ocx_regress_leak_reader;
SET ocx.tenant = 'globex';
SELECT name, state, last_error ~ 's3cr3t' AS error_leaks, last_error ~ 'leak-ceo' AS stream_leaks,
       regexp_replace(last_error, '\d+', 'N', 'g') AS last_error
  FROM ocx.projection_status WHERE name = 'leak_proj';
SELECT count(*) AS errors_seen FROM ocx.projection_errors;
SELECT last_error ~ 's3cr3t' AS table_leaks FROM ocx.projections WHERE name = 'leak_proj';
SELECT count(*) AS acme_sagas_seen FROM ocx.saga_instances WHERE input::text ~ 's3cr3t';
SELECT count(*) AS sagas_seen FROM ocx.saga_instances WHERE saga_name = 'leak_saga';
SELECT count(*) AS saga_status_seen FROM ocx.saga_status WHERE saga_name = 'leak_saga';
SELECT count(*) AS saga_steps_seen FROM ocx.saga_steps;
-- nor with no tenant at all
RESET ocx.tenant;
SELECT last_error ~ 's3cr3t' AS error_leaks FROM ocx.projection_status WHERE name = 'leak_proj';
SELECT count(*) AS sagas_seen FROM ocx.saga_instances WHERE saga_name = 'leak_saga';

-- acme's reader sees its own
SET ocx.tenant = 'acme';
SELECT name, regexp_replace(last_error, '\d+', 'N', 'g') AS last_error
  FROM ocx.projection_status WHERE name = 'leak_proj';
SELECT saga_name, input ->> 'secret' AS secret, tenant_id FROM ocx.saga_instances;
SELECT saga_name, state FROM ocx.saga_status;
SELECT count(*) > 0 AS saga_steps_seen FROM ocx.saga_steps;
RESET ocx.tenant;
RESET ROLE;

-- a stream id another tenant holds: OX012, without naming the tenant, for
-- every expected version, single events and batches
SET ROLE ocx_regress_leak_writer;
SET ocx.tenant = 'globex';
SELECT ocx.append_event('acme.leak-ceo', NULL, 'SalarySet', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('acme.leak-ceo', NULL, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('acme.leak-ceo', 0, 'SalarySet', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('acme.leak-ceo', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('acme.leak-ceo', 1, 'SalarySet', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('acme.leak-ceo', 1, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('acme.leak-ceo', 1, '{"type": "A", "data": {}, "id": "1eac0000-0000-4000-8000-0000000000aa"}');
\echo :LAST_ERROR_SQLSTATE
-- under REPEATABLE READ too
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ocx.append_event('acme.leak-ceo', NULL, 'SalarySet', '{}');
ROLLBACK;
-- a session without a tenant meets acme's stream the same way
RESET ocx.tenant;
SELECT ocx.append_event('acme.leak-ceo', NULL, 'SalarySet', '{}');
\echo :LAST_ERROR_SQLSTATE
-- the stream's own tenant still appends, and wrong versions stay OX001
SET ocx.tenant = 'acme';
SELECT ocx.append_event('acme.leak-ceo', 1, 'SalarySet', '{"secret": "again"}');
SELECT ocx.append_event('acme.leak-ceo', 1, 'SalarySet', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('acme.leak-new', 3, 'SalarySet', '{}');
\echo :LAST_ERROR_SQLSTATE
RESET ocx.tenant;
RESET ROLE;

SELECT ocx.drop_projection('leak_proj');
DELETE FROM ocx.saga_instances WHERE saga_name = 'leak_saga';
DELETE FROM ocx.commands WHERE type = 'leak.Pay';
DELETE FROM ocx.saga_definitions WHERE name = 'leak_saga';
DROP FUNCTION leak_wait();
DROP FUNCTION leak_handler(ocx.event);
DROP OWNED BY ocx_regress_leak_admin, ocx_regress_leak_writer, ocx_regress_leak_reader;
DROP ROLE ocx_regress_leak_admin, ocx_regress_leak_writer, ocx_regress_leak_reader;
