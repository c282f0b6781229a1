-- Multi-tenancy: with ocx.tenant set, a session sees and writes only its
-- tenant's events and streams, on every read path.  Superusers bypass
-- row-level security, so the checks run as a plain member of ocx_writer.
\set SHOW_CONTEXT never

CREATE ROLE ocx_regress_tenant_user NOLOGIN IN ROLE ocx_writer;
CREATE FUNCTION public.tenancy_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    RETURN pg_catalog.jsonb_build_object('n', COALESCE((state ->> 'n')::int, 0) + 1, 'last', e.type);
SELECT ocx.define_aggregate('tenancy_acct', 'public.tenancy_apply(jsonb, ocx.event)', snapshot_every => 2);
CREATE ROLE ocx_regress_reader_user NOLOGIN IN ROLE ocx_reader;
SELECT ocx.define_subscription('tenancy_acme', NULL, ARRAY['tenancy']);
-- the superuser appends first, so append's plans are cached without policies
-- applied: they must be planned again for the tenant's role
SELECT ocx.append('tenancy-0', NULL, '{"type": "Untenanted", "data": {}}');
SELECT ocx.append_event('tenancy-0', NULL, 'Untenanted', '{}');
SET ROLE ocx_regress_tenant_user;
SET ocx.tenant = 'acme';
SELECT ocx.append('tenancy-0', NULL, '{"type": "Intruded", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('tenancy-0', NULL, 'Intruded', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.stream_version('tenancy-0') AS untenanted_stream_seen_by_acme;

SET ocx.tenant = 'acme';
SELECT ocx.append('tenancy-1', 0, '[{"type": "Opened", "data": {"t": "acme"}}, {"type": "Paid", "data": {}}]');
SELECT ocx.append_event('tenancy-3', NULL, 'Opened', '{"t": "acme"}');
SET ocx.tenant = 'globex';
SELECT ocx.append('tenancy-2', 0, '{"type": "Opened", "data": {"t": "globex"}}');
-- read_all/read_category read below the log horizon, and a projection of an
-- earlier test (same database) may be in the middle of a batch: wait until
-- every append above is below the horizon (at most 30 s), so that the reads
-- below test the tenant filter and nothing else
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
    WHILE ocx.log_horizon() <= ocx.txid(ocx.last_append_cursor()) LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the log horizon did not pass the appends within 30 s';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- globex sees only globex
SELECT stream_id, stream_version, type, tenant_id FROM ocx.read_stream('tenancy-1');
SELECT stream_id, stream_version, type, tenant_id FROM ocx.read_stream('tenancy-2');
SELECT ocx.stream_version('tenancy-1') AS acme_stream, ocx.stream_version('tenancy-2') AS own_stream;
SELECT stream_id, stream_version, tenant_id FROM ocx.read_category('tenancy', NULL, NULL);
SELECT stream_id, stream_version, tenant_id FROM ocx.read_all(NULL, NULL, NULL, ARRAY['tenancy']);
SELECT stream_id, version, tenant_id FROM ocx.streams WHERE category = 'tenancy' ORDER BY stream_id;

SELECT state, version FROM ocx.load('tenancy_acct', 'tenancy-2');
SELECT state, version FROM ocx.load('tenancy_acct', 'tenancy-1');
\echo :LAST_ERROR_SQLSTATE

-- acme sees only acme
SET ocx.tenant = 'acme';
SELECT state, version FROM ocx.load('tenancy_acct', 'tenancy-1');
SELECT stream_id, version FROM ocx.snapshots WHERE aggregate_type = 'tenancy_acct';
SET ocx.tenant = 'globex';
SELECT count(*) AS acme_snapshots_seen_by_globex FROM ocx.snapshots WHERE aggregate_type = 'tenancy_acct';
SET ocx.tenant = 'acme';
SELECT stream_id, stream_version, type, tenant_id FROM ocx.read_stream('tenancy-1');
SELECT count(*) AS globex_events FROM ocx.read_stream('tenancy-2');
SELECT ocx.stream_version('tenancy-1') AS own_stream, ocx.stream_version('tenancy-2') AS globex_stream;
SELECT stream_id, stream_version, tenant_id FROM ocx.read_category('tenancy', NULL, NULL);
SELECT stream_id, stream_version, tenant_id FROM ocx.read_all(NULL, NULL, NULL, ARRAY['tenancy']);

-- a subscription polled by acme delivers acme's events only (one
-- subscription per tenant: acknowledging moves past what it cannot see)
SELECT stream_id, stream_version, tenant_id FROM ocx.poll('tenancy_acme', 10);

