-- Under row-level security ocx.load reads through SPI, so policies apply to
-- replays exactly as to SELECTs.  Everything here is rolled back.
\set SHOW_CONTEXT never

SELECT ocx.append('rlsacct-1', 0, '[
  {"type": "rls.Deposited", "data": {"amount": 10}},
  {"type": "rls.Secret", "data": {"amount": 1000}},
  {"type": "rls.Deposited", "data": {"amount": 5}}
]');
CREATE FUNCTION public.rls_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    RETURN pg_catalog.jsonb_build_object('balance', (state->>'balance')::numeric + (e.data->>'amount')::numeric,
                                         'seen', (state->'seen') || pg_catalog.to_jsonb(e.stream_version));
SELECT ocx.define_aggregate('rls_fn', 'public.rls_apply(jsonb, ocx.event)', '{"balance": 0, "seen": []}');
SELECT ocx.define_aggregate('rls_red', reducer => '{"*": [{"add": "balance", "from": "amount"}, {"append": "seen", "from": "$version"}]}');
SELECT ocx.define_aggregate('rls_snap', reducer => '{"*": [{"add": "balance", "from": "amount"}]}', snapshot_every => 1);

BEGIN;
CREATE ROLE ocx_rls_reader IN ROLE ocx_reader;
GRANT USAGE ON SCHEMA ocx TO ocx_rls_reader;
GRANT SELECT ON ocx.events, ocx.streams, ocx.snapshots TO ocx_rls_reader;
ALTER TABLE ocx.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY rls_hide_secrets ON ocx.events AS RESTRICTIVE FOR SELECT USING (type <> 'rls.Secret');
-- the owner (a superuser here) sees everything
SELECT state FROM ocx.load('rls_fn', 'rlsacct-1');
SELECT state FROM ocx.load('rls_red', 'rlsacct-1');
SET LOCAL ROLE ocx_rls_reader;
SELECT count(*) AS visible FROM ocx.read_stream('rlsacct-1');
SELECT state FROM ocx.load('rls_fn', 'rlsacct-1');
SELECT state FROM ocx.load('rls_red', 'rlsacct-1');
-- no privilege to write snapshots: ocx.snapshot fails, load does not try
SELECT ocx.snapshot('rls_red', 'rlsacct-1');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Snapshots are written by ocx alone (with ocx_owner's rights): a reader's
-- load stores one, and nobody can write one by hand (0.2.0 let writers UPDATE
-- ocx.snapshots, and load returned the forged state)
BEGIN;
CREATE ROLE ocx_rls_writer IN ROLE ocx_writer;
SET LOCAL ROLE ocx_rls_writer;
SELECT state, version FROM ocx.load('rls_snap', 'rlsacct-1');
SELECT snapshot_saved FROM ocx.last_load();
SELECT state, version FROM ocx.load('rls_snap', 'rlsacct-1');
SELECT snapshot_saved FROM ocx.last_load();
SAVEPOINT forge;
UPDATE ocx.snapshots SET state = '{"balance": 1000000}' WHERE stream_id = 'rlsacct-1';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO forge;
INSERT INTO ocx.snapshots SELECT * FROM ocx.snapshots WHERE stream_id = 'rlsacct-1';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO forge;
SELECT state FROM ocx.load('rls_snap', 'rlsacct-1');
ROLLBACK;

-- without SELECT on the log, load fails like a SELECT would
BEGIN;
CREATE ROLE ocx_rls_nobody;
GRANT USAGE ON SCHEMA ocx TO ocx_rls_nobody;
GRANT SELECT ON ocx.streams, ocx.snapshots, ocx.event_types, ocx.upcasters, ocx.aggregates TO ocx_rls_nobody;
GRANT EXECUTE ON FUNCTION ocx.load(text, text, bigint, timestamptz, boolean) TO ocx_rls_nobody;
SET LOCAL ROLE ocx_rls_nobody;
SELECT state FROM ocx.load('rls_red', 'rlsacct-1');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
