
-- 54_arrays.sql (issue 11, found by the fuzz test): two-dimensional filter
-- arrays get the subscription SQLSTATE, not PostgreSQL's 0A000.  The other two
-- functions with such a check (claim_commands, _define_projection) are in 90_security.sql.

CREATE OR REPLACE FUNCTION ocx.create_subscription(name text, types text[] DEFAULT NULL,
                                        categories text[] DEFAULT NULL,
                                        partitions integer DEFAULT 1,
                                        "after" ocx.cursor DEFAULT NULL,
                                        lease interval DEFAULT '30 seconds')
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
    INSERT INTO ocx.subscriptions AS s (name, types, categories, partitions, lease)
        VALUES (create_subscription.name, create_subscription.types, create_subscription.categories,
                create_subscription.partitions, create_subscription.lease)
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
COMMENT ON FUNCTION ocx.create_subscription(text, text[], text[], integer, ocx.cursor, interval) IS
    'create a durable subscription (optionally filtered by types and categories; partitions > 1 for consumer groups)';


