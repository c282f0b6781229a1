
-- ---------------------------------------------------------------------------
-- One vocabulary (docs/reference.md, "Vocabulary"): the name rule of every
-- named object, define_subscription, and the deprecated 0.2.0 spellings kept
-- for one release.  The rules are checked over pg_proc by
-- test/pgtap/vocabulary.sql.
-- ---------------------------------------------------------------------------

-- The one name rule (src/names.c): every define_X calls it before it writes.
CREATE FUNCTION ocx._check_name(kind text, name text) RETURNS text
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_name';
COMMENT ON FUNCTION ocx._check_name(text, text) IS
    'internal: name when it follows the one name rule (1 to 63 bytes of letters, digits, "_", ".", ":", "-", starting with a letter or "_"), else raises OX500';

-- The body of define_subscription and of the deprecated create_subscription:
-- replace => true updates an existing subscription's filters, lease and
-- on_poison (its cursors stay); false raises OX302 as 0.2.0 did.  The
-- INSERT ... ON CONFLICT decides, so two sessions defining one name race
-- on the primary key, not on a check before it.
CREATE FUNCTION ocx._define_subscription(name text, types text[], categories text[], partitions integer,
                                         "after" ocx.cursor, lease interval, on_poison text,
                                         replace boolean)
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old ocx.subscriptions;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._check_name('subscription', name);
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
        VALUES (_define_subscription.name, _define_subscription.types, _define_subscription.categories,
                _define_subscription.partitions, _define_subscription.lease, _define_subscription.on_poison)
        ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF FOUND THEN
        INSERT INTO ocx.subscription_partitions (subscription, partition, acked_txid, acked_position)
            SELECT _define_subscription.name, p, coalesce(ocx.txid("after"), '0'::xid8),
                   coalesce(ocx.global_position("after"), 0)
              FROM generate_series(0, _define_subscription.partitions - 1) p;
        RETURN;
    END IF;
    IF NOT coalesce(replace, false) THEN
        RAISE EXCEPTION 'subscription "%" already exists', name
            USING ERRCODE = 'OX302',
                  HINT = 'Drop it first with ocx.drop_subscription, or use another name.';
    END IF;
    -- the row lock poll and ack take: no poll sees half a redefinition
    SELECT * INTO old FROM ocx.subscriptions s WHERE s.name = _define_subscription.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- dropped between the INSERT and here: define it again
        PERFORM ocx._define_subscription(name, types, categories, partitions, "after", lease, on_poison, replace);
        RETURN;
    END IF;
    IF old.partitions <> partitions THEN
        RAISE EXCEPTION 'subscription "%" has % partitions', name, old.partitions
            USING ERRCODE = 'OX301',
                  DETAIL = format('Got %s; the partitions of a subscription cannot change, its cursors are kept per partition.', partitions),
                  HINT = 'Drop it and define it again (its consumers start over from "after"), or define another subscription.';
    END IF;
    UPDATE ocx.subscriptions s
       SET types = _define_subscription.types, categories = _define_subscription.categories,
           lease = _define_subscription.lease, on_poison = _define_subscription.on_poison
     WHERE s.name = _define_subscription.name
       AND (s.types IS DISTINCT FROM _define_subscription.types
            OR s.categories IS DISTINCT FROM _define_subscription.categories
            OR s.lease IS DISTINCT FROM _define_subscription.lease
            OR s.on_poison IS DISTINCT FROM _define_subscription.on_poison);
END
$$;
COMMENT ON FUNCTION ocx._define_subscription(text, text[], text[], integer, ocx.cursor, interval, text, boolean) IS
    'internal: the body of ocx.define_subscription (replace => true) and of the deprecated ocx.create_subscription (false: OX302 when it exists)';

CREATE FUNCTION ocx.define_subscription(name text, types text[] DEFAULT NULL,
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
    PERFORM ocx._define_subscription(name, types, categories, partitions, "after", lease, on_poison, true);
END
$$;
COMMENT ON FUNCTION ocx.define_subscription(text, text[], text[], integer, ocx.cursor, interval, text) IS
    'define (or redefine, keeping its cursors) a durable subscription: optionally filtered by types and categories; partitions > 1 for consumer groups (fixed once created); after: where a new subscription starts; on_poison: as_stored or stop';

-- Deprecated in 0.3.0 (OX501), removed in a later release: docs/upgrading.md.
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
    RAISE WARNING 'ocx.create_subscription is deprecated'
        USING ERRCODE = 'OX501',
              DETAIL = 'It still creates the subscription (and fails with OX302 when it exists) until a later release removes it.',
              HINT = 'Use ocx.define_subscription, which creates or redefines; see docs/upgrading.md.';
    PERFORM ocx._define_subscription(name, types, categories, partitions, "after", lease, on_poison, false);
END
$$;
COMMENT ON FUNCTION ocx.create_subscription(text, text[], text[], integer, ocx.cursor, interval, text) IS
    'deprecated (WARNING OX501): ocx.define_subscription, but an existing subscription is OX302';
