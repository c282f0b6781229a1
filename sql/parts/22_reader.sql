-- ---------------------------------------------------------------------------
-- The one reader of the log (issue 12).
--
-- Every consumer reads the log through these definitions: read_all and
-- read_category, subscription poll, the saga task, the bus wake-up and the
-- worker's projection batches (src/reader.c runs ocx._read_log), and the
-- lag gauges count with the same filter.  One stored position (an
-- ocx.cursor: log order is (txid, global_position)), one horizon rule
-- (ocx.log_horizon(), evaluated once per read), one category rule
-- (ocx._log_selects, ocx.category) and one upcasting step (ocx._upcast, in
-- C over the cached definitions).
--
-- They are SQL functions with pre-parsed bodies, not a C set-returning
-- function: the planner inlines them into the caller's query, so a read
-- costs what the indexed SELECT on ocx.events costs (a C SRF measured 2.0x
-- slower paging and 6.6x slower under count(*); docs/architecture.md, "The
-- one reader").
-- ---------------------------------------------------------------------------

-- The one filter rule: does a consumer with these types and categories
-- (NULL: all) select an event?  Inlined into every caller.
CREATE FUNCTION ocx._log_selects(type text, stream_id text, types text[], categories text[])
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (_log_selects.types IS NULL OR _log_selects.type = ANY (_log_selects.types))
       AND (_log_selects.categories IS NULL
            OR ocx.category(_log_selects.stream_id) = ANY (_log_selects.categories));
COMMENT ON FUNCTION ocx._log_selects(text, text, text[], text[]) IS
    'internal: whether a reader with these types and categories (NULL: all) selects an event of this type and stream';

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

-- The one reader: the events after a cursor, in log order, below the
-- horizon (ocx.log_horizon() once for the read, or the horizon a consumer
-- took for its whole pass), that the filter selects, upcast or as stored.
-- Filters apply before upcasting: an event left out is never upcast.
-- Two forms: over the live log, and over the live log and the archive
-- (include_archived, ocx.archive, 88p_partitioned_log.sql).
CREATE FUNCTION ocx._read_log_live("after" ocx.cursor, max_count integer, types text[], categories text[],
                                   upcast boolean, horizon xid8, after_time timestamptz)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN _read_log_live.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN _read_log_live.upcast IS FALSE THEN ocx._reveal(e.type, e.data, e.event_id)
                ELSE ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) END,
           ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < (SELECT b.below FROM ocx._log_bounds(NULL, _read_log_live.horizon) b)
       AND (e.txid, e.global_position) > (SELECT b.after_txid, b.after_position
                                            FROM ocx._log_bounds(CASE WHEN _read_log_live.after_time IS NULL THEN _read_log_live."after"
                                                                      ELSE ocx._read_start(_read_log_live."after", _read_log_live.after_time) END,
                                                                 _read_log_live.horizon) b)
       AND (_read_log_live.after_time IS NULL OR e.time >= _read_log_live.after_time)
       AND ocx._log_selects(e.type, e.stream_id, _read_log_live.types, _read_log_live.categories)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log_live.max_count);
END;
COMMENT ON FUNCTION ocx._read_log_live(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader over the live log only (what ocx._read_log with include_archived false plans)';

CREATE FUNCTION ocx._read_log_archived("after" ocx.cursor, max_count integer, types text[], categories text[],
                                       upcast boolean, horizon xid8, after_time timestamptz)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN _read_log_archived.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN _read_log_archived.upcast IS FALSE THEN ocx._reveal(e.type, e.data, e.event_id)
                ELSE ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) END,
           ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx._log_events(true) e
     WHERE e.txid < (SELECT b.below FROM ocx._log_bounds(NULL, _read_log_archived.horizon) b)
       AND (e.txid, e.global_position) > (SELECT b.after_txid, b.after_position
                                            FROM ocx._log_bounds(CASE WHEN _read_log_archived.after_time IS NULL THEN _read_log_archived."after"
                                                                      ELSE ocx._read_start(_read_log_archived."after", _read_log_archived.after_time) END,
                                                                 _read_log_archived.horizon) b)
       AND (_read_log_archived.after_time IS NULL OR e.time >= _read_log_archived.after_time)
       AND ocx._log_selects(e.type, e.stream_id, _read_log_archived.types, _read_log_archived.categories)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log_archived.max_count);