-- no tenant: only untenanted rows (the superuser's tenancy-0), no tenant's
RESET ocx.tenant;
SELECT count(*) AS visible_without_tenant FROM ocx.read_category('tenancy', NULL, NULL);
SELECT ocx.stream_version('tenancy-1') AS without_tenant;
SET ocx.tenant = '';
SELECT count(*) AS visible_with_empty_tenant FROM ocx.read_category('tenancy', NULL, NULL);

-- another tenant cannot write into a stream it cannot see
SET ocx.tenant = 'globex';
SELECT ocx.append('tenancy-1', NULL, '{"type": "Hijacked", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('tenancy-1', 2, '{"type": "Hijacked", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
-- nor insert rows by hand at all: only ocx (ocx_owner) writes the log
INSERT INTO ocx.events (stream_id, stream_version, event_id, source, type, time, data, tenant_id, txid)
VALUES ('tenancy-9', 1, '5e000000-0000-4000-8000-000000000001', 'x', 'Forged', pg_catalog.now(), '{}',
        'acme', pg_catalog.pg_current_xact_id());
\echo :LAST_ERROR_SQLSTATE
-- history stays immutable under row-level security
UPDATE ocx.events SET type = 'Changed' WHERE stream_id = 'tenancy-2';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ocx.events WHERE stream_id = 'tenancy-2';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- those met the missing privilege (42501) first; the table's owner has the
-- privileges and is under row-level security too (FORCE): for its tenant's rows
-- it reaches the row trigger that refuses every change (OX009)
SET ROLE ocx_owner;
SET ocx.tenant = 'globex';
UPDATE ocx.events SET type = 'Changed' WHERE stream_id = 'tenancy-2';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ocx.events WHERE stream_id = 'tenancy-2';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT stream_version, type FROM ocx.read_stream('tenancy-2');

-- a reader reads its tenant and cannot append
SET ROLE ocx_regress_reader_user;
SET ocx.tenant = 'acme';
SELECT count(*) AS reader_sees FROM ocx.read_stream('tenancy-1');
SELECT ocx.append_event('tenancy-1', NULL, 'Nope', '{}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
RESET ocx.tenant;

-- the soft-deleted versions a read skips (ocx._hidden_through, which the
-- reads call and a reader may call too) are told to the stream's tenant only
SET ROLE ocx_regress_tenant_user;
SET ocx.tenant = 'globex';
SELECT ocx.append('tenhid-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
SELECT ocx.delete_stream('tenhid-1', 2) AS soft_deleted_through;
RESET ROLE;
SET ROLE ocx_regress_reader_user;
SET ocx.tenant = 'globex';
SELECT ocx._hidden_through('tenhid-1') AS globex_hidden;
SET ocx.tenant = 'acme';
SELECT ocx._hidden_through('tenhid-1') AS acme_hidden;
RESET ocx.tenant;
SELECT ocx._hidden_through('tenhid-1') AS untenanted_hidden;
RESET ROLE;
SELECT ocx._hidden_through('tenhid-1') AS superuser_hidden;

-- a superuser (BYPASSRLS) sees everything, untouched
SELECT stream_id, stream_version, type, tenant_id FROM ocx.events
 WHERE stream_id LIKE 'tenancy-%' ORDER BY global_position;

SELECT stream_id, version FROM ocx.snapshots WHERE aggregate_type = 'tenancy_acct' ORDER BY 1;
DELETE FROM ocx.aggregates WHERE aggregate_type = 'tenancy_acct';
SELECT ocx.drop_subscription('tenancy_acme');
DROP FUNCTION public.tenancy_apply(jsonb, ocx.event);
DROP ROLE ocx_regress_tenant_user;
DROP ROLE ocx_regress_reader_user;
