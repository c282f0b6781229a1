-- Issue 13 follow-up (audit): the name rule's last contradictions, and the
-- OX300 hints that still named the deprecated ocx.create_subscription.
--
-- ocx.subscriptions and ocx.saga_definitions had a CHECK of 1 to 200
-- characters on name, against the one name rule (1 to 63 bytes, src/names.c)
-- that define_subscription and define_saga apply (ocx._check_name, OX500)
-- before they write.  The CHECKs go, as no other named object restates the
-- rule in its table: existing rows are left as they are (a 0.2.0 name that
-- breaks the rule still polls, acks and drops, and a dump of it restores into
-- a fresh 0.3.0 install, which a stricter CHECK would refuse); only
-- redefining it under that name is OX500.  A WARNING lists such names.
ALTER TABLE ocx.subscriptions DROP CONSTRAINT IF EXISTS subscriptions_name_check;
ALTER TABLE ocx.saga_definitions DROP CONSTRAINT IF EXISTS saga_definitions_name_check;

DO $do$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s %s', kind, pg_catalog.quote_literal(n)), ', ' ORDER BY kind, n) INTO bad
      FROM (SELECT 'subscription' AS kind, s.name AS n FROM ocx.subscriptions s
            UNION ALL
            SELECT 'saga', d.name FROM ocx.saga_definitions d) x
     WHERE NOT (pg_catalog.octet_length(n) BETWEEN 1 AND 63
                AND n OPERATOR(pg_catalog.~) '^[A-Za-z_][A-Za-z0-9_.:-]*$');
    IF bad IS NOT NULL THEN
        RAISE WARNING 'ocx 0.3.0: these names break the one name rule: %', bad
            USING DETAIL = 'They keep working, but define_subscription and define_saga refuse them (OX500).',
                  HINT = 'Define each under a valid name (1 to 63 bytes: letters, digits, "_", ".", ":" or "-", starting with a letter or "_"), move its users, then drop the old one.';
    END IF;
END
$do$;

-- ocx.poll and ocx.ack: the OX300 hint names ocx.define_subscription.
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
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.define_subscription.';
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

    -- one horizon for the whole poll (every transaction below it has ended,
    -- so the log there is complete): the read and the move past what it
    -- filters out must agree
    horizon := ocx.log_horizon();
    SELECT q.acked_txid, q.acked_position INTO lo_txid, lo_pos FROM ocx.subscription_partitions q
     WHERE q.subscription = sub.name AND q.owner = poll.consumer
     ORDER BY q.acked_txid, q.acked_position LIMIT 1;

    -- the events as stored, through the one reader (filters first: an event
    -- filtered out is never upcast), after the lowest acknowledged cursor
    SELECT array_agg(x ORDER BY (x).txid, (x).global_position) INTO evs FROM (
        SELECT e.*
          FROM ocx._read_log(ocx.cursor(lo_txid, lo_pos), NULL, sub.types, sub.categories, false, horizon) e
          JOIN ocx.subscription_partitions p
            ON p.subscription = sub.name
           AND p.owner = poll.consumer
           AND p.partition = ocx.stream_partition(e.stream_id, sub.partitions)
         WHERE (e.txid, e.global_position) > (p.acked_txid, p.acked_position)
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
        SELECT ocx.txid(t), ocx.global_position(t) INTO end_txid, end_pos
          FROM ocx._log_tail(ocx.cursor(lo_txid, lo_pos), horizon) t;
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

CREATE OR REPLACE FUNCTION ocx.ack(name text, "cursor" ocx.cursor, consumer text DEFAULT 'default') RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub ocx.subscriptions;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._bus_name_arg('consumer name', consumer);
    IF "cursor" IS NULL THEN
        RAISE EXCEPTION 'cursor must not be null'
            USING ERRCODE = 'OX301', HINT = 'Acknowledge the "cursor" of the last event you processed.';
    END IF;
    SELECT * INTO sub FROM ocx.subscriptions s
     WHERE s.name = ack.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.define_subscription.';
    END IF;
    -- fenced: the lease is the consumer's until lease_until, renewed by each
    -- poll and ack.  Once it ran out, another consumer may have taken some of
    -- its partitions (and will get their events again), so an ack from it
    -- -- typically in the same transaction as the work it acknowledges --
    -- is refused as a whole, even for partitions nobody took yet.
    IF EXISTS (SELECT 1 FROM ocx.subscription_partitions p
                WHERE p.subscription = sub.name AND p.owner = ack.consumer
                  AND p.delivered_txid IS NOT NULL AND p.lease_until < now()) THEN
        RAISE EXCEPTION 'consumer "%" lost its lease on subscription "%"', consumer, name
            USING ERRCODE = 'OX303',
                  DETAIL = format('Its lease of %s ran out before this ack; another consumer may have taken its partitions.', sub.lease),
                  HINT = 'Nothing was acknowledged. Poll again: unacknowledged events are delivered again.';
    END IF;
    -- never past what was delivered: acknowledging unseen events would skip them
    UPDATE ocx.subscription_partitions p
       SET (acked_txid, acked_position) =
               (SELECT ocx.txid(g), ocx.global_position(g) FROM (
                    SELECT greatest(ocx.cursor(p.acked_txid, p.acked_position),
                                    least(ack."cursor",
                                          ocx.cursor(p.delivered_txid, p.delivered_position))) AS g) s),
           acked_at = now(),
           lease_until = now() + sub.lease
     WHERE p.subscription = sub.name AND p.owner = ack.consumer
       AND p.delivered_txid IS NOT NULL;
    IF NOT FOUND THEN
        -- nothing in flight (its last poll was empty): nothing to
        -- acknowledge, the lease is renewed
        UPDATE ocx.subscription_partitions p SET lease_until = now() + sub.lease
         WHERE p.subscription = sub.name AND p.owner = ack.consumer;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer "%" holds no polled partition of subscription "%"', consumer, name
            USING ERRCODE = 'OX303',
                  DETAIL = 'Its lease ran out and another consumer took its partitions, or it has not polled.',
                  HINT = 'Poll again: unacknowledged events are delivered again.';
    END IF;
END
$$;
