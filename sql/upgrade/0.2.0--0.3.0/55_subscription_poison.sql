-- Issue 11, item 3: a poison event is a dead letter of the subscription
-- that cannot read it.  poll upcasts the events it returns; when an upcaster
-- fails (OX121), the subscription's on_poison says what happens: as_stored
-- (the default) hands the event over as stored, marked in metadata.ocx_poison,
-- and records it in ocx.subscription_dead_letters; stop fails the poll.
-- create_subscription takes on_poison (a new parameter: DROP + CREATE); poll,
-- final text (52_poison.sql replaced it before).

ALTER TABLE ocx.subscriptions ADD COLUMN on_poison text NOT NULL DEFAULT 'as_stored';
ALTER TABLE ocx.subscriptions ADD CONSTRAINT subscriptions_on_poison_check
    CHECK (on_poison IN ('as_stored', 'stop'));
COMMENT ON COLUMN ocx.subscriptions.on_poison IS
    'what poll does with an event whose upcaster fails (OX121): as_stored hands it over as stored, marked, and records it in ocx.subscription_dead_letters; stop fails the poll';

-- Poison events of subscriptions (issue 11, item 3): one row per event a
-- subscription could not upcast, recorded by poll.
CREATE TABLE ocx.subscription_dead_letters (
    subscription    text NOT NULL REFERENCES ocx.subscriptions ON DELETE CASCADE,
    global_position bigint NOT NULL,
    txid            xid8 NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL,
    type            text NOT NULL,
    schema_version  integer NOT NULL,
    sqlstate        text NOT NULL,
    error           text NOT NULL,
    tenant_id       text,
    failed_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (subscription, global_position)
);
COMMENT ON TABLE ocx.subscription_dead_letters IS
    'events a subscription''s poll could not upcast (on_poison = as_stored: they were handed over as stored, marked with metadata.ocx_poison)';
SELECT pg_catalog.pg_extension_config_dump('ocx.subscription_dead_letters', '');
REVOKE ALL ON ocx.subscription_dead_letters FROM PUBLIC;
ALTER TABLE ocx.subscription_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.subscription_dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY subscription_dead_letters_tenant ON ocx.subscription_dead_letters FOR ALL
    USING (tenant_id IS NOT DISTINCT FROM
           (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
COMMENT ON POLICY subscription_dead_letters_tenant ON ocx.subscription_dead_letters IS
    'a session sees the poison events of its ocx.tenant only';

CREATE FUNCTION ocx._upcast_event(e ocx.event) RETURNS ocx.event
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    e.data := ocx._upcast(e.type, e.schema_version, e.data);
    e.schema_version := ocx._upcast_version(e.type, e.schema_version);
    RETURN e;
END
$$;
COMMENT ON FUNCTION ocx._upcast_event(ocx.event) IS
    'internal: the event upcast to its type''s current schema version';


DROP FUNCTION ocx.create_subscription(text, text[], text[], integer, ocx.cursor, interval);
CREATE FUNCTION ocx.create_subscription(name text, types text[] DEFAULT NULL,
                                        categories text[] DEFAULT NULL,
                                        partitions integer DEFAULT 1,
                                        "after" ocx.cursor DEFAULT NULL,
                                        lease interval DEFAULT '30 seconds',
                                        on_poison text DEFAULT 'as_stored')
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    IF partitions IS NULL OR partitions < 1 OR partitions > 1024 THEN
        RAISE EXCEPTION 'partitions must be between 1 and 1024'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(partitions::text, 'NULL')),
                  HINT = 'Use 1 for a single consumer, or at least as many partitions as consumers in the group.';
    END IF;
    IF lease IS NULL OR lease <= '0'::interval THEN
        RAISE EXCEPTION 'lease must be a positive interval'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(lease::text, 'NULL'));
    END IF;
    IF on_poison IS NULL OR on_poison NOT IN ('as_stored', 'stop') THEN
        RAISE EXCEPTION 'on_poison must be ''as_stored'' or ''stop'''
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(quote_literal(on_poison), 'NULL')),
                  HINT = 'as_stored hands an event whose upcaster fails over as stored and records it; stop fails the poll.';
    END IF;
    IF types IS NOT NULL AND (cardinality(types) = 0 OR array_ndims(types) > 1
                              OR EXISTS (SELECT FROM unnest(types) u WHERE u IS NULL)) THEN
        RAISE EXCEPTION 'types must be NULL (all types) or a non-empty one-dimensional array without NULLs'
            USING ERRCODE = 'OX301';
    END IF;
    IF categories IS NOT NULL AND (cardinality(categories) = 0 OR array_ndims(categories) > 1
                                   OR EXISTS (SELECT FROM unnest(categories) u WHERE u IS NULL)) THEN
        RAISE EXCEPTION 'categories must be NULL (all categories) or a non-empty one-dimensional array without NULLs'
            USING ERRCODE = 'OX301';
    END IF;
    INSERT INTO ocx.subscriptions AS s (name, types, categories, partitions, lease, on_poison)
        VALUES (create_subscription.name, create_subscription.types, create_subscription.categories,
                create_subscription.partitions, create_subscription.lease, create_subscription.on_poison)
        ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" already exists', name
            USING ERRCODE = 'OX302',
                  HINT = 'Drop it first with ocx.drop_subscription, or use another name.';
    END IF;
    INSERT INTO ocx.subscription_partitions (subscription, partition, acked_txid, acked_position)
        SELECT create_subscription.name, p, coalesce(ocx.txid("after"), '0'::xid8),
               coalesce(ocx.global_position("after"), 0)
          FROM generate_series(0, create_subscription.partitions - 1) p;
