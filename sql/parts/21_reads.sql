-- ---------------------------------------------------------------------------
-- Reads users ask for (issue 13): read_stream in both directions with a type
-- filter, the last event of a stream, read_all / read_category from a time,
-- and the expected-version constant "the stream exists, any version".
--
-- Each form of read_stream (over the live log, and with the archive: see
-- below) is one SQL function with two branches, forward and backward,
-- each a plain indexed SELECT with its own ORDER BY and LIMIT, under a
-- UNION ALL that labels each branch with a constant column (backward false
-- or true); the direction argument selects by that column outside the
-- branches (ocx._direction_arg is IMMUTABLE).  With a constant direction the
-- selection folds to a constant for each branch and the planner removes the
-- other branch before planning it (a branch gated inside, by its own WHERE,
-- stayed in the plan as a Limit and a Sort over an empty Result, set up on
-- every read: about 10 us); with a parameter the other branch is a one-time
-- filter that never runs.  So each direction walks the (stream_id,
-- stream_version) index its own way and the function inlines into the
-- caller's query like the plain SELECT.
-- ---------------------------------------------------------------------------

-- The expected version "the stream exists, at any version" for ocx.append,
-- append_event and append_cloudevents (beside NULL = any, 0 = the stream must
-- not exist yet, N = exactly N).  The append refuses it with OX001 when the
-- stream does not exist.  The value is -1; use the function, not the number.
CREATE FUNCTION ocx.stream_exists() RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN -1;
COMMENT ON FUNCTION ocx.stream_exists() IS
    'the expected version "the stream exists, any version" (-1) for ocx.append and its variants';

CREATE FUNCTION ocx._direction_arg(direction text) RETURNS boolean
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_direction_arg';
COMMENT ON FUNCTION ocx._direction_arg(text) IS
    'internal: true for ''backward'', false for ''forward'' or NULL, else raises OX010';

-- read_stream's two forms: over the live log (what a read with
-- include_archived false or NULL plans), and over the live log and the
-- archive (include_archived true); ocx._read_form_support (src/livereads.c)
-- replaces a call with a constant include_archived by the form it selects.
CREATE FUNCTION ocx._read_stream_live(stream_id text, from_version bigint, max_count integer,
                                      direction text, types text[])
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.global_position, r.stream_id, r.stream_version, r.event_id, r.source, r.type,
           r.schema_version, r.time, r.data, r.metadata, r.correlation_id, r.causation_id,
           r.tenant_id, r.txid, r.cursor
      FROM ((SELECT false AS backward, f.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx.events e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_live.stream_id)
                        AND e.stream_version >= ocx._version_arg(_read_stream_live.from_version)
                        AND e.stream_version > ocx._hidden_through(_read_stream_live.stream_id)
                        AND (_read_stream_live.types IS NULL OR e.type = ANY (_read_stream_live.types))
                      ORDER BY e.stream_version
                      LIMIT ocx._count_arg(_read_stream_live.max_count)) f)
            UNION ALL
            (SELECT true AS backward, b.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx.events e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_live.stream_id)
                        AND e.stream_version <= CASE WHEN _read_stream_live.from_version IS NULL THEN 9223372036854775807
                                                     ELSE ocx._version_arg(_read_stream_live.from_version) END
                        AND e.stream_version > ocx._hidden_through(_read_stream_live.stream_id)
                        AND (_read_stream_live.types IS NULL OR e.type = ANY (_read_stream_live.types))
                      ORDER BY e.stream_version DESC
                      LIMIT ocx._count_arg(_read_stream_live.max_count)) b)) r
     WHERE r.backward = ocx._direction_arg(_read_stream_live.direction);
END;
COMMENT ON FUNCTION ocx._read_stream_live(text, bigint, integer, text, text[]) IS
    'internal: ocx.read_stream over the live log only (what a read with include_archived false plans)';

