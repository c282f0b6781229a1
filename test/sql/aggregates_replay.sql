-- Replaying a 100,000-event stream: the state is right, and the next load
-- starts from the snapshot the first one stored.
\set SHOW_CONTEXT never

SELECT ocx.append('replay-1', 0,
    (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'type', CASE WHEN i % 10 = 0 THEN 'rp.Withdrawn' ELSE 'rp.Deposited' END,
                'data', pg_catalog.jsonb_build_object('amount', i % 7)))
       FROM pg_catalog.generate_series(1, 100000) AS i));

-- expected: deposits minus withdrawals, computed with plain SQL
SELECT sum(CASE WHEN type = 'rp.Deposited' THEN (data->>'amount')::numeric
                ELSE -(data->>'amount')::numeric END) AS expected_balance,
       count(*) FILTER (WHERE type = 'rp.Withdrawn') AS expected_withdrawals
  FROM ocx.events WHERE stream_id = 'replay-1';

-- the declarative reducer
SELECT ocx.define_aggregate('rp_account', reducer => '{
  "rp.Deposited": [{"add": "balance", "from": "amount"}],
  "rp.Withdrawn": [{"subtract": "balance", "from": "amount"}, {"add": "withdrawals", "value": 1}]
}', initial_state => '{"balance": 0, "withdrawals": 0}', snapshot_every => 10000);
SELECT state, version FROM ocx.load('rp_account', 'replay-1');
SELECT version, snapshot_version, replayed, snapshot_saved FROM ocx.last_load();

-- an apply function (SQL), same fold
CREATE FUNCTION public.rp_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql IMMUTABLE
    RETURN pg_catalog.jsonb_build_object(
        'balance', (state->>'balance')::numeric
                   + CASE WHEN e.type = 'rp.Deposited' THEN 1 ELSE -1 END * (e.data->>'amount')::numeric,
        'withdrawals', (state->>'withdrawals')::int + CASE WHEN e.type = 'rp.Withdrawn' THEN 1 ELSE 0 END);
SELECT ocx.define_aggregate('rp_account_fn', 'public.rp_apply(jsonb, ocx.event)',
                            '{"balance": 0, "withdrawals": 0}', 10000);
SELECT state, version FROM ocx.load('rp_account_fn', 'replay-1');
SELECT version, snapshot_version, replayed, snapshot_saved FROM ocx.last_load();

-- 50 more events: the next loads replay only those, from the snapshot at 100,000
SELECT ocx.append('replay-1', 100000,
    (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('type', 'rp.Deposited', 'data', '{"amount": 1}'::jsonb))
       FROM pg_catalog.generate_series(1, 50)));
SELECT state, version FROM ocx.load('rp_account', 'replay-1');
SELECT version, snapshot_version, replayed, snapshot_saved FROM ocx.last_load();
SELECT state, version FROM ocx.load('rp_account_fn', 'replay-1');
SELECT version, snapshot_version, replayed, snapshot_saved FROM ocx.last_load();

-- time travel into the middle uses no snapshot above its target
SELECT state, version FROM ocx.load('rp_account', 'replay-1', 55555);
SELECT version, snapshot_version, replayed FROM ocx.last_load();
SELECT sum(CASE WHEN type = 'rp.Deposited' THEN (data->>'amount')::numeric
                ELSE -(data->>'amount')::numeric END) AS expected_at_55555
  FROM ocx.events WHERE stream_id = 'replay-1' AND stream_version <= 55555;
