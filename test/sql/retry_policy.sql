-- Retry policies: one shape for projections and command handlers, the
-- deprecated 0.2.0 projection keys, one backoff (ocx.retry_delay).
-- Projections here are "rp*", command types "rp.*".
\set SHOW_CONTEXT never
SET intervalstyle = postgres;

CREATE FUNCTION rp_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;

-- the new shape is accepted and stored in its canonical form
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)',
    retry => '{"max_attempts": 5, "base_delay": "100 milliseconds", "max_delay": "10 s"}');
SELECT ocx.define_projection('rp2', 'rp_handler(ocx.event)',
    retry => '{"max_attempts": 1, "base_delay": "0", "max_delay": "1 day 2 hours", "on_exhausted": "stop"}');
SELECT ocx.define_projection('rp3', 'rp_handler(ocx.event)',
    retry => '{"on_failure": "park_stream"}');
SELECT ocx.define_projection('rp4', 'rp_handler(ocx.event)');
SELECT name, retry FROM ocx.projections WHERE name LIKE 'rp%' ORDER BY name;
-- canonical whatever the session's IntervalStyle
SET intervalstyle = iso_8601;
SELECT ocx.define_projection('rp5', 'rp_handler(ocx.event)',
    retry => '{"base_delay": "PT0.5S", "max_delay": "1 minute"}');
RESET intervalstyle;
SELECT retry FROM ocx.projections WHERE name = 'rp5';

-- the 0.2.0 keys: translated, with a deprecation WARNING (OX205) whose HINT
-- shows the new spelling
\set VERBOSITY default
SELECT ocx.define_projection('rp6', 'rp_handler(ocx.event)',
    retry => '{"attempts": 4, "base_delay_ms": 250, "max_delay_ms": 60000, "on_exhausted": "stop"}');
SELECT ocx.define_projection('rp7', 'rp_handler(ocx.event)', retry => '{"attempts": 2}');
\set VERBOSITY terse
SELECT name, retry FROM ocx.projections WHERE name IN ('rp6', 'rp7') ORDER BY name;
-- its SQLSTATE
\set VERBOSITY sqlstate
SELECT ocx._projection_retry('{"max_delay_ms": 50000}') ->> 'max_delay' AS max_delay;
\set VERBOSITY terse

