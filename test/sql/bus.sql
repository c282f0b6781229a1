-- The bus: ocx.publish and its errors, ocx.notify_mode, the worker's bus tick.
-- (Notifications themselves are received by test/node; psql would print
-- backend PIDs here.)
\set SHOW_CONTEXT never

-- publish: accepted at the limit, refused above it with OX310, never 22023
SELECT ocx.publish('bus_chat', '{"hello": "world"}');
SELECT length(jsonb_build_object('k', repeat('x', 7999 - 9))::text) AS at_limit;
SELECT ocx.publish('bus_chat', jsonb_build_object('k', repeat('x', 7999 - 9)));
SELECT ocx.publish('bus_chat', jsonb_build_object('k', repeat('x', 7999 - 8)));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.publish('bus_chat', jsonb_build_object('k', repeat('x', 100000)));
\echo :LAST_ERROR_SQLSTATE
-- bad channels and payloads
SELECT ocx.publish(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.publish('', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.publish(repeat('c', 64), '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.publish(repeat('c', 63), '{}');
SELECT ocx.publish('ocx_events', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.publish('ocx_commands', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.publish('bus_chat', NULL);
\echo :LAST_ERROR_SQLSTATE
-- a scalar payload is valid JSON too
SELECT ocx.publish('bus_chat', '42');
-- the code can be caught
DO $$
BEGIN
    PERFORM ocx.publish('bus_chat', jsonb_build_object('k', repeat('x', 9000)));
EXCEPTION WHEN SQLSTATE 'OX310' THEN
    RAISE NOTICE 'oversized payload caught: %', SQLERRM;
END $$;

-- the setting
SHOW ocx.notify_mode;
SET ocx.notify_mode = 'sometimes';
\echo :LAST_ERROR_SQLSTATE
SHOW ocx.notify_mode;

-- The worker's bus task announces up to the head of the readable log.  The
-- ocx worker runs the same task when it is loaded, so these checks run the
-- task themselves and wait for whichever of the two gets there.
CREATE FUNCTION bus_announced() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..500 LOOP
        PERFORM ocx._bus_tick();
        IF (SELECT b.events_position = (SELECT max(global_position) FROM ocx.events)
              FROM ocx.bus_state b) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END $$;
SELECT ocx.append('bustick_order-1', 0, '[{"type": "Placed", "data": {}}, {"type": "Paid", "data": {}}]');
SELECT ocx.append('bustick_user-1', 0, '{"type": "Registered", "data": {}}');
SELECT bus_announced() AS at_head;
SELECT events_txid = (SELECT txid FROM ocx.events ORDER BY global_position DESC LIMIT 1) AS txid_ok,
       notified_at IS NOT NULL AS notified
  FROM ocx.bus_state;
-- nothing new: the task has nothing to do and changes nothing
SELECT notified_at AS before FROM ocx.bus_state \gset
SELECT ocx._bus_tick() AS more;
SELECT notified_at = :'before' AS unchanged FROM ocx.bus_state;

-- more than one batch (1000 events)
SELECT ocx.append('bustick_bulk-1', 0,
    (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', '{}'::jsonb)) FROM generate_series(1, 2500)));
SELECT bus_announced() AS at_head;
SELECT ocx._bus_tick() AS more;

-- an event written by a transaction that is still open is not announced yet
BEGIN;
SELECT ocx.append('bustick_order-2', 0, '{"type": "Placed", "data": {}}');
SELECT ocx._bus_tick() AS more;
SELECT events_position < (SELECT max(global_position) FROM ocx.events) AS not_yet FROM ocx.bus_state;
COMMIT;
SELECT bus_announced() AS at_head;

-- off: the task does nothing in this session
SET ocx.notify_mode = off;
SELECT ocx.append('bustick_order-3', 0, '{"type": "Placed", "data": {}}');
SELECT ocx._bus_tick() AS more;
RESET ocx.notify_mode;
SELECT bus_announced() AS at_head;

-- immediate: appends notify from their own transaction (and still work)
SET ocx.notify_mode = immediate;
SELECT ocx.append('bustick_order-4', 0, '[{"type": "Placed", "data": {}}, {"type": "Paid", "data": {}}]');
SELECT ocx.append_event('bustick_order-4', 2, 'Shipped', '{}');
SELECT ocx.append('bustick_' || repeat('c', 80) || '-1', 0, '{"type": "LongCategory", "data": {}}');
RESET ocx.notify_mode;
SELECT ocx.stream_version('bustick_order-4') AS version;

SELECT bus_announced() AS at_head;
DROP FUNCTION bus_announced();

-- the internal functions are not for PUBLIC
SELECT has_function_privilege('public', 'ocx._bus_tick()', 'execute') AS public_tick;