END;
COMMENT ON FUNCTION ocx._read_log_archived(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader over the live log and the archive (what ocx._read_log with include_archived true plans)';

-- With a constant include_archived the planner calls the form it selects
-- instead (ocx._read_form_support, src/livereads.c); this body runs
-- otherwise (a generic plan's parameter): both forms, one selected by a
-- constant column, so the parameter becomes a one-time filter.
CREATE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[], categories text[],
                              upcast boolean, horizon xid8, after_time timestamptz, include_archived boolean)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
    SUPPORT ocx._read_form_support
BEGIN ATOMIC
    SELECT s.global_position, s.stream_id, s.stream_version, s.event_id, s.source, s.type,
           s.schema_version, s.time, s.data, s.metadata, s.correlation_id, s.causation_id,
           s.tenant_id, s.txid, s.cursor
      FROM ((SELECT false AS archived, l.*
               FROM ocx._read_log_live(_read_log."after", _read_log.max_count, _read_log.types,
                                       _read_log.categories, _read_log.upcast, _read_log.horizon,
                                       _read_log.after_time) l)
            UNION ALL
            (SELECT true AS archived, a.*
               FROM ocx._read_log_archived(_read_log."after", _read_log.max_count, _read_log.types,
                                           _read_log.categories, _read_log.upcast, _read_log.horizon,
                                           _read_log.after_time) a)) s
     WHERE s.archived = COALESCE(_read_log.include_archived, false);
END;
COMMENT ON FUNCTION ocx._read_log(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz, boolean) IS
    'internal: the one reader of the log (include_archived: the archive too, ocx.archive): events after a cursor in gap-free log order, below the horizon (given, or ocx.log_horizon() once), selected by types and categories, upcast or as stored; after_time: only events whose time is >= it, started through the time map (ocx._read_start)';

-- The one reader over the live log: what every consumer runs (src/reader.c).
CREATE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[], categories text[],
                              upcast boolean, horizon xid8 DEFAULT NULL, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx._read_log(_read_log."after", _read_log.max_count, _read_log.types, _read_log.categories,
                                _read_log.upcast, _read_log.horizon, _read_log.after_time, false);
END;
COMMENT ON FUNCTION ocx._read_log(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader of the live log: events after a cursor in gap-free log order, below the horizon (given, or ocx.log_horizon() once), selected by types and categories, upcast or as stored; after_time: only events whose time is >= it, started through the time map (ocx._read_start)';

-- The cursor of the last event below the horizon after a cursor (NULL when
-- there is none): where a consumer that found nothing it wants moves to.
CREATE FUNCTION ocx._log_tail("after" ocx.cursor, horizon xid8 DEFAULT NULL) RETURNS ocx.cursor
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

CREATE FUNCTION ocx.read_all("after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                             types text[] DEFAULT NULL, categories text[] DEFAULT NULL,
                             upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL,
                             include_archived boolean DEFAULT false)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx._read_log(read_all."after", read_all.max_count, read_all.types,
                                read_all.categories, read_all.upcast, NULL, read_all.after_time,
                                COALESCE(read_all.include_archived, false));
END;
COMMENT ON FUNCTION ocx.read_all(ocx.cursor, integer, text[], text[], boolean, timestamptz, boolean) IS
    'events after a cursor in gap-free log order (only transactions below the snapshot''s xmin); NULL max_count = no limit; upcast => false returns them as stored (schema_version and data as written), for events whose upcaster fails (OX121); after_time: only events whose time is >= it, found through the time map without scanning the log; include_archived: the archived partitions too (ocx.archive)';

CREATE FUNCTION ocx.read_category(category text, "after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000,
                                  upcast boolean DEFAULT true, after_time timestamptz DEFAULT NULL,
                                  include_archived boolean DEFAULT false)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM ocx.read_all(read_category."after", read_category.max_count, NULL,
                               ARRAY[ocx._stream_arg(read_category.category)], read_category.upcast,
                               read_category.after_time, read_category.include_archived);
END;
COMMENT ON FUNCTION ocx.read_category(text, ocx.cursor, integer, boolean, timestamptz, boolean) IS
    'the events of one category (stream ids "category-...") in gap-free log order; upcast => false returns them as stored; after_time: only events whose time is >= it; include_archived: the archived partitions too (ocx.archive)';