CREATE FUNCTION ocx._read_stream_archived(stream_id text, from_version bigint, max_count integer,
                                          direction text, types text[])
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.global_position, r.stream_id, r.stream_version, r.event_id, r.source, r.type,
           r.schema_version, r.time, r.data, r.metadata, r.correlation_id, r.causation_id,
           r.tenant_id, r.txid, r.cursor
      FROM ((SELECT false AS backward, f.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx._log_events(true) e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_archived.stream_id)
                        AND e.stream_version >= ocx._version_arg(_read_stream_archived.from_version)
                        AND e.stream_version > ocx._hidden_through(_read_stream_archived.stream_id)
                        AND (_read_stream_archived.types IS NULL OR e.type = ANY (_read_stream_archived.types))
                      ORDER BY e.stream_version
                      LIMIT ocx._count_arg(_read_stream_archived.max_count)) f)
            UNION ALL
            (SELECT true AS backward, b.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx._log_events(true) e
                      WHERE e.stream_id = ocx._stream_arg(_read_stream_archived.stream_id)
                        AND e.stream_version <= CASE WHEN _read_stream_archived.from_version IS NULL THEN 9223372036854775807
                                                     ELSE ocx._version_arg(_read_stream_archived.from_version) END
                        AND e.stream_version > ocx._hidden_through(_read_stream_archived.stream_id)
                        AND (_read_stream_archived.types IS NULL OR e.type = ANY (_read_stream_archived.types))
                      ORDER BY e.stream_version DESC
                      LIMIT ocx._count_arg(_read_stream_archived.max_count)) b)) r
     WHERE r.backward = ocx._direction_arg(_read_stream_archived.direction);
END;
COMMENT ON FUNCTION ocx._read_stream_archived(text, bigint, integer, text, text[]) IS
    'internal: ocx.read_stream over the live log and the archive (what a read with include_archived true plans)';

-- With a constant include_archived the planner calls the form it selects
-- instead (ocx._read_form_support); this body runs otherwise (a generic
-- plan's parameter): both forms, one selected by a constant column as
-- direction is, so the parameter becomes a one-time filter.
CREATE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT NULL, max_count integer DEFAULT NULL,
                                direction text DEFAULT 'forward', types text[] DEFAULT NULL,
                                include_archived boolean DEFAULT false)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
    SUPPORT ocx._read_form_support
BEGIN ATOMIC
    SELECT s.global_position, s.stream_id, s.stream_version, s.event_id, s.source, s.type,
           s.schema_version, s.time, s.data, s.metadata, s.correlation_id, s.causation_id,
           s.tenant_id, s.txid, s.cursor
      FROM ((SELECT false AS archived, l.*
               FROM ocx._read_stream_live(read_stream.stream_id, read_stream.from_version, read_stream.max_count,
                                          read_stream.direction, read_stream.types) l)
            UNION ALL
            (SELECT true AS archived, a.*
               FROM ocx._read_stream_archived(read_stream.stream_id, read_stream.from_version, read_stream.max_count,
                                              read_stream.direction, read_stream.types) a)) s
     WHERE s.archived = COALESCE(read_stream.include_archived, false);
END;
COMMENT ON FUNCTION ocx.read_stream(text, bigint, integer, text, text[], boolean) IS
    'the events of one stream in stream order: forward from from_version up (NULL: from the first), or with direction => ''backward'' from from_version down (NULL: from the last); types: only events of these types; include_archived: the archived partitions too (ocx.archive)';

