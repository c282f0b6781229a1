-- Observability of the bus: command counters (from the status transitions
-- of ocx.commands), subscription lag, commands in ocx.trace.
\set SHOW_CONTEXT never

CREATE TEMP TABLE before AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';

-- three commands: one succeeds, one fails and is retried later, one is given up on
SELECT ocx.send_command('mbus.Do', '{"n": 1}', correlation_id => '7e000000-0000-4000-8000-000000000001',
                        command_id => '7e000000-0000-4000-8000-0000000000c1') AS c1;
SELECT ocx.send_command('mbus.Do', '{"n": 2}', command_id => '7e000000-0000-4000-8000-0000000000c2') AS c2;
SELECT ocx.send_command('mbus.Do', '{"n": 3}', command_id => '7e000000-0000-4000-8000-0000000000c3') AS c3;
CREATE TEMP TABLE mbus_claims AS SELECT * FROM ocx.claim_commands(ARRAY['mbus.Do'], 3);
SELECT count(*) AS claimed FROM mbus_claims;
SELECT ocx.complete_command('7e000000-0000-4000-8000-0000000000c1', '{"ok": true}',
                        (SELECT claim_token FROM mbus_claims WHERE command_id = '7e000000-0000-4000-8000-0000000000c1'));
SELECT ocx.fail_command('7e000000-0000-4000-8000-0000000000c2', 'try again', true,
                        (SELECT claim_token FROM mbus_claims WHERE command_id = '7e000000-0000-4000-8000-0000000000c2'));
SELECT ocx.fail_command('7e000000-0000-4000-8000-0000000000c3', 'hopeless', false,
                        (SELECT claim_token FROM mbus_claims WHERE command_id = '7e000000-0000-4000-8000-0000000000c3'));

SELECT s.name, s.value - b.value AS delta
  FROM ocx.stats s JOIN before b USING (name)
 WHERE s.name LIKE 'commands%' ORDER BY s.name;
SELECT labels ->> 'status' AS status, value >= 1 AS present
  FROM ocx.stats WHERE name = 'commands' AND labels ->> 'status' IN ('succeeded', 'pending', 'dead_letter')
 ORDER BY 1;

-- subscription lag: events readable but not yet acknowledged
SELECT ocx.define_subscription('mbus_sub', NULL, ARRAY['mbus']);
SELECT ocx.append('mbus-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}]');
SELECT value AS lag FROM ocx.stats WHERE name = 'subscription_lag_events' AND labels ->> 'subscription' = 'mbus_sub';
SELECT count(*) AS polled FROM ocx.poll('mbus_sub', 2);
SELECT ocx.ack('mbus_sub', (SELECT "cursor" FROM ocx.read_category('mbus', NULL, 2) OFFSET 1));
SELECT value AS lag_after_ack FROM ocx.stats WHERE name = 'subscription_lag_events' AND labels ->> 'subscription' = 'mbus_sub';
SELECT l FROM pg_catalog.regexp_split_to_table(ocx.metrics(), E'\n') AS l
 WHERE l LIKE '%subscription="mbus_sub"%';
SELECT ocx.drop_subscription('mbus_sub');

-- a command and the event it caused, in one trace
BEGIN;
SET LOCAL ocx.correlation_id = '7e000000-0000-4000-8000-000000000001';
SET LOCAL ocx.causation_id = '7e000000-0000-4000-8000-0000000000c1';
SELECT ocx.append('mbus-2', 0, '{"id": "7e000000-0000-4000-8000-0000000000e1", "type": "Done", "data": {}}');
COMMIT;
SELECT depth, kind, right(id::text, 2) AS id, type, stream_id, status
  FROM ocx.trace('7e000000-0000-4000-8000-000000000001');

-- a trace continues through a command and the handler the worker runs for it
CREATE FUNCTION mbus_ship(c ocx.command) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append('mbus-ship-' || (c.data ->> 'n'), NULL, '{"type": "Shipped", "data": {}}');
END $$;
SELECT ocx.define_command_handler('mbus.Ship', 'mbus_ship(ocx.command)');
BEGIN;
SET LOCAL ocx.correlation_id = '7e000000-0000-4000-8000-000000000002';
SET LOCAL ocx.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
SELECT ocx.append('mbus-order-1', 0, '{"id": "7e000000-0000-4000-8000-0000000000e2", "type": "OrderPlaced", "data": {}}');
SET LOCAL ocx.causation_id = '7e000000-0000-4000-8000-0000000000e2';
SELECT ocx.send_command('mbus.Ship', '{"n": 1}', command_id => '7e000000-0000-4000-8000-0000000000c4');
COMMIT;
DO $$
BEGIN
    FOR i IN 1..500 LOOP
        PERFORM ocx._command_tick();
        EXIT WHEN (SELECT status FROM ocx.commands WHERE command_id = '7e000000-0000-4000-8000-0000000000c4') = 'succeeded';
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
SELECT depth, kind, type, stream_id, status, traceparent
  FROM ocx.trace('7e000000-0000-4000-8000-000000000002');
SELECT ocx.drop_command_handler('mbus.Ship');
DROP FUNCTION mbus_ship(ocx.command);

DELETE FROM ocx.commands WHERE type IN ('mbus.Do', 'mbus.Ship');
