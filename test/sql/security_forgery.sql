-- Forgery (issue 10, item 7, as found on 0.2.0): writers held INSERT on
-- ocx.events (any txid, version, time: an event with txid '5' is never
-- projected; stream_version 100 was accepted while ocx.streams said 1) and
-- UPDATE on ocx.snapshots (load returned the forged state).  Now only ocx
-- writes its tables: every one of these is refused with 42501 and changes
-- nothing.
\set VERBOSITY terse
CREATE FUNCTION forge_apply(s jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('balance', coalesce((s->>'balance')::int, 0) + (e.data->>'amount')::int) $$;
SELECT ocx.define_aggregate('forge_acct', 'forge_apply(jsonb, ocx.event)', snapshot_every => 1);
CREATE ROLE ocx_regress_forger LOGIN IN ROLE ocx_writer;
SET ROLE ocx_regress_forger;
SELECT ocx.append_event('forge-1', 0, 'Deposited', '{"amount": 10}');
SELECT state, version FROM ocx.load('forge_acct', 'forge-1');
SELECT snapshot_saved FROM ocx.last_load();

-- an event with txid '5' (below every horizon: never projected)
INSERT INTO ocx.events (stream_id, stream_version, event_id, source, type, time, data, txid)
VALUES ('forge-1', 2, '5f000000-0000-4000-8000-000000000001', 'forger', 'Deposited', now(), '{"amount": 1000}', '5');
\echo :LAST_ERROR_SQLSTATE
-- an event at version 100 while the stream is at 1
INSERT INTO ocx.events (stream_id, stream_version, event_id, source, type, time, data, txid)
VALUES ('forge-1', 100, '5f000000-0000-4000-8000-000000000002', 'forger', 'Deposited', '2001-01-01',
        '{"amount": 1000}', pg_current_xact_id());
\echo :LAST_ERROR_SQLSTATE
-- the stream row, the lock of the expected-version check
UPDATE ocx.streams SET version = 100 WHERE stream_id = 'forge-1';
\echo :LAST_ERROR_SQLSTATE
-- a forged snapshot
UPDATE ocx.snapshots SET state = '{"balance": 1000000}' WHERE stream_id = 'forge-1';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ocx.snapshots (aggregate_type, stream_id, version, state, definition_version, fingerprint)
VALUES ('forge_acct', 'forge-1', 5, '{"balance": 1000000}', 1, 0);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ocx.snapshots WHERE stream_id = 'forge-1';
\echo :LAST_ERROR_SQLSTATE
-- load returns the true state, the log is as ocx wrote it
SELECT state, version FROM ocx.load('forge_acct', 'forge-1');
RESET ROLE;
SELECT stream_version, source, txid = '5' AS forged_txid FROM ocx.events WHERE stream_id = 'forge-1';
SELECT version FROM ocx.streams WHERE stream_id = 'forge-1';
SELECT version, state FROM ocx.snapshots WHERE stream_id = 'forge-1';
DROP ROLE ocx_regress_forger;
