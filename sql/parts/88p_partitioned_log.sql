-- ---------------------------------------------------------------------------
-- A partitioned log (docs/scaling.md, "A partitioned log"): opt in with
-- ocx.partition_log(), which makes ocx.events a table partitioned by ranges
-- of global_position (the table it was becomes the first partition);
-- partitions are created ahead of the log's position by
-- ocx.partition_ahead(), which the worker runs (its "partitions" unit,
-- src/logparts.c); ocx.archive(before) moves the partitions wholly before a
-- cursor to ocx_archive.events (11_log_archive.sql), which the reads read
-- with include_archived => true.  The keys a partitioned table cannot hold
-- as unique indexes are enforced by ocx._log_unique (src/logparts.c).
-- ---------------------------------------------------------------------------

CREATE INDEX events_tags_idx ON ocx_archive.events USING gin (tags) WITH (fastupdate = off)
    WHERE tags IS NOT NULL;

-- One row once the log is partitioned.
CREATE TABLE ocx.log_partitioning (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    partition_size bigint NOT NULL CHECK (partition_size >= 10),
    ahead          integer NOT NULL CHECK (ahead BETWEEN 1 AND 1000),
    partitioned_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ocx.log_partitioning IS
    'one row when ocx.events is partitioned (ocx.partition_log): the positions per partition, and how many partitions the worker keeps ahead of the log';
SELECT pg_catalog.pg_extension_config_dump('ocx.log_partitioning', '');
REVOKE ALL ON ocx.log_partitioning FROM PUBLIC;

CREATE FUNCTION ocx._log_unique() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_log_unique';
COMMENT ON FUNCTION ocx._log_unique() IS
    'trigger on a partitioned log: (stream_id, stream_version) and (source, event_id) are unique across the partitions and the archive (src/logparts.c)';

-- The default partition of a partitioned log stays empty: an append past
-- the partitions created ahead lands there and is refused (OX685) instead
-- of failing with PostgreSQL's "no partition" error.
CREATE FUNCTION ocx._log_no_partition() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'the ocx log has no partition for global position % yet', NEW.global_position
        USING ERRCODE = 'OX685',
              HINT = 'the worker creates partitions ahead of the log (ocx.log_partitioning.ahead); '
                     'run ocx.partition_ahead(), or raise ahead for batches this large';
END
$$;
COMMENT ON FUNCTION ocx._log_no_partition() IS
    'trigger on the default partition of a partitioned log: an event past the partitions created ahead is refused (OX685)';

-- The partitions of the log and of the archive, with their ranges.
CREATE FUNCTION ocx.log_partitions(OUT "partition" regclass, OUT from_position bigint,
                                   OUT to_position bigint, OUT archived boolean)
    RETURNS SETOF record
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.oid::regclass,
           CASE WHEN b.m[1] OPERATOR(pg_catalog.=) 'MINVALUE' THEN NULL ELSE b.m[1]::bigint END,
           CASE WHEN b.m[2] OPERATOR(pg_catalog.=) 'MAXVALUE' THEN NULL ELSE b.m[2]::bigint END,
           p.relnamespace OPERATOR(pg_catalog.=) 'ocx_archive'::regnamespace
      FROM pg_catalog.pg_class p
      JOIN pg_catalog.pg_inherits i ON i.inhparent OPERATOR(pg_catalog.=) p.oid
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
     CROSS JOIN LATERAL (SELECT pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                'FROM \(''?([-0-9]+|MINVALUE)''?\) TO \(''?([-0-9]+|MAXVALUE)''?\)') AS m) b
     WHERE p.relname OPERATOR(pg_catalog.=) 'events'
       AND p.relnamespace IN ('ocx'::regnamespace, 'ocx_archive'::regnamespace)
       AND b.m IS NOT NULL
     ORDER BY 2 NULLS FIRST;
END;
COMMENT ON FUNCTION ocx.log_partitions() IS
    'the partitions of a partitioned log (not the default one, always empty): each one''s range of global positions [from_position, to_position) (NULL: unbounded) and whether ocx.archive() moved it to ocx_archive.events';

