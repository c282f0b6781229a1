-- Reads of issue 13, faster (docs/performance.md, "Issue 13 reads and
-- append_if"): read_stream and last_event skip the soft-deleted versions by a
-- scalar subquery on ocx.streams in their own bodies (an InitPlan) instead of
-- the SQL function ocx._hidden_through, which was never inlined (its body
-- holds a subquery) and so was parsed and planned again on every read.  The
-- function is no longer used and goes.  Copies of sql/parts/21_reads.sql.

CREATE OR REPLACE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT NULL, max_count integer DEFAULT NULL,
                                direction text DEFAULT 'forward', types text[] DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
            ocx._upcast_version(e.type, e.schema_version), e.time,
            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
       FROM ocx.events e
      WHERE NOT ocx._direction_arg(read_stream.direction)
        AND e.stream_id = ocx._stream_arg(read_stream.stream_id)
        AND e.stream_version >= ocx._version_arg(read_stream.from_version)
        AND e.stream_version > COALESCE((SELECT s.hidden_through FROM ocx.streams s
                                          WHERE s.stream_id = read_stream.stream_id), 0)
        AND (read_stream.types IS NULL OR e.type = ANY (read_stream.types))
      ORDER BY e.stream_version
      LIMIT ocx._count_arg(read_stream.max_count))
    UNION ALL
    (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
            ocx._upcast_version(e.type, e.schema_version), e.time,
            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
       FROM ocx.events e
      WHERE ocx._direction_arg(read_stream.direction)
        AND e.stream_id = ocx._stream_arg(read_stream.stream_id)
        AND e.stream_version <= CASE WHEN read_stream.from_version IS NULL THEN 9223372036854775807
                                     ELSE ocx._version_arg(read_stream.from_version) END
        AND e.stream_version > COALESCE((SELECT s.hidden_through FROM ocx.streams s
                                          WHERE s.stream_id = read_stream.stream_id), 0)
        AND (read_stream.types IS NULL OR e.type = ANY (read_stream.types))
      ORDER BY e.stream_version DESC
      LIMIT ocx._count_arg(read_stream.max_count));
END;
COMMENT ON FUNCTION ocx.read_stream(text, bigint, integer, text, text[]) IS
    'the events of one stream in stream order: forward from from_version up (NULL: from the first), or with direction => ''backward'' from from_version down (NULL: from the last); types: only events of these types';

CREATE OR REPLACE FUNCTION ocx.last_event(stream_id text, type text DEFAULT NULL)
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
       AND e.stream_version > COALESCE((SELECT s.hidden_through FROM ocx.streams s
                                          WHERE s.stream_id = last_event.stream_id), 0)
     ORDER BY e.stream_version DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx.last_event(text, text) IS
    'the last event of a stream (of that type, when type is given): one row, or none';

DROP FUNCTION ocx._hidden_through(text);
