-- seal12 (issue 12): the sealing task reads through the one reader.
-- ocx._log_bounds is the one range rule (horizon, start after a cursor) of
-- _read_log, _log_tail and the new reader over the stored rows,
-- ocx._read_log_stored (sql/parts/22_reader.sql, 84_integrity.sql).

-- The one range rule: where a read of the log starts and where it stops.
-- below: the horizon given (one a consumer took for its whole pass) or
-- ocx.log_horizon(); (after_txid, after_position): the cursor's, or (0, 0)
-- from the beginning.  Every reader of the log (_read_log, _log_tail, the
-- stored-row reader ocx._read_log_stored) keeps the events with
--     txid < below AND (txid, global_position) > (after_txid, after_position)
-- taking both from this function in uncorrelated subqueries: each is an
-- InitPlan, evaluated once per read (the horizon never changes within a
-- read), and the row comparison with it is an index condition on
-- events_log_order_idx.
CREATE FUNCTION ocx._log_bounds("after" ocx.cursor, horizon xid8)
    RETURNS TABLE (below xid8, after_txid xid8, after_position bigint)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT COALESCE(_log_bounds.horizon, ocx.log_horizon()),
           COALESCE(ocx.txid(_log_bounds."after"), '0'::xid8),
           COALESCE(ocx.global_position(_log_bounds."after"), 0);
END;
COMMENT ON FUNCTION ocx._log_bounds(ocx.cursor, xid8) IS
    'internal: the one range rule of the log readers: the horizon (given, or ocx.log_horizon()) and the log order position after a cursor ((0, 0) for NULL)';

-- The cursor of the last event below the horizon after a cursor (NULL when
-- there is none): where a consumer that found nothing it wants moves to.
CREATE OR REPLACE FUNCTION ocx._log_tail("after" ocx.cursor, horizon xid8 DEFAULT NULL) RETURNS ocx.cursor
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < (SELECT b.below FROM ocx._log_bounds(NULL, _log_tail.horizon) b)
       AND (e.txid, e.global_position) > (SELECT b.after_txid, b.after_position
                                            FROM ocx._log_bounds(_log_tail."after", _log_tail.horizon) b)
     ORDER BY e.txid DESC, e.global_position DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx._log_tail(ocx.cursor, xid8) IS
    'internal: the cursor of the last event below the horizon (given, or ocx.log_horizon()) after a cursor, NULL when there is none';

-- The one reader over the stored rows (sql/parts/22_reader.sql): the events
-- after a cursor in log order, below the horizon (given, or
-- ocx.log_horizon() once), as they are stored: their cursor and hash, never
-- revealed or upcast.  What the sealing task reads (src/reader.c,
-- OcxReadLogStored): a seal covers the stored rows.  Here and not in
-- 22_reader.sql because the hash column is this part's.
CREATE FUNCTION ocx._read_log_stored("after" ocx.cursor, max_count integer, horizon xid8 DEFAULT NULL)
    RETURNS TABLE (txid xid8, global_position bigint, hash bytea)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.txid, e.global_position, e.hash
      FROM ocx.events e
     WHERE e.txid < (SELECT b.below FROM ocx._log_bounds(NULL, _read_log_stored.horizon) b)
       AND (e.txid, e.global_position) > (SELECT b.after_txid, b.after_position
                                            FROM ocx._log_bounds(_read_log_stored."after", _read_log_stored.horizon) b)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log_stored.max_count);
END;
COMMENT ON FUNCTION ocx._read_log_stored(ocx.cursor, integer, xid8) IS
    'internal: the one reader over the stored rows: the cursor and hash of the events after a cursor in log order, below the horizon (given, or ocx.log_horizon() once), as stored (what a seal covers)';
