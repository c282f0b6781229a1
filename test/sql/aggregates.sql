-- Aggregates: define_aggregate, load, time travel, snapshots, errors.
\set SHOW_CONTEXT never
\set VERBOSITY default

CREATE FUNCTION public.agg_apply(state jsonb, e ocx.event) RETURNS jsonb
    LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'agg.Deposited' THEN
        RETURN pg_catalog.jsonb_set(state, '{balance}',
            pg_catalog.to_jsonb((state->>'balance')::numeric + (e.data->>'amount')::numeric));
    ELSIF e.type = 'agg.Withdrawn' THEN
        IF (e.data->>'amount')::numeric > (state->>'balance')::numeric THEN
            RAISE EXCEPTION 'overdrawn by %', (e.data->>'amount')::numeric - (state->>'balance')::numeric;
        END IF;
        RETURN pg_catalog.jsonb_set(state, '{balance}',
            pg_catalog.to_jsonb((state->>'balance')::numeric - (e.data->>'amount')::numeric));
    ELSIF e.type = 'agg.Nulled' THEN
        RETURN NULL;
    END IF;
    RETURN state || pg_catalog.jsonb_build_object('last_version', e.stream_version);
END $$;

CREATE FUNCTION public.agg_wrong(state jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION public.agg_wrong_ret(state jsonb, e ocx.event) RETURNS text LANGUAGE sql AS 'SELECT ''x''';

-- definition errors
SELECT ocx.define_aggregate(NULL, 'public.agg_apply(jsonb, ocx.event)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('', 'public.agg_apply(jsonb, ocx.event)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_account');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_account', 'public.agg_apply(jsonb, ocx.event)', reducer => '{"x": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_account', 'public.agg_wrong(jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_account', 'public.agg_wrong_ret(jsonb, ocx.event)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_account', 'public.agg_apply(jsonb, ocx.event)', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_account', 'public.agg_apply(jsonb, ocx.event)', '{}', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS defined FROM ocx.aggregates WHERE aggregate_type = 'agg_account';

-- a good definition
SELECT ocx.define_aggregate('agg_account', 'public.agg_apply(jsonb, ocx.event)',
                            '{"balance": 0}', snapshot_every => 3);
SELECT aggregate_type, apply, reducer, initial_state, snapshot_every, definition_version
  FROM ocx.aggregates WHERE aggregate_type = 'agg_account';

SELECT ocx.append('aggacct-1', 0, '[
  {"type": "agg.Deposited", "data": {"amount": 100}, "time": "2024-01-01T10:00:00Z"},
  {"type": "agg.Withdrawn", "data": {"amount": 30},  "time": "2024-01-02T10:00:00Z"},
  {"type": "agg.Deposited", "data": {"amount": 5},   "time": "2024-01-03T10:00:00Z"},
  {"type": "agg.Noted",     "data": {},              "time": "2024-01-04T10:00:00Z"}
]');

-- load: the whole stream; crossing version 3 stores a snapshot
SELECT * FROM ocx.load('agg_account', 'aggacct-1');
SELECT version, snapshot_version, replayed, snapshot_saved FROM ocx.last_load();
SELECT stream_id, version, state FROM ocx.snapshots WHERE aggregate_type = 'agg_account';
-- again: starts from the snapshot, replays nothing, stores nothing
SELECT * FROM ocx.load('agg_account', 'aggacct-1');
SELECT version, snapshot_version, replayed, snapshot_saved FROM ocx.last_load();

-- time travel by version and by time
SELECT * FROM ocx.load('agg_account', 'aggacct-1', 2);
SELECT version, snapshot_version, replayed FROM ocx.last_load();
SELECT * FROM ocx.load('agg_account', 'aggacct-1', 0);
SELECT * FROM ocx.load('agg_account', 'aggacct-1', as_of_time => '2024-01-02T12:00:00Z');
SELECT * FROM ocx.load('agg_account', 'aggacct-1', as_of_time => '2023-01-01T00:00:00Z');
SELECT * FROM ocx.load('agg_account', 'aggacct-1', 3, '2024-01-10T00:00:00Z');

-- load errors
SELECT * FROM ocx.load('agg_nope', 'aggacct-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.load(NULL, 'aggacct-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.load('agg_account', 'aggacct-missing');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.load('agg_account', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.load('agg_account', 'aggacct-1', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.load('agg_account', 'aggacct-1', 99);
\echo :LAST_ERROR_SQLSTATE

-- an apply that raises, and one that returns null
SELECT ocx.append('aggacct-2', 0, '[{"type": "agg.Deposited", "data": {"amount": 1}},
                                    {"type": "agg.Withdrawn", "data": {"amount": 50}}]');
SELECT * FROM ocx.load('agg_account', 'aggacct-2');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('aggacct-3', 0, '{"type": "agg.Nulled", "data": {}}');
SELECT * FROM ocx.load('agg_account', 'aggacct-3');
\echo :LAST_ERROR_SQLSTATE
-- the error is catchable, and the session goes on with a working cache
DO $$
BEGIN
    PERFORM ocx.load('agg_account', 'aggacct-2');
EXCEPTION WHEN SQLSTATE 'OX103' THEN
    RAISE NOTICE 'caught OX103';
END $$;
SELECT state FROM ocx.load('agg_account', 'aggacct-1');

-- snapshot on request
SELECT ocx.append('aggacct-1', 4, '{"type": "agg.Deposited", "data": {"amount": 1}}');
SELECT ocx.snapshot('agg_account', 'aggacct-1');
SELECT version, state FROM ocx.snapshots
 WHERE aggregate_type = 'agg_account' AND stream_id = 'aggacct-1' ORDER BY version;
SELECT ocx.snapshot('agg_nope', 'aggacct-1');
\echo :LAST_ERROR_SQLSTATE

-- no snapshot writes in a read-only transaction
BEGIN READ ONLY;
SELECT ocx.snapshot('agg_account', 'aggacct-1');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT ocx.append('aggacct-1', 5, '[{"type": "agg.Noted", "data": {}}, {"type": "agg.Noted", "data": {}}]');
BEGIN READ ONLY;
SELECT state, version FROM ocx.load('agg_account', 'aggacct-1');
SELECT snapshot_version, replayed, snapshot_saved FROM ocx.last_load();
COMMIT;

-- redefining with the same fold keeps snapshots; a changed fold drops them
SELECT ocx.define_aggregate('agg_account', 'public.agg_apply(jsonb, ocx.event)',
                            '{"balance": 0}', snapshot_every => 3);
SELECT count(*) AS snapshots_kept FROM ocx.snapshots WHERE aggregate_type = 'agg_account';
SELECT ocx.define_aggregate('agg_account', 'public.agg_apply(jsonb, ocx.event)',
                            '{"balance": 1000}', snapshot_every => 3);
SELECT count(*) AS snapshots_left FROM ocx.snapshots WHERE aggregate_type = 'agg_account';
SELECT definition_version FROM ocx.aggregates WHERE aggregate_type = 'agg_account';
SELECT state, version FROM ocx.load('agg_account', 'aggacct-1');
SELECT snapshot_version, replayed, snapshot_saved FROM ocx.last_load();

-- CREATE OR REPLACE of the apply function: old snapshots are never used again
CREATE OR REPLACE FUNCTION public.agg_apply(state jsonb, e ocx.event) RETURNS jsonb
    LANGUAGE plpgsql AS $$
BEGIN
    RETURN state || pg_catalog.jsonb_build_object('n', COALESCE((state->>'n')::int, 0) + 1);
END $$;
SELECT state, version FROM ocx.load('agg_account', 'aggacct-1');
SELECT snapshot_version, replayed FROM ocx.last_load();

-- the apply function is dropped
DROP FUNCTION public.agg_apply(jsonb, ocx.event);
SELECT * FROM ocx.load('agg_account', 'aggacct-1');
\echo :LAST_ERROR_SQLSTATE

-- names longer than any the cache keeps are refused at definition time
SELECT ocx.define_aggregate(repeat('a', 257), reducer => '{"T": [{"add": "n", "value": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type(repeat('t', 257), 1);
\echo :LAST_ERROR_SQLSTATE

-- definition tables changed by hand: a wrong function is refused, never called
SELECT ocx.define_aggregate('agg_hand', reducer => '{"T": [{"add": "n", "value": 1}]}');
UPDATE ocx.aggregates SET reducer = NULL, apply = 'ocx.category(text)'::regprocedure
 WHERE aggregate_type = 'agg_hand';
SELECT * FROM ocx.load('agg_hand', 'aggacct-1');
\echo :LAST_ERROR_SQLSTATE
-- reducer rules broken by hand fail only that aggregate's loads
SELECT ocx.define_aggregate('agg_hand2', reducer => '{"T": [{"add": "n", "value": 1}]}');
UPDATE ocx.aggregates SET reducer = '{"T": [{"frob": "n"}]}' WHERE aggregate_type = 'agg_hand2';
SELECT * FROM ocx.load('agg_hand2', 'aggacct-1');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_ok', reducer => '{"T": [{"add": "n", "value": 1}]}');
SELECT version FROM ocx.load('agg_ok', 'aggacct-1');
