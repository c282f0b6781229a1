-- Issue 11, items 3, 5 and 6: poison events, upcasting in poll, and
-- subscriptions that move past the history they filter out.
--
-- read_all and read_category take a new last parameter upcast boolean
-- DEFAULT true (false: events as stored, to read past an event whose
-- upcaster fails, OX121).  A new parameter means DROP + CREATE: every call
-- written for 0.2.0 resolves to the new functions.  read_category's body
-- calls read_all, so it goes first and comes back after.  The worker reads
-- projection batches with upcast => false and upcasts each event it applies
-- (src/projection.c): a poison event is that projection's dead letter.
--
-- poll upcasts the events it returns; an empty poll moves the cursor of its
-- partitions to the last event below its horizon (the next one starts there);
-- ack after such an empty poll acknowledges nothing instead of OX303.  Final
-- text of both (30_claims.sql replaced ack before).

DROP FUNCTION ocx.read_category(text, ocx.cursor, integer);
DROP FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[]);

CREATE FUNCTION ocx.read_all("after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                             types text[] DEFAULT NULL, categories text[] DEFAULT NULL,
                             upcast boolean DEFAULT true)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN read_all.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN read_all.upcast IS FALSE THEN e.data
                ELSE ocx._upcast(e.type, e.schema_version, e.data) END, e.metadata, e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < ocx.log_horizon()
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(read_all."after"), '0'::xid8),
                                          COALESCE(ocx.global_position(read_all."after"), 0))
       AND (read_all.types IS NULL OR e.type = ANY (read_all.types))
       AND (read_all.categories IS NULL OR ocx.category(e.stream_id) = ANY (read_all.categories))
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(read_all.max_count);
END;
COMMENT ON FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[], boolean) IS
    'events after a cursor in gap-free log order (only transactions below the snapshot''s xmin); NULL max_count = no limit; upcast => false returns them as stored (schema_version and data as written), for events whose upcaster fails (OX121)';

CREATE FUNCTION ocx.read_category(category text, "after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                                  upcast boolean DEFAULT true)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx.read_all(read_category."after", read_category.max_count, NULL,
                               ARRAY[ocx._stream_arg(read_category.category)], read_category.upcast);
END;
COMMENT ON FUNCTION ocx.read_category(text, ocx.cursor, integer, boolean) IS
    'the events of one category (stream ids "category-...") in gap-free log order; upcast => false returns them as stored';

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

    -- upcast like every read (filters first: an event filtered out is never upcast)
    SELECT array_agg(x ORDER BY (x).txid, (x).global_position) INTO evs FROM (
        SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
               ocx._upcast_version(e.type, e.schema_version), e.time,
               ocx._upcast(e.type, e.schema_version, e.data), e.metadata, e.correlation_id,
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
    'up to max_count events after the acknowledged cursor, in gap-free log order, upcast, from the partitions this consumer holds; an empty poll moves their cursor to the last event below its horizon, so the next poll scans only what is new';

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
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.create_subscription.';
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
COMMENT ON FUNCTION ocx.ack(text, ocx.cursor, text) IS
    'acknowledge every event up to cursor that this consumer was given by poll (after an empty poll: nothing, the lease is renewed); refused (OX303, nothing written) once its lease ran out or when it holds no partition';
