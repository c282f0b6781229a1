-- make demo, part 3: the banking domain (examples/banking.sql) end to end.
-- Three transfers: one goes through, one is refused by the aggregate (it
-- would overdraw the account), one fails at the credit (the destination is
-- closed) and its saga refunds the source.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
\echo '== Banking: transfer = debit source -> credit destination; a failed credit refunds the source'
\echo '   (loading the module examples/banking.sql)'
\o /dev/null
\ir banking.sql
\o

SELECT bank.open_account('erin', 'Erin', 100) AS erin_version,
       bank.open_account('frank', 'Frank', 20) AS frank_version,
       bank.open_account('grace', 'Grace', 0) AS grace_version;
SELECT bank.close_account('grace') AS grace_closed_at_version;

\echo '-- T1: erin -> frank 30 (fine); T2: frank -> erin 500 (overdraft); T3: erin -> grace 25 (closed)'
SELECT bank.transfer('T1', 'erin', 'frank', 30) AS t1,
       bank.transfer('T2', 'frank', 'erin', 500) AS t2,
       bank.transfer('T3', 'erin', 'grace', 25) AS t3;

-- wait (at most 30 s) for the sagas and the balances projection
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) FROM ocx.saga_instances
                    WHERE saga_name = 'transfer' AND state IN ('completed', 'compensated', 'failed')) = 3
              AND (SELECT lag_events FROM ocx.projection_status WHERE name = 'bank.balances') = 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
    IF (SELECT count(*) FROM ocx.saga_instances
         WHERE saga_name = 'transfer' AND state IN ('completed', 'compensated', 'failed')) < 3 THEN
        RAISE WARNING 'the ocx worker has not finished the sagas after 30 seconds'
            USING HINT = 'Check that shared_preload_libraries includes ocx and see SELECT * FROM ocx.worker_status().';
    END IF;
END $$;

\echo '-- the event log'
SELECT global_position AS pos, stream_id, stream_version AS v, type,
       coalesce(data->>'transfer_id', '') AS transfer, coalesce(data->>'amount', '') AS amount,
       coalesce(data->>'reason', '') AS reason
  FROM ocx.events WHERE stream_id LIKE 'bank\_%' ORDER BY txid, global_position;

\echo '-- the saga timeline'
SELECT i.input->>'transfer_id' AS transfer, s.step_name, s.action, s.state,
       coalesce(s.event_type, c.type) AS "event / command"
  FROM ocx.saga_steps s
  JOIN ocx.saga_instances i USING (saga_id)
  LEFT JOIN ocx.commands c ON c.command_id = s.command_id AND s.event_type IS NULL
 WHERE i.saga_name = 'transfer'
 ORDER BY i.input->>'transfer_id', s.id;

\echo '-- ocx.saga_status'
SELECT i.input->>'transfer_id' AS transfer, st.state, st.transitions, st.error
  FROM ocx.saga_status st JOIN ocx.saga_instances i USING (saga_id)
 WHERE st.saga_name = 'transfer' ORDER BY 1;

\echo '-- read model: balances (projection) next to each aggregate replayed'
SELECT b.account, b.owner, b.balance, b.open, b.version,
       (bank.load(b.account)).state->>'balance' AS replayed_balance
  FROM bank.balances b ORDER BY account;
