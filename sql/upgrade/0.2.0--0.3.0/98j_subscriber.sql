-- A logical subscriber's own log order (issue 15): ocx._local_log_order, ocx.set_logical_subscriber;
-- privilege_rules keeps set_logical_subscriber for the owner (stated in 99_privileges.sql).

CREATE FUNCTION ocx._local_log_order() RETURNS trigger
    LANGUAGE C AS 'MODULE_PATHNAME', 'ocx_local_log_order';
COMMENT ON FUNCTION ocx._local_log_order() IS
    'internal: on a logical subscriber (ocx.set_logical_subscriber), gives each event the apply transaction''s log txid, so that log order is the apply order';

CREATE FUNCTION ocx.set_logical_subscriber(enabled boolean DEFAULT true) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was boolean := EXISTS (SELECT FROM pg_catalog.pg_trigger
                            WHERE tgrelid = 'ocx.events'::regclass AND tgname = 'events_local_order');
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must not be null' USING ERRCODE = 'OX010';
    END IF;
    IF enabled AND NOT was THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
            RAISE EXCEPTION 'a Citus database cannot be an ocx logical subscriber'
                USING ERRCODE = 'OX704',
                      DETAIL = 'Citus moves shards with logical replication, which must keep the log txids it copies.';
        END IF;
        -- an append's first write is its stream row: register there, before the xid
        CREATE TRIGGER streams_local_order BEFORE INSERT OR UPDATE ON ocx.streams
            FOR EACH ROW EXECUTE FUNCTION ocx._local_log_order();
        CREATE TRIGGER events_local_order BEFORE INSERT ON ocx.events
            FOR EACH ROW EXECUTE FUNCTION ocx._local_log_order();
        -- REPLICA: they fire only in sessions with session_replication_role = replica
        ALTER TABLE ocx.streams ENABLE REPLICA TRIGGER streams_local_order;
        ALTER TABLE ocx.events ENABLE REPLICA TRIGGER events_local_order;
    ELSIF NOT enabled AND was THEN
        DROP TRIGGER streams_local_order ON ocx.streams;
        DROP TRIGGER events_local_order ON ocx.events;
    END IF;
    RETURN was;
END
$$;
COMMENT ON FUNCTION ocx.set_logical_subscriber(boolean) IS
    'make this database''s log order the order its logical-replication apply worker applies the publisher''s events in (true), or stop (false); returns the previous state (docs/scaling.md)';

