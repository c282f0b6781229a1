-- Durable subscriptions: create, poll, ack, resume, filters, consumer groups,
-- leases, drop, and every error path.
\set SHOW_CONTEXT never

-- bad arguments
SELECT ocx.define_subscription(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription(repeat('s', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('subt_bad', partitions => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('subt_bad', partitions => 2000);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('subt_bad', lease => '0 seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('subt_bad', types => '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('subt_bad', categories => ARRAY['a', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS nothing_written FROM ocx.subscriptions WHERE name LIKE 'subt_bad%';
SELECT * FROM ocx.poll('subt_missing');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.ack('subt_missing', '1/1'::ocx.cursor);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_subscription('subt_missing');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_subscription('subt_missing', if_exists => true) AS dropped;

-- one consumer: poll returns events after the acknowledged cursor
SELECT ocx.define_subscription('subt_orders', categories => ARRAY['subt_order']);
SELECT ocx.create_subscription('subt_orders');  -- deprecated: WARNING OX501, then OX302 as in 0.2.0
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('subt_order-1', 0, '[{"type": "Placed", "data": {"n": 1}},
                                      {"type": "Paid", "data": {"n": 2}}]');
SELECT ocx.append('subt_other-1', 0, '{"type": "Noise", "data": {}}');
SELECT ocx.append('subt_order-2', 0, '[{"type": "Placed", "data": {"n": 3}},
                                      {"type": "Shipped", "data": {"n": 4}}]');
SELECT stream_id, stream_version, type FROM ocx.poll('subt_orders', 3);
-- not acknowledged: the same events again
SELECT stream_id, stream_version, type FROM ocx.poll('subt_orders', 3);
-- argument errors
SELECT * FROM ocx.poll('subt_orders', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.poll('subt_orders', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.poll('subt_orders', 1, consumer => '');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.ack('subt_orders', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.ack('subt_orders', '1/1'::ocx.cursor, consumer => 'nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS zero FROM ocx.poll('subt_orders', 0);
-- (a poll of 0 keeps what is in flight: the three events polled above)
SELECT delivered IS NOT NULL AS still_in_flight FROM ocx.subscription_status WHERE name = 'subt_orders';
-- acknowledge the second event: the poll resumes after it
SELECT "cursor" AS c2 FROM ocx.poll('subt_orders', 2) OFFSET 1 \gset
SELECT ocx.ack('subt_orders', :'c2');
SELECT stream_id, stream_version, type FROM ocx.poll('subt_orders', 10);
-- an old cursor does not move the acknowledgement back
SELECT ocx.ack('subt_orders', '1/1'::ocx.cursor);
SELECT stream_id, stream_version FROM ocx.poll('subt_orders', 10);
-- a cursor beyond what was delivered is capped at the delivered one
SELECT ocx.ack('subt_orders', '999999999/999999999'::ocx.cursor);
SELECT acked OPERATOR(ocx.=) delivered AS capped FROM ocx.subscription_status WHERE name = 'subt_orders';
SELECT ocx.append('subt_order-3', 0, '{"type": "Placed", "data": {"n": 5}}');
SELECT stream_id, stream_version FROM ocx.poll('subt_orders', 10);
SELECT "cursor" AS c5 FROM ocx.poll('subt_orders', 10) \gset
SELECT ocx.ack('subt_orders', :'c5');
SELECT count(*) AS drained FROM ocx.poll('subt_orders', 10);
SELECT name, partition, partitions, owner, acked OPERATOR(ocx.=) :'c5'::ocx.cursor AS acked_ok
  FROM ocx.subscription_status WHERE name = 'subt_orders';

-- type filter, and starting after a cursor
SELECT ocx.define_subscription('subt_placed', types => ARRAY['Placed'], categories => ARRAY['subt_order']);
SELECT stream_id, type FROM ocx.poll('subt_placed', 10);
SELECT ocx.define_subscription('subt_late', categories => ARRAY['subt_order'], "after" => :'c2');
SELECT stream_id, stream_version FROM ocx.poll('subt_late', 10);

-- consumer groups: four partitions, two consumers; each stream's events go
-- to exactly one of them, in order
SELECT ocx.define_subscription('subt_group', categories => ARRAY['subt_grp'], partitions => 4);
SELECT count(*) FROM ocx.poll('subt_group', 100, 'a');
SELECT count(*) FROM ocx.poll('subt_group', 100, 'b');
SELECT ocx.append('subt_grp-' || i, 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]')
  FROM generate_series(1, 8) i;
CREATE TEMP TABLE subt_got AS SELECT 'a' AS consumer, * FROM ocx.poll('subt_group', 100, 'a');
INSERT INTO subt_got SELECT 'b', * FROM ocx.poll('subt_group', 100, 'b');
SELECT count(*) AS delivered, count(DISTINCT global_position) AS distinct_events,
       count(DISTINCT consumer) AS consumers FROM subt_got;
SELECT count(*) AS streams_split_between_consumers
  FROM (SELECT stream_id FROM subt_got GROUP BY stream_id HAVING count(DISTINCT consumer) > 1) s;
SELECT bool_and(ocx.stream_partition(stream_id, 4) % 2 = CASE consumer WHEN 'a' THEN 0 ELSE 1 END)
       AS by_partition FROM subt_got;
SELECT partition, owner FROM ocx.subscription_status WHERE name = 'subt_group' ORDER BY partition;
-- a third consumer joins: it only takes partitions whose events are acknowledged
SELECT count(*) AS c_gets FROM ocx.poll('subt_group', 100, 'c');
SELECT partition, owner FROM ocx.subscription_status WHERE name = 'subt_group' ORDER BY partition;
SELECT ocx.ack('subt_group', (SELECT "cursor" FROM subt_got WHERE consumer = 'a' ORDER BY txid DESC, global_position DESC LIMIT 1), 'a');
SELECT ocx.ack('subt_group', (SELECT "cursor" FROM subt_got WHERE consumer = 'b' ORDER BY txid DESC, global_position DESC LIMIT 1), 'b');
SELECT count(*) AS a_gets FROM ocx.poll('subt_group', 100, 'a');
SELECT count(*) AS b_gets FROM ocx.poll('subt_group', 100, 'b');
SELECT count(*) AS c_gets FROM ocx.poll('subt_group', 100, 'c');
SELECT partition, owner FROM ocx.subscription_status WHERE name = 'subt_group' ORDER BY partition;
-- new events are split three ways now, still nothing twice
SELECT ocx.append('subt_grp-' || i, NULL, '{"type": "C", "data": {}}') FROM generate_series(1, 8) i;
TRUNCATE subt_got;
INSERT INTO subt_got SELECT 'a', * FROM ocx.poll('subt_group', 100, 'a');
INSERT INTO subt_got SELECT 'b', * FROM ocx.poll('subt_group', 100, 'b');
INSERT INTO subt_got SELECT 'c', * FROM ocx.poll('subt_group', 100, 'c');
SELECT count(*) AS delivered, count(DISTINCT global_position) AS distinct_events,
       count(DISTINCT consumer) AS consumers FROM subt_got;

-- a consumer whose lease runs out loses its partitions; its events go to
-- another consumer and its late ack is refused
SELECT ocx.define_subscription('subt_lease', categories => ARRAY['subt_lease'], lease => '200 milliseconds');
SELECT ocx.append('subt_lease-1', 0, '{"type": "A", "data": {}}');
-- (x's poll and y's first poll in one transaction: one now(), so the lease has not
-- run out whatever the speed of the machine)
BEGIN;
SELECT "cursor" AS lc FROM ocx.poll('subt_lease', 10, 'x') \gset
SELECT count(*) AS y_waits FROM ocx.poll('subt_lease', 10, 'y');
COMMIT;
-- wait (polling, 10 s deadline) until x's lease has run out: the next
-- statement's now() is past lease_until
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
    WHILE clock_timestamp() <= (SELECT max(p.lease_until) FROM ocx.subscription_partitions p
                                 WHERE p.subscription = 'subt_lease') LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the lease of subt_lease did not run out within 10 s';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
-- (y's take-over, x's refused ack and y's ack in one transaction: one now(),
-- so y's 200 ms lease cannot run out between its poll and its ack however
-- loaded the machine is)
BEGIN;
SELECT stream_id, stream_version FROM ocx.poll('subt_lease', 10, 'y');
SAVEPOINT x_ack;
SELECT ocx.ack('subt_lease', :'lc', 'x');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT x_ack;
SELECT ocx.ack('subt_lease', :'lc', 'y');
SELECT count(*) AS drained FROM ocx.poll('subt_lease', 10, 'y');
COMMIT;

-- drop
SELECT ocx.drop_subscription('subt_lease') AS dropped;
SELECT count(*) AS gone FROM ocx.subscription_partitions WHERE subscription = 'subt_lease';
SELECT ocx.drop_subscription('subt_orders'), ocx.drop_subscription('subt_placed'),
       ocx.drop_subscription('subt_late'), ocx.drop_subscription('subt_group');
