-- 98w_direct_tags.sql (issues 13 and 16): read_stream without the branch of
-- the other direction in its plan.  The UNION ALL labels each branch with a
-- constant column and the direction selects by it outside the branches, so
-- with a constant direction the planner removes the other branch before
-- planning it (sql/parts/21_reads.sql says more).  The same rows in the same
-- order as before.

CREATE OR REPLACE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT NULL, max_count integer DEFAULT NULL,
                                direction text DEFAULT 'forward', types text[] DEFAULT NULL)
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
                      WHERE e.stream_id = ocx._stream_arg(read_stream.stream_id)
                        AND e.stream_version >= ocx._version_arg(read_stream.from_version)
                        AND e.stream_version > ocx._hidden_through(read_stream.stream_id)
                        AND (read_stream.types IS NULL OR e.type = ANY (read_stream.types))
                      ORDER BY e.stream_version
                      LIMIT ocx._count_arg(read_stream.max_count)) f)
            UNION ALL
            (SELECT true AS backward, b.*
               FROM (SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version) AS schema_version, e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) AS data,
                            ocx._reveal_metadata(e.type, e.data, e.metadata) AS metadata, e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position) AS cursor
                       FROM ocx.events e
                      WHERE e.stream_id = ocx._stream_arg(read_stream.stream_id)
                        AND e.stream_version <= CASE WHEN read_stream.from_version IS NULL THEN 9223372036854775807
                                                     ELSE ocx._version_arg(read_stream.from_version) END
                        AND e.stream_version > ocx._hidden_through(read_stream.stream_id)
                        AND (read_stream.types IS NULL OR e.type = ANY (read_stream.types))
                      ORDER BY e.stream_version DESC
                      LIMIT ocx._count_arg(read_stream.max_count)) b)) r
     WHERE r.backward = ocx._direction_arg(read_stream.direction);
END;