-- bad values are refused with OX201 and write nothing (rp1 keeps its policy)
CREATE TEMP TABLE rp_before AS SELECT name, retry FROM ocx.projections WHERE name LIKE 'rp%';
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"tries": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"max_attempts": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"max_attempts": 1001}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"max_attempts": 2.5}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"max_attempts": "3"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"base_delay": "soon"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"base_delay": 100}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"base_delay": "-1 s"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"max_delay": "2 years"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"base_delay": "1 minute", "max_delay": "1 second"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"on_exhausted": "ignore"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"on_failure": "retry"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"on_failure": "park_stream", "on_exhausted": "stop"}');
\echo :LAST_ERROR_SQLSTATE
-- an old key out of its old range
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"base_delay_ms": -5}');
\echo :LAST_ERROR_SQLSTATE
-- the old and the new spelling of one key together
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"attempts": 3, "max_attempts": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('rp1', 'rp_handler(ocx.event)', retry => '{"base_delay_ms": 5, "base_delay": "5 milliseconds"}');
\echo :LAST_ERROR_SQLSTATE
-- an inline projection cannot hold back streams
SELECT ocx.define_projection('rp8', 'rp_handler(ocx.event)', mode => 'inline', retry => '{"on_failure": "park_stream"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS unchanged FROM rp_before b JOIN ocx.projections p USING (name) WHERE p.retry = b.retry;
SELECT count(*) AS projections FROM ocx.projections WHERE name LIKE 'rp%';

-- the one backoff: least(max_delay, base_delay * 2^(attempt - 1))
SELECT a AS attempt, ocx.retry_delay('{"base_delay": "100 milliseconds", "max_delay": "10 s"}', a) AS delay
  FROM generate_series(1, 10) a;
SELECT ocx.retry_delay(retry, 3) AS rp1_third FROM ocx.projections WHERE name = 'rp1';
-- every field doubles, as interval * integer does; capped at max_delay
SELECT ocx.retry_delay('{"base_delay": "1 mon 1 day", "max_delay": "1 year"}', 3) AS months_and_days,
       ocx.retry_delay('{"base_delay": "1 mon 1 day", "max_delay": "1 year"}', 5) AS capped;
-- no overflow for any attempt; a zero base stays zero
SELECT ocx.retry_delay('{"base_delay": "1 day", "max_delay": "1 year"}', 2147483647) AS huge_attempt,
       ocx.retry_delay('{"base_delay": "0", "max_delay": "1 s"}', 1000) AS zero_base;
SELECT ocx.retry_delay('{"base_delay": "1 s", "max_delay": "1 s"}', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.retry_delay('{"base_delay": "2 s", "max_delay": "1 s"}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.retry_delay('{"base_delay": "1 s"}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.retry_delay('[]', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.retry_delay(NULL, 1) IS NULL AS strict;
SELECT provolatile, proisstrict FROM pg_proc WHERE oid = 'ocx.retry_delay(jsonb, integer)'::regprocedure;

-- command handlers: the same shape, the same checks (their own OX322) ...
SELECT ocx.define_command_handler('rp.Send', NULL,
    '{"max_attempts": 4, "base_delay": "1 minute", "max_delay": "3 minutes"}');
SELECT ocx.define_command_handler('rp.Default', NULL);
SELECT command_type, max_attempts, base_delay, max_delay FROM ocx.command_handlers
 WHERE command_type LIKE 'rp.%' ORDER BY 1;
SELECT ocx.define_command_handler('rp.Bad', NULL, '{"max_attempts": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('rp.Bad', NULL, '{"attempts": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('rp.Bad', NULL, '{"base_delay": "soon"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS bad_written FROM ocx.command_handlers WHERE command_type = 'rp.Bad';
-- ... and the same backoff: attempt n waits ocx.retry_delay(policy, n)
CREATE FUNCTION pg_temp.tok(id uuid) RETURNS uuid LANGUAGE sql
    RETURN (SELECT c.claim_token FROM ocx.commands c WHERE c.command_id = id);
SELECT ocx.send_command('rp.Send', '{}', command_id => 'c0000000-0000-4000-8000-00000000e001');
BEGIN;
SELECT count(*) AS claimed FROM ocx.claim_commands(ARRAY['rp.Send']);
SELECT ocx.fail_command('c0000000-0000-4000-8000-00000000e001', 'down', claim_token => pg_temp.tok('c0000000-0000-4000-8000-00000000e001'));
SELECT c.run_after - now() AS waits,
       c.run_after - now() = ocx.retry_delay('{"base_delay": "1 minute", "max_delay": "3 minutes"}', 1) AS same
  FROM ocx.commands c WHERE c.command_id = 'c0000000-0000-4000-8000-00000000e001';
COMMIT;
UPDATE ocx.commands SET run_after = now() WHERE command_id = 'c0000000-0000-4000-8000-00000000e001';
BEGIN;
SELECT count(*) AS claimed FROM ocx.claim_commands(ARRAY['rp.Send']);
SELECT ocx.fail_command('c0000000-0000-4000-8000-00000000e001', 'down', claim_token => pg_temp.tok('c0000000-0000-4000-8000-00000000e001'));
SELECT c.run_after - now() AS waits,
       c.run_after - now() = ocx.retry_delay('{"base_delay": "1 minute", "max_delay": "3 minutes"}', 2) AS same
  FROM ocx.commands c WHERE c.command_id = 'c0000000-0000-4000-8000-00000000e001';
COMMIT;
UPDATE ocx.commands SET run_after = now() WHERE command_id = 'c0000000-0000-4000-8000-00000000e001';
BEGIN;
SELECT count(*) AS claimed FROM ocx.claim_commands(ARRAY['rp.Send']);
SELECT ocx.fail_command('c0000000-0000-4000-8000-00000000e001', 'down', claim_token => pg_temp.tok('c0000000-0000-4000-8000-00000000e001'));
SELECT c.run_after - now() AS waits_capped
  FROM ocx.commands c WHERE c.command_id = 'c0000000-0000-4000-8000-00000000e001';
COMMIT;
SELECT detail FROM ocx.command_history
 WHERE command_id = 'c0000000-0000-4000-8000-00000000e001' AND event = 'failed' ORDER BY attempt;
-- no other backoff formula is left in the SQL of the extension
SELECT p.oid::regprocedure AS has_power
  FROM pg_proc p WHERE p.pronamespace = 'ocx'::regnamespace AND p.prosrc ~* 'power\s*\(';

-- clean up
SELECT ocx.drop_projection(name) FROM ocx.projections WHERE name LIKE 'rp%' ORDER BY name;
SELECT ocx.drop_command_handler('rp.Send'), ocx.drop_command_handler('rp.Default');
DELETE FROM ocx.command_history WHERE command_id = 'c0000000-0000-4000-8000-00000000e001';
DELETE FROM ocx.commands WHERE command_id = 'c0000000-0000-4000-8000-00000000e001';