CREATE FUNCTION ocx._log_partitioned() RETURNS boolean
    LANGUAGE sql STABLE
    RETURN COALESCE((SELECT c.relkind OPERATOR(pg_catalog.=) 'p' FROM pg_catalog.pg_class c
                      WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('ocx.events')), false);
COMMENT ON FUNCTION ocx._log_partitioned() IS 'internal: whether ocx.events is partitioned (ocx.partition_log)';

-- The last position the sequence handed out (0: none yet).
CREATE FUNCTION ocx._log_last_position() RETURNS bigint
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM ocx.events_global_position_seq s;
END;
COMMENT ON FUNCTION ocx._log_last_position() IS 'internal: the last global position handed out, 0 before the first';

-- A partition is reached through its parent only: no grants, row-level
-- security on (not forced: its owner, ocx_owner, reads it for
-- ocx.archive), the log's truncate refusal (row triggers are the parent's).
CREATE FUNCTION ocx._close_partition(rel regclass) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin', rel);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', rel);
    EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', rel);
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = rel AND t.tgname = 'events_immutable_truncate') THEN
        EXECUTE format('CREATE TRIGGER events_immutable_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION ocx._refuse_modification()', rel);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER events_immutable_truncate', rel);
    END IF;
    IF (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = rel) <> 'ocx_owner'::regrole THEN
        EXECUTE format('ALTER TABLE %s OWNER TO ocx_owner', rel);
    END IF;
END
$$;
COMMENT ON FUNCTION ocx._close_partition(regclass) IS
    'internal: a partition of the log is reached only through its parent (no grants, no truncate)';

-- Partitions ahead: while the last partition ends less than "ahead"
-- partitions past the last position handed out, one more.  Each is made
-- empty with its range as a CHECK constraint, then attached (SHARE UPDATE
-- EXCLUSIVE on ocx.events: appends and reads go on).
CREATE FUNCTION ocx.partition_ahead() RETURNS integer
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg  ocx.log_partitioning;
    hi   bigint;
    name text;
    made integer := 0;
