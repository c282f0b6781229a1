-- ---------------------------------------------------------------------------
-- The archive of a partitioned log (docs/scaling.md, "A partitioned log").
--
-- ocx.partition_log() (88p_partitioned_log.sql) turns ocx.events into a table
-- partitioned by ranges of global_position; ocx.archive() detaches the
-- partitions wholly before a cursor and attaches them here, to
-- ocx_archive.events, partitioned the same way and empty until then.  Reads
-- with include_archived => true read both through ocx._log_events.  The
-- schemas exist in every database so that the reads can name the archive;
-- until a log is partitioned they hold nothing but the empty parent.
-- ---------------------------------------------------------------------------

-- live partitions (ocx_partitions) and archived ones (ocx_archive): reached
-- only through their parents ocx.events and ocx_archive.events
CREATE SCHEMA ocx_partitions;
CREATE SCHEMA ocx_archive;
COMMENT ON SCHEMA ocx_partitions IS 'the partitions of a partitioned ocx.events (ocx.partition_log)';
COMMENT ON SCHEMA ocx_archive IS 'the archived partitions of the log (ocx.archive), read through ocx_archive.events';

CREATE TABLE ocx_archive.events (LIKE ocx.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (global_position);
-- the same keys as the live log; uniqueness of (stream_id, stream_version)
-- and (source, event_id) is the append's (ocx._log_unique), as on ocx.events
ALTER TABLE ocx_archive.events ADD CONSTRAINT events_pkey PRIMARY KEY (global_position);
CREATE INDEX events_stream_version_idx ON ocx_archive.events (stream_id, stream_version);
CREATE INDEX events_source_event_id_idx ON ocx_archive.events (source, event_id);
CREATE INDEX events_log_order_idx ON ocx_archive.events (txid, global_position);
COMMENT ON TABLE ocx_archive.events IS
    'the archived events: the partitions ocx.archive() detached from ocx.events (read with include_archived => true)';

CREATE TRIGGER events_immutable_row BEFORE UPDATE OR DELETE ON ocx_archive.events
    FOR EACH ROW EXECUTE FUNCTION ocx._refuse_modification();
CREATE TRIGGER events_immutable_truncate BEFORE TRUNCATE ON ocx_archive.events
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._refuse_modification();
ALTER TABLE ocx_archive.events ENABLE ALWAYS TRIGGER events_immutable_row;
ALTER TABLE ocx_archive.events ENABLE ALWAYS TRIGGER events_immutable_truncate;

ALTER TABLE ocx_archive.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx_archive.events FORCE ROW LEVEL SECURITY;
CREATE POLICY events_tenant ON ocx_archive.events FOR ALL
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
COMMENT ON POLICY events_tenant ON ocx_archive.events IS
    'a session reads the archived events of its ocx.tenant (none set: untenanted events)';
REVOKE ALL ON ocx_archive.events FROM PUBLIC;

-- The events a read sees: the live log, and with include_archived the
-- archive too.  Inlined into each read; a constant false drops the archive
-- from the plan, so a read of the live log costs what it did.
CREATE FUNCTION ocx._log_events(include_archived boolean)
    RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint, event_id uuid,
                   source text, type text, schema_version integer, "time" timestamptz, data jsonb,
                   metadata jsonb, correlation_id uuid, causation_id uuid, tenant_id text, txid xid8)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           e.schema_version, e.time, e.data, e.metadata, e.correlation_id, e.causation_id,
           e.tenant_id, e.txid
      FROM ocx.events e
    UNION ALL
    SELECT a.global_position, a.stream_id, a.stream_version, a.event_id, a.source, a.type,
           a.schema_version, a.time, a.data, a.metadata, a.correlation_id, a.causation_id,
           a.tenant_id, a.txid
      FROM ocx_archive.events a
     WHERE _log_events.include_archived;
END;
COMMENT ON FUNCTION ocx._log_events(boolean) IS
    'internal: the rows of ocx.events, and with include_archived those of ocx_archive.events too (inlined into the reads)';

-- The planner support function of the reads that take include_archived
-- (ocx.read_stream, ocx._read_log): a call with include_archived a constant
-- becomes a call of the form it selects, "_<name>_live" (false or NULL) or
-- "_<name>_archived" (true), so that the planner inlines that form alone
-- (src/livereads.c).
CREATE FUNCTION ocx._read_form_support(internal) RETURNS internal
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_read_form_support';
COMMENT ON FUNCTION ocx._read_form_support(internal) IS
    'internal: planner support of the reads with include_archived: a constant plans the form it selects alone (_<name>_live or _<name>_archived)';
