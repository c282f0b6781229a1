
-- ---------------------------------------------------------------------------
-- What leaves the log (issue 14, removal): stream deletion and retention
-- (sql/parts/86_removal.sql, docs/retention.md).  After 96_reader and
-- 98_vocabulary, which re-create the readers and the grant rule: the stream
-- reads are re-created here with their full bodies (they skip soft-deleted
-- versions); privilege_rules (99_privileges.sql) grants delete_stream to ocx_writer.
-- ---------------------------------------------------------------------------
ALTER TABLE ocx.streams ADD COLUMN hidden_through bigint NOT NULL DEFAULT 0 CHECK (hidden_through >= 0);
COMMENT ON COLUMN ocx.streams.deleted IS 'a tombstone: the stream was hard-deleted (ocx.delete_stream) and takes no more events';
COMMENT ON COLUMN ocx.streams.hidden_through IS 'the last soft-deleted version (ocx.delete_stream): stream reads and loads start after it';

-- The first version a stream read returns: after the soft-deleted ones
-- (ocx.delete_stream, 86_removal.sql).  An
-- inlined scalar subquery (one primary key probe per read, as an InitPlan).
CREATE FUNCTION ocx._hidden_through(stream_id text) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN COALESCE((SELECT s.hidden_through FROM ocx.streams s
                     WHERE s.stream_id OPERATOR(pg_catalog.=) $1), 0);
COMMENT ON FUNCTION ocx._hidden_through(text) IS
    'internal: the last soft-deleted version of a stream (0 when none): stream reads return only the versions after it';

-- read_stream and last_event as issue 14 leaves them: personal fields revealed
-- (98b_privacy.sql) and soft-deleted versions skipped (above)
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
        AND e.stream_version > ocx._hidden_through(read_stream.stream_id)
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
        AND e.stream_version > ocx._hidden_through(read_stream.stream_id)
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
       AND e.stream_version > ocx._hidden_through(last_event.stream_id)
     ORDER BY e.stream_version DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx.last_event(text, text) IS
    'the last event of a stream (of that type, when type is given): one row, or none';


-- ---------------------------------------------------------------------------
-- What leaves the log (issue 14, docs/retention.md): stream deletion and
-- retention, the only controlled exceptions to the log's immutability.
--
-- ocx.delete_stream soft-deletes a stream (ocx.streams.hidden_through: the
-- stream reads skip those versions, appends go on after them, the log is
-- unchanged) or hard-deletes it (its events removed physically, the stream
-- row kept as a tombstone, ocx.streams.deleted, that refuses every later
-- append with OX641).  ocx.define_retention caps a category by age and/or
-- count; the worker's retention unit (src/removal.c) removes the oldest
-- events of its streams in small batches, never one a projection,
-- subscription or saga has not consumed yet.  Each hard delete and each
-- retention batch of a stream writes a row in ocx.removals.  The events are
-- deleted from C with the immutability trigger let through for exactly the
-- rows of that one statement (a backend-local flag, src/append.c), never by
-- a setting a user can SET.
-- ---------------------------------------------------------------------------

-- Every authorised removal is recorded in ocx.removals (84_integrity.sql /
-- 98a_integrity.sql), which ocx.verify() reads to tell it from tampering.

-- Retention policies: one per category.
CREATE TABLE ocx.retention (
    category       text PRIMARY KEY,
    max_age        interval,
    max_count      integer,
    defined_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    events_removed bigint NOT NULL DEFAULT 0,
    batches        bigint NOT NULL DEFAULT 0,
    last_batch_at  timestamptz,
    CONSTRAINT retention_limit_check CHECK (max_age IS NOT NULL OR max_count IS NOT NULL),
    CONSTRAINT retention_max_age_check CHECK (max_age > '0'::interval),
    CONSTRAINT retention_max_count_check CHECK (max_count >= 0)
);
COMMENT ON TABLE ocx.retention IS
    'retention policies: the events of a category''s streams older than max_age, or beyond the last max_count of a stream, are removed by the worker; with its progress';
SELECT pg_catalog.pg_extension_config_dump('ocx.retention', '');

-- Tombstones: a hard-deleted stream's row refuses every change (the append
-- paths that update it; the one that inserts reports OX641 from its
-- conflict path).  The WHEN clause keeps the trigger off every other row.
CREATE FUNCTION ocx._refuse_tombstone() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_refuse_tombstone';
COMMENT ON FUNCTION ocx._refuse_tombstone() IS
    'trigger: a hard-deleted stream (a tombstone) takes no more events (OX641)';
CREATE TRIGGER streams_tombstone BEFORE UPDATE ON ocx.streams
    FOR EACH ROW WHEN (OLD.deleted) EXECUTE FUNCTION ocx._refuse_tombstone();
ALTER TABLE ocx.streams ENABLE ALWAYS TRIGGER streams_tombstone;

CREATE FUNCTION ocx.delete_stream(stream_id text, expected_version bigint, hard boolean DEFAULT false)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_delete_stream';
COMMENT ON FUNCTION ocx.delete_stream(text, bigint, boolean) IS
    'delete a stream at expected_version (NULL: any): soft (reads skip its events, appends go on after them) or, with hard => true (ocx_owner or ocx_admin), remove its events and leave a tombstone that refuses appends; returns the last deleted version';

CREATE FUNCTION ocx.define_retention(name text, max_age interval DEFAULT NULL, max_count integer DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._check_name('retention category', define_retention.name);
    IF define_retention.max_age IS NULL AND define_retention.max_count IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'OX643',
            MESSAGE = pg_catalog.format('retention of category "%s" needs max_age or max_count', define_retention.name),
            HINT = 'Give max_age, max_count or both; ocx.drop_retention removes a policy.';
    END IF;
    IF define_retention.max_age OPERATOR(pg_catalog.<=) '0'::interval THEN
        RAISE EXCEPTION USING ERRCODE = 'OX643',
            MESSAGE = pg_catalog.format('max_age of retention "%s" must be positive', define_retention.name),
            DETAIL = pg_catalog.format('Got %s.', define_retention.max_age);
    END IF;
    IF define_retention.max_count OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX643',
            MESSAGE = pg_catalog.format('max_count of retention "%s" must not be negative', define_retention.name),
            DETAIL = pg_catalog.format('Got %s.', define_retention.max_count);
    END IF;
    INSERT INTO ocx.retention AS r (category, max_age, max_count)
    VALUES (define_retention.name, define_retention.max_age, define_retention.max_count)
    ON CONFLICT (category) DO UPDATE
       SET max_age = excluded.max_age, max_count = excluded.max_count, defined_at = pg_catalog.now();
END
$$;
COMMENT ON FUNCTION ocx.define_retention(text, interval, integer) IS
    'create or replace the retention policy of a category (name): the worker removes events older than max_age and beyond the last max_count of each of its streams (either may be NULL, not both)';

CREATE FUNCTION ocx.drop_retention(name text, if_exists boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM ocx.retention r WHERE r.category OPERATOR(pg_catalog.=) drop_retention.name;
    IF NOT FOUND AND NOT COALESCE(drop_retention.if_exists, false) THEN
        RAISE EXCEPTION USING ERRCODE = 'OX640',
            MESSAGE = pg_catalog.format('retention of category "%s" is not defined', drop_retention.name);
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.drop_retention(text, boolean) IS
    'remove the retention policy of a category (name); events already removed stay removed';