BEGIN
    -- nothing to do (the worker's every pass): no lock, no transaction id
    SELECT * INTO cfg FROM ocx.log_partitioning;
    IF NOT FOUND OR NOT ocx._log_partitioned()
       OR (SELECT max(p.to_position) FROM ocx.log_partitions() p WHERE NOT p.archived)
          > ocx._log_last_position() + cfg.ahead::bigint * cfg.partition_size THEN
        RETURN 0;
    END IF;
    -- one creator at a time: the row is the lock
    SELECT * INTO cfg FROM ocx.log_partitioning FOR UPDATE;
    SELECT max(p.to_position) INTO hi FROM ocx.log_partitions() p WHERE NOT p.archived;
    WHILE hi <= ocx._log_last_position() + cfg.ahead::bigint * cfg.partition_size LOOP
        name := 'events_' || hi;
        EXECUTE format('CREATE TABLE ocx_partitions.%I (LIKE ocx.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       name);
        EXECUTE format('ALTER TABLE ocx_partitions.%I ADD CONSTRAINT %I '
                       'CHECK (global_position >= %s AND global_position < %s)',
                       name, name || '_range', hi, hi + cfg.partition_size);
        PERFORM ocx._close_partition(format('ocx_partitions.%I', name)::regclass);
        EXECUTE format('ALTER TABLE ocx.events ATTACH PARTITION ocx_partitions.%I FOR VALUES FROM (%s) TO (%s)',
                       name, hi, hi + cfg.partition_size);
        hi := hi + cfg.partition_size;
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;
COMMENT ON FUNCTION ocx.partition_ahead() IS
    'partitioned log: create the partitions that keep ocx.log_partitioning.ahead partitions past the last global position (the worker runs it every pass); returns how many it created';

CREATE FUNCTION ocx.partition_log(partition_size bigint DEFAULT 10000000, ahead integer DEFAULT 2)
    RETURNS text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        record;
    b0       bigint;
    redo     text[] := '{}';
    triggers text[] := '{}';
    comment  text := pg_catalog.obj_description('ocx.events'::regclass, 'pg_class');
    old      text := 'events_0';
    -- a restored dump of a partitioned log: the settings came back with the
    -- data, ocx.events is the extension's plain table, and the partitions
    -- are tables of their own in ocx_partitions (their ATTACH failed)
    restored boolean := EXISTS (SELECT FROM ocx.log_partitioning);
BEGIN
    IF ocx._log_partitioned() THEN
        RAISE EXCEPTION 'the ocx log is already partitioned' USING ERRCODE = 'OX681';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'ocx.partition_log() is not supported in a database with Citus'
            USING ERRCODE = 'OX684',
                  HINT = 'a distributed log is split by stream already (docs/scaling.md)';
    END IF;
    IF partition_size IS NULL OR partition_size < 10 OR partition_size > 1000000000000 THEN
        RAISE EXCEPTION 'partition_size must be between 10 and 10^12, got %', partition_size
            USING ERRCODE = 'OX010';
    END IF;
    IF ahead IS NULL OR ahead < 1 OR ahead > 1000 THEN
        RAISE EXCEPTION 'ahead must be between 1 and 1000, got %', ahead USING ERRCODE = 'OX010';
    END IF;

    -- no append, read or consumer runs while the log changes shape
    LOCK TABLE ocx.events IN ACCESS EXCLUSIVE MODE;
    IF restored THEN
        IF EXISTS (SELECT FROM ocx.events) THEN
            RAISE EXCEPTION 'ocx.partition_log() cannot take back a restored partitioned log: ocx.events has events'
                USING ERRCODE = 'OX684',
                      DETAIL = 'Events were appended after the restore, before the partitions were attached again.',
                      HINT = 'call ocx.partition_log() right after pg_restore (docs/scaling.md)';
        END IF;
        old := 'events_restored_shell';
    END IF;

    -- what refers to the table by its oid is defined again on the new one
    FOR r IN SELECT DISTINCT d.objid FROM pg_catalog.pg_depend d
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                AND d.refclassid = 'pg_catalog.pg_class'::regclass
                AND d.refobjid = 'ocx.events'::regclass LOOP
        redo := redo || pg_catalog.pg_get_functiondef(r.objid);
    END LOOP;
    FOR r IN SELECT DISTINCT c.oid, c.reloptions FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid
               JOIN pg_catalog.pg_class c ON c.oid = w.ev_class
              WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass
                AND d.refobjid = 'ocx.events'::regclass AND c.oid <> 'ocx.events'::regclass LOOP
        redo := redo || format('CREATE OR REPLACE VIEW %s %s AS %s', r.oid::regclass,
                               CASE WHEN r.reloptions IS NULL THEN ''
                                    ELSE 'WITH (' || array_to_string(r.reloptions, ', ') || ')' END,
                               pg_catalog.pg_get_viewdef(r.oid));
    END LOOP;
    -- triggers and policies move to the new table
    FOR r IN SELECT t.tgname, t.tgenabled, pg_catalog.pg_get_triggerdef(t.oid) AS def
               FROM pg_catalog.pg_trigger t
              WHERE t.tgrelid = 'ocx.events'::regclass AND NOT t.tgisinternal LOOP
        triggers := triggers || r.def
                    || format('ALTER TABLE ocx.events %s TRIGGER %I',
                              CASE r.tgenabled WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA'
                                               WHEN 'D' THEN 'DISABLE' ELSE 'ENABLE' END, r.tgname);
        EXECUTE format('DROP TRIGGER %I ON ocx.events', r.tgname);
    END LOOP;
    FOR r IN SELECT p.policyname, p.permissive, p.cmd, p.roles, p.qual, p.with_check
               FROM pg_catalog.pg_policies p
              WHERE p.schemaname = 'ocx' AND p.tablename = 'events' LOOP
        triggers := triggers || format('CREATE POLICY %I ON ocx.events AS %s FOR %s TO %s%s%s',
                                       r.policyname, r.permissive, r.cmd,
                                       (SELECT string_agg(quote_ident(x), ', ') FROM unnest(r.roles) x),
                                       ' USING (' || r.qual || ')', ' WITH CHECK (' || r.with_check || ')');
        EXECUTE format('DROP POLICY %I ON ocx.events', r.policyname);
    END LOOP;

    -- the table becomes the first partition: every position handed out so
    -- far, up to the next multiple of partition_size
    b0 := (ocx._log_last_position() / partition_size + 1) * partition_size;
    ALTER SEQUENCE ocx.events_global_position_seq OWNED BY NONE;
    ALTER EXTENSION ocx DROP TABLE ocx.events;
    EXECUTE format('ALTER TABLE ocx.events RENAME TO %I', old);
    EXECUTE format('ALTER TABLE ocx.%I SET SCHEMA ocx_partitions', old);
    IF NOT restored THEN
        EXECUTE format('ALTER TABLE ocx_partitions.events_0 ADD CONSTRAINT events_0_range CHECK (global_position < %s)', b0);
        PERFORM ocx._close_partition('ocx_partitions.events_0');
    END IF;

    EXECUTE format('CREATE TABLE ocx.events (LIKE ocx_partitions.%I INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMMENTS) '
                   'PARTITION BY RANGE (global_position)', old);
    ALTER TABLE ocx.events OWNER TO ocx_owner;
    -- the CHECK constraints of the log (not the partition's range)
    FOR r IN SELECT c.conname, pg_catalog.pg_get_constraintdef(c.oid) AS def FROM pg_catalog.pg_constraint c
              WHERE c.conrelid = ('ocx_partitions.' || old)::regclass AND c.contype = 'c'
                AND c.conname <> 'events_0_range' LOOP
        EXECUTE format('ALTER TABLE ocx.events ADD CONSTRAINT %I %s', r.conname, r.def);
    END LOOP;
    ALTER TABLE ocx.events ADD CONSTRAINT events_pkey PRIMARY KEY (global_position);
    CREATE INDEX events_stream_version_idx ON ocx.events (stream_id, stream_version);
    CREATE INDEX events_source_event_id_idx ON ocx.events (source, event_id);
    -- the other indexes as they are (the partition's own are attached to them)
    FOR r IN SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def FROM pg_catalog.pg_index i
              WHERE i.indrelid = ('ocx_partitions.' || old)::regclass AND NOT i.indisunique
                AND NOT (i.indnatts = 2 AND i.indkey::text IN (
                         (SELECT string_agg(a.attnum::text, ' ' ORDER BY k.o) FROM pg_catalog.pg_attribute a
                            JOIN unnest(ARRAY['stream_id', 'stream_version']) WITH ORDINALITY k(n, o) ON a.attname = k.n
                           WHERE a.attrelid = i.indrelid),
                         (SELECT string_agg(a.attnum::text, ' ' ORDER BY k.o) FROM pg_catalog.pg_attribute a
                            JOIN unnest(ARRAY['source', 'event_id']) WITH ORDINALITY k(n, o) ON a.attname = k.n
                           WHERE a.attrelid = i.indrelid))) LOOP
        EXECUTE regexp_replace(r.def, ' ON ocx_partitions\.\S+ ', ' ON ONLY ocx.events ');
    END LOOP;
    IF restored THEN
        -- the restored partitions, each on the range of its CHECK constraint
        FOR r IN SELECT c.oid::regclass AS rel, c.relname,
                        (SELECT pg_catalog.pg_get_constraintdef(k.oid) FROM pg_catalog.pg_constraint k
                          WHERE k.conrelid = c.oid AND k.conname = c.relname || '_range') AS range
                   FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = 'ocx_partitions'::regnamespace AND c.relkind = 'r'
                    AND NOT c.relispartition AND c.relname <> old LOOP
            IF r.relname = 'events_default' THEN
                EXECUTE format('ALTER TABLE ocx.events ATTACH PARTITION %s DEFAULT', r.rel);
            ELSIF r.range IS NOT NULL THEN
                EXECUTE format('ALTER TABLE ocx.events ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)', r.rel,
                               COALESCE(substring(r.range FROM 'global_position >= (-?[0-9]+)'), 'MINVALUE'),
                               substring(r.range FROM 'global_position < (-?[0-9]+)'));
            END IF;
        END LOOP;
    ELSE
        EXECUTE format('ALTER TABLE ocx.events ATTACH PARTITION ocx_partitions.events_0 FOR VALUES FROM (MINVALUE) TO (%s)', b0);
        -- the partition's unique keys are the trigger's now
        ALTER TABLE ocx_partitions.events_0 DROP CONSTRAINT events_stream_version_key;
        ALTER TABLE ocx_partitions.events_0 DROP CONSTRAINT events_source_event_id_key;
        -- the default partition, always empty (ocx._log_no_partition)
        CREATE TABLE ocx_partitions.events_default (LIKE ocx.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        PERFORM ocx._close_partition('ocx_partitions.events_default');
        CREATE TRIGGER events_no_partition BEFORE INSERT ON ocx_partitions.events_default
            FOR EACH ROW EXECUTE FUNCTION ocx._log_no_partition();
        ALTER TABLE ocx_partitions.events_default ENABLE ALWAYS TRIGGER events_no_partition;
        ALTER TABLE ocx.events ATTACH PARTITION ocx_partitions.events_default DEFAULT;
        -- its indexes named as the partition's (they move with it to the archive)
        FOR r IN SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
                  WHERE i.indrelid = 'ocx_partitions.events_0'::regclass AND c.relname NOT LIKE 'events\_0\_%' LOOP
            EXECUTE format('ALTER INDEX ocx_partitions.%I RENAME TO %I', r.relname,
                           'events_0_' || substr(r.relname, 8));
        END LOOP;
    END IF;

    ALTER SEQUENCE ocx.events_global_position_seq OWNED BY ocx.events.global_position;
    ALTER EXTENSION ocx ADD TABLE ocx.events;
    EXECUTE format('COMMENT ON TABLE ocx.events IS %L', comment);
    ALTER TABLE ocx.events ENABLE ROW LEVEL SECURITY;
    ALTER TABLE ocx.events FORCE ROW LEVEL SECURITY;
    FOR r IN SELECT unnest(triggers) AS def LOOP
        EXECUTE r.def;
    END LOOP;
    CREATE TRIGGER events_unique BEFORE INSERT ON ocx.events
        FOR EACH ROW EXECUTE FUNCTION ocx._log_unique();
    ALTER TABLE ocx.events ENABLE ALWAYS TRIGGER events_unique;
    FOR r IN SELECT unnest(redo) AS def LOOP
        EXECUTE r.def;
    END LOOP;
    PERFORM ocx._apply_privileges();
    IF restored THEN
        -- what referred to the restored shell refers to the new table now
        EXECUTE format('DROP TABLE ocx_partitions.%I', old);
        PERFORM ocx.partition_ahead();
        RETURN 'ocx: restored partitioned log attached again';
    END IF;

    INSERT INTO ocx.log_partitioning (partition_size, ahead)
    VALUES (partition_log.partition_size, partition_log.ahead);
    PERFORM ocx.partition_ahead();
    RETURN format('ocx: log partitioned by global_position, %s positions a partition', partition_size);
END
$$;
COMMENT ON FUNCTION ocx.partition_log(bigint, integer) IS
    'superuser: make ocx.events a table partitioned by ranges of partition_size global positions (the existing table becomes the first partition), with ahead partitions kept ahead of the log by the worker; once, not undone (docs/scaling.md)';

-- Move the partitions wholly before a cursor to the archive.
CREATE FUNCTION ocx.archive("before" ocx.cursor) RETURNS integer
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r      record;
    behind record;
    last   bigint;
    tail   ocx.cursor;
    moved  integer := 0;
BEGIN
    IF "before" IS NULL THEN
        RAISE EXCEPTION 'the cursor to archive before must not be null' USING ERRCODE = 'OX010';
    END IF;
    IF NOT ocx._log_partitioned() THEN
        RAISE EXCEPTION 'the ocx log is not partitioned'
            USING ERRCODE = 'OX680', HINT = 'ocx.partition_log() first (docs/scaling.md)';
    END IF;
    -- the slowest consumer (and the seals, once there are any): what it has
    -- not passed stays in the live log
    SELECT c.what, c.cur INTO behind FROM (
        SELECT 'projection ' || p.name AS what, ocx.cursor(p.checkpoint_txid, p.checkpoint_position) AS cur
          FROM ocx.projections p
         WHERE p.mode = 'async' AND NOT EXISTS (SELECT FROM ocx.projection_partitions pp WHERE pp.projection = p.name)
        UNION ALL
        SELECT 'projection ' || pp.projection || '/' || pp.partition,
               ocx.cursor(pp.checkpoint_txid, pp.checkpoint_position) FROM ocx.projection_partitions pp
        UNION ALL
        SELECT 'rebuild of projection ' || p.name, ocx.cursor(p.shadow_checkpoint_txid, p.shadow_checkpoint_position)
          FROM ocx.projections p WHERE p.shadow_checkpoint_txid IS NOT NULL AND p.shadow_checkpoint_position IS NOT NULL
        UNION ALL
        SELECT 'rebuild of projection ' || s.projection, ocx.cursor(s.checkpoint_txid, s.checkpoint_position)
          FROM ocx.projection_shadow_partitions s
        UNION ALL
        SELECT 'subscription ' || sp.subscription, ocx.cursor(sp.acked_txid, sp.acked_position)
          FROM ocx.subscription_partitions sp
        UNION ALL
        SELECT 'sagas', ocx.cursor(sc.txid, sc.global_position) FROM ocx.saga_cursor sc
         WHERE EXISTS (SELECT FROM ocx.saga_definitions)
        UNION ALL
        SELECT 'seals', (SELECT s.last_cursor FROM ocx.seals s ORDER BY s.last_cursor DESC LIMIT 1)
         WHERE EXISTS (SELECT FROM ocx.seals)
    ) c ORDER BY c.cur LIMIT 1;

    -- not while the worker attaches a partition (the row is its lock too:
    -- the two never wait for each other's table locks), then no append in
    -- flight: each holds ROW EXCLUSIVE on ocx.events to its end
    PERFORM FROM ocx.log_partitioning FOR UPDATE;
    LOCK TABLE ocx.events IN ACCESS EXCLUSIVE MODE;
    last := ocx._log_last_position();
    FOR r IN SELECT p.partition, p.from_position, p.to_position
               FROM ocx.log_partitions() p WHERE NOT p.archived ORDER BY p.from_position NULLS FIRST LOOP
        -- a position of its range may still be handed out
        EXIT WHEN r.to_position IS NULL OR r.to_position - 1 > last;
        EXECUTE format('SELECT ocx.cursor(e.txid, e.global_position) FROM %s e '
                       'ORDER BY e.txid DESC, e.global_position DESC LIMIT 1', r.partition) INTO tail;
        EXIT WHEN tail OPERATOR(ocx.>=) "before";
        IF behind.cur IS NOT NULL AND tail OPERATOR(ocx.>) behind.cur THEN
            RAISE EXCEPTION 'cannot archive before %: % is at %, before the last event of partition % (%)',
                            "before", behind.what, behind.cur, r.partition, tail
                USING ERRCODE = 'OX682',
                      HINT = 'archive only what every consumer and the seals have passed';
        END IF;
        EXECUTE format('ALTER TABLE ocx.events DETACH PARTITION %s', r.partition);
        EXECUTE format('ALTER TABLE %s SET SCHEMA ocx_archive', r.partition);
        EXECUTE format('ALTER TABLE ocx_archive.events ATTACH PARTITION ocx_archive.%I FOR VALUES FROM (%s) TO (%s)',
                       (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = r.partition),
                       COALESCE(r.from_position::text, 'MINVALUE'), r.to_position);
        moved := moved + 1;
    END LOOP;
    RETURN moved;
END
$$;
COMMENT ON FUNCTION ocx.archive(ocx.cursor) IS
    'partitioned log: move every partition whose events all sort before the cursor (and whose range is used up) to ocx_archive.events; refused (OX682) when a consumer or the seals have not passed the events of such a partition; returns how many it moved';
