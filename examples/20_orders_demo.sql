-- make demo, part 2: the orders domain (examples/orders.sql) end to end.
-- Two orders go through: one is paid and confirmed; one fails at payment and
-- its saga compensates (inventory released, then order cancelled).
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
\echo '== Orders: OrderPlaced -> reserve inventory -> charge payment -> confirm'
\echo '   (loading the module examples/orders.sql)'
\o /dev/null
\ir orders.sql
\o

INSERT INTO orders.stock VALUES ('widget', 10, 0), ('gadget', 2, 0);
INSERT INTO orders.wallets VALUES ('carol', 100), ('dave', 5);

\echo
\echo '-- carol orders 3 widgets for 60 (she can pay); dave orders 2 gadgets for 40 (he cannot)'
SELECT orders.place_order('1001', 'carol', 'widget', 3, 60) AS carol_saga;
SELECT orders.place_order('1002', 'dave', 'gadget', 2, 40) AS dave_saga;

-- wait (at most 30 s) for the worker to finish both sagas and project the events
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) FROM ocx.saga_instances
                    WHERE saga_name = 'order_fulfillment' AND state IN ('completed', 'compensated', 'failed')) = 2
              AND (SELECT lag_events FROM ocx.projection_status WHERE name = 'orders.order_view') = 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
    IF (SELECT count(*) FROM ocx.saga_instances
         WHERE saga_name = 'order_fulfillment' AND state IN ('completed', 'compensated', 'failed')) < 2 THEN
        RAISE WARNING 'the ocx worker has not finished the sagas after 30 seconds'
            USING HINT = 'Check that shared_preload_libraries includes ocx and see SELECT * FROM ocx.worker_status().';
    END IF;
END $$;

\echo
\echo '-- the event log of both orders (the saga id is every event''s correlation id)'
SELECT global_position AS pos, stream_id, type, left(correlation_id::text, 8) AS saga, data->>'reason' AS reason
  FROM ocx.events WHERE stream_id IN ('order-1001', 'order-1002') ORDER BY txid, global_position;

\echo '-- the saga timeline'
SELECT left(s.saga_id::text, 8) AS saga, i.input->>'order_id' AS order_id, s.step_name, s.action, s.state,
       coalesce(s.event_type, c.type) AS "event / command"
  FROM ocx.saga_steps s
  JOIN ocx.saga_instances i USING (saga_id)
  LEFT JOIN ocx.commands c ON c.command_id = s.command_id AND s.event_type IS NULL
 WHERE i.saga_name = 'order_fulfillment'
 ORDER BY i.input->>'order_id', s.id;

\echo '-- ocx.saga_status'
SELECT left(saga_id::text, 8) AS saga, saga_name, state, steps, transitions, error
  FROM ocx.saga_status WHERE saga_name = 'order_fulfillment' ORDER BY started_at;

\echo '-- read models: the orders projection, stock and wallets'
SELECT order_id, customer, sku, qty, amount, status, array_to_string(history, ' > ') AS history
  FROM orders.order_view ORDER BY order_id;
SELECT * FROM orders.stock ORDER BY sku;
SELECT * FROM orders.wallets ORDER BY customer;
