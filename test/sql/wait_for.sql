-- Read-your-writes: ocx.last_append_cursor() and ocx.wait_for() (issue 12).
-- Argument rules, errors, the cursor's lifetime, inline and paused
-- projections, privileges.  Streams here are "wf*-..." only.
\set SHOW_CONTEXT never
\set VERBOSITY terse

CREATE TABLE wf_model (pos bigint);
CREATE FUNCTION wf_handler(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO wf_model VALUES (e.global_position) $$;
-- wait (up to 20 s) until a new inline projection has caught up in the worker
CREATE FUNCTION wf_running(p text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    FOR i IN 1..400 LOOP
        SELECT state INTO st FROM ocx.projection_status WHERE name = p;
        EXIT WHEN st = 'running';
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN st;
END $$;
-- the cursor of a stream's last event, as reads report it
CREATE FUNCTION wf_last(s text) RETURNS ocx.cursor LANGUAGE sql
    AS $$ SELECT e.cursor FROM ocx.read_stream(s) e ORDER BY e.stream_version DESC LIMIT 1 $$;

-- no append yet in this session: NULL
SELECT ocx.last_append_cursor() IS NULL AS no_cursor_yet;

-- the cursor of an append is its last event's, and outlives the commit
SELECT ocx.append_event('wf-1', 0, 'WfThing', '{}');
SELECT ocx.last_append_cursor()::text = wf_last('wf-1')::text AS single_event;
SELECT ocx.txid(ocx.last_append_cursor()) < ocx.log_txid() AS from_an_earlier_transaction;
SELECT ocx.append('wf-1', 1, '[{"type": "WfThing"}, {"type": "WfThing"}, {"type": "WfThing"}]');
SELECT ocx.last_append_cursor()::text = wf_last('wf-1')::text AS last_of_a_batch;
SELECT ocx.append_cloudevents('wf-2', 0, '{"specversion": "1.0", "id": "wf-ce-1", "source": "wf", "type": "WfThing"}');
SELECT ocx.last_append_cursor()::text = wf_last('wf-2')::text AS cloudevents;
-- a batch with ids, and its idempotent retry: the stored batch's cursor
SELECT ocx.append('wf-3', 0, '[{"type": "WfThing", "id": "0a000000-0000-4000-8000-000000000001"},
                               {"type": "WfThing", "id": "0a000000-0000-4000-8000-000000000002"}]');
SELECT ocx.last_append_cursor() AS c3 \gset
SELECT ocx.append_event('wf-4', 0, 'WfThing', '{}');
SELECT ocx.append('wf-3', 0, '[{"type": "WfThing", "id": "0a000000-0000-4000-8000-000000000001"},
                               {"type": "WfThing", "id": "0a000000-0000-4000-8000-000000000002"}]');
SELECT ocx.last_append_cursor()::text = :'c3' AND ocx.last_append_cursor()::text = wf_last('wf-3')::text AS idempotent_retry;
-- a failed append leaves the cursor as it was
SELECT ocx.append_event('wf-3', 0, 'WfThing', '{}');
SELECT ocx.last_append_cursor()::text = :'c3' AS after_a_conflict;
-- a retry in a transaction that rolls back: the stored batch is still there
SELECT ocx.append_event('wf-4', 1, 'WfThing', '{}');
BEGIN;
SELECT ocx.append('wf-3', 0, '[{"type": "WfThing", "id": "0a000000-0000-4000-8000-000000000001"},
                               {"type": "WfThing", "id": "0a000000-0000-4000-8000-000000000002"}]');
ROLLBACK;
SELECT ocx.last_append_cursor()::text = :'c3' AS retry_kept_after_rollback;

-- rolled back: the event is gone, and so is the cursor
BEGIN;
SELECT ocx.append_event('wf-5', 0, 'WfThing', '{}');
SELECT ocx.last_append_cursor() IS NOT NULL AS set_in_transaction;
ROLLBACK;
SELECT ocx.last_append_cursor() IS NULL AS gone_after_rollback;
-- a savepoint rolled back clears it; one released passes it on
BEGIN;
SAVEPOINT a;
SELECT ocx.append_event('wf-6', 0, 'WfThing', '{}');
RELEASE SAVEPOINT a;
SAVEPOINT b;
SELECT ocx.last_append_cursor()::text = wf_last('wf-6')::text AS kept_after_release;
ROLLBACK TO SAVEPOINT b;
SELECT ocx.last_append_cursor()::text = wf_last('wf-6')::text AS kept_after_rollback_of_a_later_savepoint;
SAVEPOINT c;
SELECT ocx.append_event('wf-7', 0, 'WfThing', '{}');
ROLLBACK TO SAVEPOINT c;
SELECT ocx.last_append_cursor() IS NULL AS cleared_by_its_savepoint_rollback;
COMMIT;

-- argument rules
SELECT ocx.wait_for('wf_none', ocx.cursor('1', 1), '1s');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.wait_for(NULL, ocx.cursor('1', 1), '1s');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.wait_for('wf_async', NULL, '1s');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.wait_for('wf_async', ocx.cursor('1', 1), NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.wait_for('wf_async', ocx.cursor('1', 1), '-1 ms');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.wait_for('wf_async', ocx.cursor('1', 1), '1 day -25 hours');
\echo :LAST_ERROR_SQLSTATE

-- an async projection, paused: never passes the new event
SELECT ocx.define_projection('wf_async', 'wf_handler(ocx.event)', categories => '{wf}');
SELECT ocx.pause_projection('wf_async');
SELECT ocx.append_event('wf-8', 0, 'WfThing', '{}');
SELECT ocx.wait_for('wf_async', ocx.last_append_cursor(), '0') AS paused_at_once;
SELECT clock_timestamp() AS t0 \gset
SELECT ocx.wait_for('wf_async', ocx.last_append_cursor(), '200 ms') AS paused_after_200ms;
SELECT clock_timestamp() - :'t0' >= interval '200 ms' AS waited_the_timeout;
-- a cursor it has passed (the start of the log): true at once
SELECT ocx.wait_for('wf_async', ocx.cursor('0', 0), '0') AS passed;
-- resumed: the worker applies it and wakes the waiter
SELECT ocx.resume_projection('wf_async');
SELECT ocx.wait_for('wf_async', ocx.last_append_cursor(), '20 s') AS resumed;
SELECT count(*) AS applied FROM wf_model WHERE pos = ocx.global_position(ocx.last_append_cursor());
-- nothing left for it up to the cursor: passed, paused or not
SELECT ocx.pause_projection('wf_async');
SELECT ocx.append_event('wfx-1', 0, 'WfThing', '{}');
SELECT ocx.wait_for('wf_async', ocx.last_append_cursor(), '20 s') AS an_event_it_does_not_want;
SELECT ocx.resume_projection('wf_async');
BEGIN;
SELECT ocx.append_event('wf-10', 0, 'WfThing', '{}');
SELECT ocx.last_append_cursor() AS rolled_back \gset
ROLLBACK;
SELECT ocx.wait_for('wf_async', :'rolled_back', '20 s') AS a_rolled_back_event;

-- an inline projection: true as soon as the appending transaction committed
SELECT ocx.define_projection('wf_inline', 'wf_handler(ocx.event)', categories => '{wfi}', mode => 'inline');
SELECT wf_running('wf_inline');
SELECT ocx.append_event('wfi-1', 0, 'WfThing', '{}');
SELECT ocx.wait_for('wf_inline', ocx.last_append_cursor(), '0') AS inline_at_once;

-- in the appending transaction the event is not committed: refused, not waited for
BEGIN;
SELECT ocx.append_event('wf-9', 0, 'WfThing', '{}');
SELECT ocx.wait_for('wf_async', ocx.last_append_cursor(), '5 s');
ROLLBACK;
\echo :LAST_ERROR_SQLSTATE
-- a transaction holding an xid holds back the horizon for newer transactions
BEGIN;
SELECT ocx.log_txid() IS NOT NULL AS took_an_xid;
SELECT ocx.wait_for('wf_async', ocx.cursor((ocx.log_txid()::text::numeric + 1)::text::xid8, 1), '5 s');
ROLLBACK;
\echo :LAST_ERROR_SQLSTATE
-- an older cursor is fine in such a transaction
BEGIN;
SELECT ocx.log_txid() IS NOT NULL AS took_an_xid;
SELECT ocx.wait_for('wf_async', ocx.cursor('0', 0), '5 s') AS older_cursor;
COMMIT;
-- a transaction snapshot would not see the read model afterwards
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ocx.wait_for('wf_async', ocx.cursor('0', 0), '5 s');
ROLLBACK;
\echo :LAST_ERROR_SQLSTATE
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT ocx.wait_for('wf_async', ocx.cursor('0', 0), '5 s');
ROLLBACK;
\echo :LAST_ERROR_SQLSTATE

-- privileges: readers may wait, other roles may not
CREATE ROLE wf_reader IN ROLE ocx_reader;
CREATE ROLE wf_nobody;
GRANT USAGE ON SCHEMA ocx TO wf_nobody;
SET ROLE wf_reader;
SELECT ocx.wait_for('wf_async', ocx.cursor('0', 0), '1 s') AS reader_may_wait;
SELECT ocx.wait_for('wf_none', ocx.cursor('0', 0), '1 s');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE wf_nobody;
SELECT ocx.wait_for('wf_async', '0/0', '1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.last_append_cursor();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- cleanup
SELECT ocx.drop_projection('wf_async');
SELECT ocx.drop_projection('wf_inline');
REVOKE USAGE ON SCHEMA ocx FROM wf_nobody;
DROP ROLE wf_reader, wf_nobody;
