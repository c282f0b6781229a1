-- Issue 12 follow-up: the saga task's idle round is a bystander (src/saga.c).
-- The idle round (src/saga.c, at most every 10 s while no saga is running
-- or compensating): only moves the cursor to the end of the readable log,
-- so that a saga started later never sees events from before it.  It sends
-- nothing, so the worker runs it as a bystander (src/appenders.c): its xid
-- holds back no reader.  Should a saga have become active meanwhile, it
-- does nothing at all: the next full round takes it.
CREATE FUNCTION ocx._saga_idle_round() RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cur     ocx.saga_cursor;
    horizon xid8;
    last_tx xid8;
    last_gp bigint;
BEGIN
    SELECT * INTO cur FROM ocx.saga_cursor c FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ocx.saga_cursor AS c (id) VALUES (true) ON CONFLICT ON CONSTRAINT saga_cursor_pkey DO NOTHING;
        SELECT * INTO STRICT cur FROM ocx.saga_cursor c FOR UPDATE;
    END IF;
    -- the horizon before the look at the instances, as in ocx._saga_run: a
    -- saga that commits after the look gets its events above the horizon
    horizon := ocx.log_horizon();
    IF EXISTS (SELECT 1 FROM ocx.saga_instances x WHERE x.state IN ('running', 'compensating')) THEN
        RETURN false;
    END IF;
    SELECT ocx.txid(t), ocx.global_position(t) INTO last_tx, last_gp
      FROM ocx._log_tail(ocx.cursor(cur.txid, cur.global_position), horizon) t;
    IF last_tx IS NOT NULL THEN
        UPDATE ocx.saga_cursor c SET txid = last_tx, global_position = last_gp, updated_at = now();
    END IF;
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_idle_round() IS
    'internal: the saga task''s round while no saga is active: moves the cursor to the end of the readable log and sends nothing (false, doing nothing, when a saga has become active)';
REVOKE ALL ON FUNCTION ocx._saga_idle_round() FROM PUBLIC;