CREATE FUNCTION ocx.last_event(stream_id text, type text DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           ocx._upcast_version(e.type, e.schema_version), e.time,
           ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.stream_id = ocx._stream_arg(last_event.stream_id)
       AND (last_event.type IS NULL OR e.type = last_event.type)
       AND e.stream_version > ocx._hidden_through(last_event.stream_id)
     ORDER BY e.stream_version DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx.last_event(text, text) IS
    'the last event of a stream (of that type, when type is given): one row, or none';

-- ---------------------------------------------------------------------------
-- The time map behind after_time (src/reads.c says why it is correct).
-- ---------------------------------------------------------------------------

CREATE TABLE ocx.time_map (
    bucket          timestamptz PRIMARY KEY,
    txid            xid8 NOT NULL,
    global_position bigint NOT NULL
);
CREATE INDEX time_map_cursor_idx ON ocx.time_map (txid, global_position);
COMMENT ON TABLE ocx.time_map IS
    'for each minute (bucket) some mapped event''s time falls in: the lowest cursor (txid, global_position) of the mapped events whose time is >= bucket; kept by the worker';

CREATE TABLE ocx.time_map_state (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    txid            xid8 NOT NULL,
    global_position bigint NOT NULL
);
INSERT INTO ocx.time_map_state (txid, global_position) VALUES ('0', 0);
COMMENT ON TABLE ocx.time_map_state IS
    'one row: every event at or below this cursor is in ocx.time_map';

CREATE FUNCTION ocx._time_bucket(t timestamptz) RETURNS timestamptz
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_time_bucket';
COMMENT ON FUNCTION ocx._time_bucket(timestamptz) IS
    'internal: the start of t''s minute (the time map''s bucket); infinities stay';

-- One batch of the map's upkeep, in log order, below the log horizon: the
-- lowest cursor per bucket of the batch, merged into the suffix minima from
-- the highest bucket down.  Run by the database worker (reads.c); returns
-- whether more is waiting.  Everything is read first, without a lock or a
-- transaction id; only then is the state row locked (and checked unchanged)
-- and the few rows written, so the worker holds an xid, and with it the log
-- horizon of every reader, for as short a time as it can.
CREATE FUNCTION ocx._time_map_tick(batch integer DEFAULT 10000) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h         xid8 := ocx.log_horizon();
    st        record;
    n         bigint;
    ltxid     xid8;
    lpos      bigint;
    buckets   timestamptz[];
    txids     xid8[];
    positions bigint[];
    i         integer;
BEGIN
    batch := GREATEST(COALESCE(batch, 10000), 1);
    SELECT s.txid, s.global_position INTO st FROM ocx.time_map_state s;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- the batch (an index range scan with a limit), its size, its last
    -- cursor and the lowest cursor of each of its buckets, highest first
    WITH b AS MATERIALIZED (
        SELECT e.txid, e.global_position, ocx._time_bucket(e.time) AS bucket
          FROM ocx.events e
         WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) (st.txid, st.global_position)
           AND e.txid OPERATOR(pg_catalog.<) h
         ORDER BY e.txid, e.global_position LIMIT batch),
    per AS (
        SELECT DISTINCT ON (b.bucket) b.bucket, b.txid, b.global_position
          FROM b ORDER BY b.bucket DESC, b.txid, b.global_position)
    SELECT (SELECT pg_catalog.count(*) FROM b),
           (SELECT b.txid FROM b ORDER BY b.txid DESC, b.global_position DESC LIMIT 1),
           (SELECT b.global_position FROM b ORDER BY b.txid DESC, b.global_position DESC LIMIT 1),
           (SELECT pg_catalog.array_agg(per.bucket ORDER BY per.bucket DESC) FROM per),
           (SELECT pg_catalog.array_agg(per.txid ORDER BY per.bucket DESC) FROM per),
           (SELECT pg_catalog.array_agg(per.global_position ORDER BY per.bucket DESC) FROM per)
      INTO n, ltxid, lpos, buckets, txids, positions;
    IF n OPERATOR(pg_catalog.=) 0 THEN
        RETURN false;
    END IF;
    IF n OPERATOR(pg_catalog.<) batch THEN
        -- everything below the horizon: the map is complete up to it
        ltxid := h;
        lpos := 0;
    END IF;

    -- another tick holds the row or got here first: it maps these
    PERFORM FROM ocx.time_map_state s
      WHERE s.txid OPERATOR(pg_catalog.=) st.txid
        AND s.global_position OPERATOR(pg_catalog.=) st.global_position
      FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    FOR i IN 1 .. pg_catalog.array_length(buckets, 1) LOOP
        -- every bucket at or below this one covers the event (values never
        -- decrease with the bucket, so these are the highest rows)
        UPDATE ocx.time_map m SET txid = txids[i], global_position = positions[i]
         WHERE m.bucket OPERATOR(pg_catalog.<=) buckets[i]
           AND (m.txid, m.global_position) OPERATOR(pg_catalog.>) (txids[i], positions[i]);
        -- a new bucket: its value is the lower of this event and the next row's
        INSERT INTO ocx.time_map AS m (bucket, txid, global_position)
        SELECT buckets[i],
               CASE WHEN nx.txid IS NULL
                      OR (txids[i], positions[i]) OPERATOR(pg_catalog.<=) (nx.txid, nx.global_position)
                    THEN txids[i] ELSE nx.txid END,
               CASE WHEN nx.txid IS NULL
                      OR (txids[i], positions[i]) OPERATOR(pg_catalog.<=) (nx.txid, nx.global_position)
                    THEN positions[i] ELSE nx.global_position END
          FROM (SELECT) one
          LEFT JOIN LATERAL (SELECT m2.txid, m2.global_position FROM ocx.time_map m2
                              WHERE m2.bucket OPERATOR(pg_catalog.>) buckets[i]
                              ORDER BY m2.bucket LIMIT 1) nx ON true
        ON CONFLICT (bucket) DO NOTHING;
    END LOOP;

    UPDATE ocx.time_map_state SET txid = ltxid, global_position = lpos;
    RETURN n OPERATOR(pg_catalog.>=) batch;
END
$$;
COMMENT ON FUNCTION ocx._time_map_tick(integer) IS
    'internal: merge the next batch of events below the log horizon into ocx.time_map (the database worker); true when more is waiting';