END
$$;
COMMENT ON FUNCTION ocx.create_subscription(text, text[], text[], integer, ocx.cursor, interval, text) IS
    'create a durable subscription (optionally filtered by types and categories; partitions > 1 for consumer groups; on_poison: as_stored or stop)';

CREATE OR REPLACE FUNCTION ocx.poll(name text, max_count integer DEFAULT 100, consumer text DEFAULT 'default')
    RETURNS SETOF ocx.event
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub     ocx.subscriptions;
    live    text[];
    nlive   integer;
    me      integer;
    evs     ocx.event[];
    tail    ocx.cursor;
    horizon xid8;
    lo_txid xid8;
    lo_pos  bigint;
    end_txid xid8;
    end_pos bigint;
    ev      ocx.event;
    msg     text;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._bus_name_arg('consumer name', consumer);
    IF max_count IS NULL OR max_count < 0 OR max_count > 100000 THEN
        RAISE EXCEPTION 'max_count must be between 0 and 100000'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(max_count::text, 'NULL'));
    END IF;
    SELECT * INTO sub FROM ocx.subscriptions s
     WHERE s.name = poll.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.create_subscription.';
    END IF;

    -- forget consumers gone for long (their partitions were taken over long ago)
    DELETE FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name AND c.last_seen < now() - sub.lease * 10;
    INSERT INTO ocx.subscription_consumers AS c (subscription, consumer, last_seen)
        VALUES (sub.name, poll.consumer, now())
        ON CONFLICT ON CONSTRAINT subscription_consumers_pkey DO UPDATE SET last_seen = excluded.last_seen;
    SELECT array_agg(c.consumer ORDER BY c.consumer) INTO live
      FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name
       AND c.last_seen > now() - sub.lease;
    nlive := cardinality(live);
    me := array_position(live, poll.consumer) - 1;

    -- give back partitions that now belong to another consumer, once acknowledged
    UPDATE ocx.subscription_partitions p SET owner = NULL, lease_until = NULL, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name AND p.owner = poll.consumer
       AND p.partition % nlive <> me
       AND (p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));
    -- take this consumer's share when it is free, its holder's lease ran out,
    -- or its holder has nothing in flight
    UPDATE ocx.subscription_partitions p SET owner = poll.consumer, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name
       AND p.partition % nlive = me
       AND p.owner IS DISTINCT FROM poll.consumer
       AND (p.owner IS NULL OR p.lease_until < now()
            OR p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));

    -- one horizon for the whole poll: the snapshot's xmin (every transaction
    -- below it has ended, so the log there is complete)
    horizon := ocx.log_horizon();
    SELECT q.acked_txid, q.acked_position INTO lo_txid, lo_pos FROM ocx.subscription_partitions q
     WHERE q.subscription = sub.name AND q.owner = poll.consumer
     ORDER BY q.acked_txid, q.acked_position LIMIT 1;

    -- the events as stored (filters first: an event filtered out is never upcast)
    SELECT array_agg(x ORDER BY (x).txid, (x).global_position) INTO evs FROM (
        SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
               e.schema_version, e.time, e.data, e.metadata, e.correlation_id,
               e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
          FROM ocx.events e
          JOIN ocx.subscription_partitions p
            ON p.subscription = sub.name
           AND p.owner = poll.consumer
           AND p.partition = ocx.stream_partition(e.stream_id, sub.partitions)
         WHERE e.txid < horizon
           AND (e.txid, e.global_position) > (p.acked_txid, p.acked_position)
           AND (e.txid, e.global_position) > (lo_txid, lo_pos)
           AND (sub.types IS NULL OR e.type = ANY (sub.types))
           AND (sub.categories IS NULL OR ocx.category(e.stream_id) = ANY (sub.categories))
         ORDER BY e.txid, e.global_position
         LIMIT max_count) x;

    -- upcast like every read; a poison event (its upcaster fails, OX121)
    -- fails the poll (on_poison = stop) or is handed over as stored, marked
    -- in metadata.ocx_poison, and recorded as the subscription's dead letter
    IF evs IS NOT NULL THEN
        BEGIN
            SELECT array_agg(ocx._upcast_event(evs[i]) ORDER BY i) INTO evs
              FROM pg_catalog.generate_subscripts(evs, 1) i;
        EXCEPTION WHEN SQLSTATE 'OX121' THEN
            IF sub.on_poison = 'stop' THEN
                RAISE;
            END IF;
            FOR i IN 1 .. cardinality(evs) LOOP
                BEGIN
                    evs[i] := ocx._upcast_event(evs[i]);
                EXCEPTION WHEN SQLSTATE 'OX121' THEN
                    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
                    ev := evs[i];
                    INSERT INTO ocx.subscription_dead_letters AS d
                        (subscription, global_position, txid, stream_id, stream_version, event_id,
                         type, schema_version, sqlstate, error, tenant_id)
                        VALUES (sub.name, ev.global_position, ev.txid, ev.stream_id, ev.stream_version,
                                ev.event_id, ev.type, ev.schema_version, 'OX121', msg, ev.tenant_id)
                        ON CONFLICT ON CONSTRAINT subscription_dead_letters_pkey DO NOTHING;
                    ev.metadata := ev.metadata || jsonb_build_object('ocx_poison',
                        jsonb_build_object('sqlstate', 'OX121', 'error', msg));
                    evs[i] := ev;
                END;
            END LOOP;
        END;
    END IF;

    -- nothing for this consumer up to the horizon: the scan went through
    -- the whole log below it, so its partitions move to the last event there
    -- and the next poll starts after it (a subscription never rescans the
    -- history it filters out; nothing is in flight to ack)
    IF evs IS NULL AND max_count > 0 AND lo_txid IS NOT NULL THEN
        SELECT e.txid, e.global_position INTO end_txid, end_pos FROM ocx.events e
         WHERE e.txid < horizon AND (e.txid, e.global_position) > (lo_txid, lo_pos)
         ORDER BY e.txid DESC, e.global_position DESC LIMIT 1;
    END IF;

    IF evs IS NOT NULL THEN
        tail := (evs[cardinality(evs)])."cursor";
    END IF;
    -- what is in flight now: everything up to the last event handed out (a
    -- poll of 0 events only renews the lease)
    UPDATE ocx.subscription_partitions p
       SET lease_until = now() + sub.lease,
           (delivered_txid, delivered_position) =
               (SELECT ocx.txid(g), ocx.global_position(g) FROM (
                    SELECT greatest(tail, ocx.cursor(p.acked_txid, p.acked_position)) AS g
                     WHERE tail IS NOT NULL) s)
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count > 0;
    UPDATE ocx.subscription_partitions p SET lease_until = now() + sub.lease
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count = 0;
    IF end_txid IS NOT NULL THEN
        UPDATE ocx.subscription_partitions p SET acked_txid = end_txid, acked_position = end_pos
         WHERE p.subscription = sub.name AND p.owner = poll.consumer
           AND (p.acked_txid, p.acked_position) < (end_txid, end_pos);
    END IF;

    IF evs IS NOT NULL THEN
        RETURN QUERY SELECT * FROM unnest(evs);
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.poll(text, integer, text) IS
    'up to max_count events after the acknowledged cursor, in gap-free log order, upcast (a poison event as stored, marked, per on_poison), from the partitions this consumer holds; an empty poll moves their cursor to the last event below its horizon, so the next poll scans only what is new';
