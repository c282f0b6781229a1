-- ---------------------------------------------------------------------------
-- Consistency boundaries beyond one stream (docs/consistency.md): event tags,
-- ocx.append_if and ocx.read_tagged.  Tags are stored sorted and distinct;
-- the index holds only tagged events, so untagged appends pay nothing for it.
-- ---------------------------------------------------------------------------

ALTER TABLE ocx.events ADD COLUMN tags text[];
COMMENT ON COLUMN ocx.events.tags IS
    'the event''s tags (sorted, distinct; NULL when it has none): what ocx.append_if conditions and ocx.read_tagged select by';
-- fastupdate off: ocx.append_if looks tags up on every call, and a pending
-- list that every lookup scans would grow with the appends
CREATE INDEX events_tags_idx ON ocx.events USING gin (tags) WITH (fastupdate = off)
    WHERE tags IS NOT NULL;

CREATE FUNCTION ocx.append_if(events jsonb, condition jsonb) RETURNS ocx.cursor
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_append_if';
COMMENT ON FUNCTION ocx.append_if(jsonb, jsonb) IS
    'append events (each naming its stream_id, optionally tagged) only if no event matching the condition {"tags": [...], "types": [...], "after": cursor} was written after its cursor, else OX014 and nothing written; returns the cursor of the last event written';

CREATE FUNCTION ocx._tags_arg(tags text[]) RETURNS text[]
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_tags_arg';
COMMENT ON FUNCTION ocx._tags_arg(text[]) IS 'internal: valid tags of a read (1 to 32 non-empty strings), else raises OX015';

CREATE FUNCTION ocx.read_tagged(tags text[], types text[] DEFAULT NULL, "after" ocx.cursor DEFAULT NULL,
                                max_count integer DEFAULT 1000)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           ocx._upcast_version(e.type, e.schema_version), e.time,
           ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.tags @> ocx._tags_arg(read_tagged.tags)
       AND e.txid < ocx.log_horizon()
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(read_tagged."after"), '0'::xid8),
                                          COALESCE(ocx.global_position(read_tagged."after"), 0))
       AND (read_tagged.types IS NULL OR e.type = ANY (read_tagged.types))
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(read_tagged.max_count);
END;
COMMENT ON FUNCTION ocx.read_tagged(text[], text[], ocx.cursor, integer) IS
    'the events that carry every one of tags (and have one of types, when given) after a cursor, in gap-free log order (below the log horizon, as read_all), upcast; the state a decider builds before ocx.append_if';
