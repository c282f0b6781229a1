-- ---------------------------------------------------------------------------
-- Citus: ocx.distribute() turns the log of a Citus coordinator into
-- distributed tables (docs/scaling.md, "Citus").  Nothing here changes a
-- single node: the function only runs when called, and refuses without Citus.
-- ---------------------------------------------------------------------------

CREATE FUNCTION ocx.distribute() RETURNS text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       record;
    fn      text;
    shards  text;
    fks     text[] := '{}';
    failed  text;
    on_workers text := 'SET citus.enable_ddl_propagation TO off; '
                       'DROP POLICY IF EXISTS events_tenant ON ocx.events; '
                       'DROP POLICY IF EXISTS streams_tenant ON ocx.streams; '
                       'DROP POLICY IF EXISTS snapshots_tenant ON ocx.snapshots; '
                       -- the worker's projections read the shards as
                       -- ocx_worker (below); roles the extension made are
                       -- not propagated by Citus
                       'ALTER ROLE ocx_worker LOGIN; '
                       'ALTER ROLE ocx_worker SET citus.allow_nested_distributed_execution = on; ';
    -- what a distributed log does not support yet; it raises OX700 there
    -- (docs/scaling.md lists them and says why).  Subscriptions and sagas
    -- are not among them: their tables are the coordinator's, and poll and
    -- the saga task read the log through ocx._read_log and ocx._log_tail,
    -- replaced below.
    refused text[] := ARRAY['append_if', 'rebuild_projection'];
    tenant_events  text := 'COALESCE(tenant_id, '''') OPERATOR(pg_catalog.=) '
                           'COALESCE(pg_catalog.current_setting(''ocx.tenant'', true), '''')';
    tenant_check   text := 'tenant_id IS NOT DISTINCT FROM '
                           'NULLIF(pg_catalog.current_setting(''ocx.tenant'', true), '''')';
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'ocx.distribute() needs the citus extension in this database'
            USING ERRCODE = 'OX701',
                  HINT = 'CREATE EXTENSION citus (and ocx) on the coordinator and every worker first; see docs/scaling.md';
    END IF;
    EXECUTE 'SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = ''ocx.events''::regclass'
        INTO shards;
    IF shards::int > 0 THEN
        RAISE EXCEPTION 'the ocx log is already distributed'
            USING ERRCODE = 'OX702';
    END IF;
    IF EXISTS (SELECT FROM ocx.projections) OR EXISTS (SELECT FROM ocx.subscriptions)
       OR EXISTS (SELECT FROM ocx.saga_definitions) THEN
        RAISE EXCEPTION 'ocx.distribute() refuses a database with projections, subscriptions or sagas'
            USING ERRCODE = 'OX703',
                  DETAIL = 'define projections, subscriptions and sagas after the log is distributed (docs/scaling.md)',
                  HINT = 'drop them first, or keep this database on one node';
    END IF;

    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);

    -- tenancy: the single-node policies read ocx.tenant through a sub-select
    -- (an InitPlan), which Citus refuses on distributed tables; the same
    -- rules as plain expressions.  snapshots: see docs/scaling.md.
    DROP POLICY events_tenant ON ocx.events;
    DROP POLICY streams_tenant ON ocx.streams;
    DROP POLICY IF EXISTS snapshots_tenant ON ocx.snapshots;

    -- uniqueness Citus can enforce only with the distribution column in it
    ALTER TABLE ocx.events DROP CONSTRAINT events_pkey;
    ALTER TABLE ocx.events ADD CONSTRAINT events_pkey PRIMARY KEY (stream_id, global_position);
    ALTER TABLE ocx.events DROP CONSTRAINT events_source_event_id_key;
    ALTER TABLE ocx.events ADD CONSTRAINT events_source_event_id_key UNIQUE (stream_id, source, event_id);

    -- definitions: reference tables (a copy on every node).  The foreign
    -- keys among these and from ocx.snapshots are dropped first and added
    -- back after: Citus would otherwise turn a local table that references a
    -- new reference table into a "Citus local" table, whose shell clashes
    -- with the worker's own copy of the extension's table.
    FOR r IN SELECT c.conname, c.conrelid::regclass AS rel, pg_catalog.pg_get_constraintdef(c.oid) AS def
               FROM pg_catalog.pg_constraint c
              WHERE c.contype = 'f'
                AND c.conrelid IN ('ocx.upcasters'::regclass, 'ocx.snapshots'::regclass,
                                   'ocx.event_types'::regclass, 'ocx.aggregates'::regclass,
                                   'ocx.modules'::regclass)
    LOOP
        fks := fks || pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.conname, r.def);
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
        on_workers := on_workers || pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I; ',
                                                      r.rel, r.conname);
    END LOOP;
    -- The workers' own copies of the extension's tables are the shells of
    -- the distributed tables there (Citus does not create shells for a
    -- table an extension owns): what is added back below, Citus adds to them
    -- too, so they must lose it first.
    EXECUTE 'SELECT pg_catalog.string_agg(nodename || '':'' || nodeport || '' '' || result, ''; '') '
            'FROM run_command_on_workers($1) WHERE NOT success'
       INTO failed USING on_workers;
    IF failed IS NOT NULL THEN
        RAISE EXCEPTION 'ocx.distribute(): a worker failed: %', failed USING ERRCODE = 'OX000';
    END IF;
    PERFORM create_reference_table('ocx.event_types');
    PERFORM create_reference_table('ocx.upcasters');
    PERFORM create_reference_table('ocx.aggregates');
    PERFORM create_reference_table('ocx.modules');
    -- per stream: co-located, distributed by stream_id
    PERFORM create_distributed_table('ocx.streams', 'stream_id');
    PERFORM create_distributed_table('ocx.events', 'stream_id', colocate_with => 'ocx.streams');
    PERFORM create_distributed_table('ocx.snapshots', 'stream_id', colocate_with => 'ocx.streams');
    FOREACH fn IN ARRAY fks LOOP
        EXECUTE fn;
    END LOOP;

    EXECUTE pg_catalog.format('CREATE POLICY events_tenant ON ocx.events FOR ALL USING (%s) WITH CHECK (%s)',
                              tenant_events, tenant_check);
    EXECUTE pg_catalog.format('CREATE POLICY streams_tenant ON ocx.streams FOR ALL USING (%s) WITH CHECK (%s)',
                              tenant_events, tenant_check);

    -- Per-stream readers as PL/pgSQL: Citus cannot plan the parameterized
    -- queries of the single-node SQL functions (it plans a PL/pgSQL query
    -- with its parameters, routed to the stream's shard).  Same signatures,
    -- same rows; the single-node definitions in sql/parts are unchanged.
    CREATE OR REPLACE FUNCTION ocx.stream_version(stream_id text) RETURNS bigint
        LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        sid text := stream_id;
        v   bigint;
    BEGIN
        SELECT s.version INTO v FROM ocx.streams s WHERE s.stream_id = sid;
        RETURN COALESCE(v, 0);
    END
    $f$;
    -- (include_archived: no archive on Citus, ocx.partition_log refuses it)
    CREATE OR REPLACE FUNCTION ocx.read_stream(stream_id text, from_version bigint DEFAULT NULL,
                                               max_count integer DEFAULT NULL,
                                               direction text DEFAULT 'forward', types text[] DEFAULT NULL,
                                               include_archived boolean DEFAULT false)
        RETURNS SETOF ocx.event
        LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        sid  text := ocx._stream_arg(read_stream.stream_id);
        back boolean := ocx._direction_arg(read_stream.direction);
        lim  bigint := ocx._count_arg(read_stream.max_count);
        fromv bigint := CASE WHEN read_stream.from_version IS NULL
                             THEN CASE WHEN ocx._direction_arg(read_stream.direction)
                                       THEN 9223372036854775807 ELSE 0 END
                             ELSE ocx._version_arg(read_stream.from_version) END;
        typs text[] := read_stream.types;
        hid  bigint;
        e    record;
    BEGIN
        -- the soft-deleted versions (ocx.delete_stream): a plain query, as
        -- Citus cannot plan the parameterized SQL function _hidden_through
        SELECT s.hidden_through INTO hid FROM ocx.streams s WHERE s.stream_id = sid;
        hid := COALESCE(hid, 0);
        -- the rows come from the stream's shard as stored; soft-deleted
        -- versions are skipped (ocx.delete_stream), personal fields revealed
        -- and upcasting run here, on the coordinator (on a worker it would read the
        -- definitions through a nested distributed query, which Citus refuses)
        FOR e IN SELECT * FROM ocx.events x
                  WHERE x.stream_id = sid
                    AND CASE WHEN back THEN x.stream_version <= fromv ELSE x.stream_version >= fromv END
                    AND x.stream_version > hid
                    AND (typs IS NULL OR x.type = ANY (typs))
                  ORDER BY CASE WHEN back THEN -x.stream_version ELSE x.stream_version END
                  LIMIT lim
        LOOP
            RETURN NEXT ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version), e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
                            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position))::ocx.event;
        END LOOP;
    END
    $f$;
    CREATE OR REPLACE FUNCTION ocx.last_event(stream_id text, type text DEFAULT NULL)
        RETURNS SETOF ocx.event
        LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1 SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        sid text := ocx._stream_arg(last_event.stream_id);
        typ text := last_event.type;
        hid bigint;
        e   record;
    BEGIN
        SELECT s.hidden_through INTO hid FROM ocx.streams s WHERE s.stream_id = sid;
        hid := COALESCE(hid, 0);
        FOR e IN SELECT * FROM ocx.events x
                  WHERE x.stream_id = sid AND (typ IS NULL OR x.type = typ) AND x.stream_version > hid
                  ORDER BY x.stream_version DESC LIMIT 1
        LOOP
            RETURN NEXT ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version), e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
                            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position))::ocx.event;
        END LOOP;
    END
    $f$;

    -- The one reader of the log (sql/parts/22_reader.sql) as PL/pgSQL: the
    -- single-node SQL functions are inlined into their callers, which Citus
    -- does not plan (a parameterized SQL function over a distributed table).
    -- Same signatures, same rows, same log order: the coordinator's log txids
    -- cut at the coordinator's horizon, which ocx.log_horizon() makes exact
    -- on a distributed log by waiting for the transactions still in Citus's
    -- two-phase commit (src/citus.c).  The horizon is taken first, on the
    -- coordinator; the shards are then read, and upcasting runs here.  The
    -- form with include_archived, which the live-log form and read_all call
    -- (a distributed log has no archive: ocx.partition_log refuses Citus).
    CREATE OR REPLACE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[],
                                             categories text[], upcast boolean, horizon xid8,
                                             after_time timestamptz, include_archived boolean)
        RETURNS SETOF ocx.event
        LANGUAGE plpgsql STABLE
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        h     xid8 := COALESCE(_read_log.horizon, ocx.log_horizon());
        start ocx.cursor := CASE WHEN _read_log.after_time IS NULL THEN _read_log."after"
                                 ELSE ocx._read_start(_read_log."after", _read_log.after_time) END;
        atx   xid8 := COALESCE(ocx.txid(start), '0'::xid8);
        apos  bigint := COALESCE(ocx.global_position(start), 0);
        lim   bigint := ocx._count_arg(_read_log.max_count);
        t     timestamptz := _read_log.after_time;
        typs  text[] := _read_log.types;
        cats  text[] := _read_log.categories;
        up    boolean := _read_log.upcast IS NOT FALSE;
        e     record;
    BEGIN
        FOR e IN SELECT * FROM ocx.events x
                  WHERE x.txid < h AND (x.txid, x.global_position) > (atx, apos)
                    AND (t IS NULL OR x.time >= t)
                    AND ocx._log_selects(x.type, x.stream_id, typs, cats)
                  ORDER BY x.txid, x.global_position
                  LIMIT lim
        LOOP
            RETURN NEXT ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            CASE WHEN up THEN ocx._upcast_version(e.type, e.schema_version)
                                 ELSE e.schema_version END,
                            e.time,
                            CASE WHEN up THEN ocx._upcast(e.type, e.schema_version,
                                                          ocx._reveal(e.type, e.data, e.event_id))
                                 ELSE ocx._reveal(e.type, e.data, e.event_id) END,
                            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position))::ocx.event;
        END LOOP;
    END
    $f$;
    CREATE OR REPLACE FUNCTION ocx._log_tail("after" ocx.cursor, horizon xid8 DEFAULT NULL) RETURNS ocx.cursor
        LANGUAGE plpgsql STABLE
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        h    xid8 := COALESCE(_log_tail.horizon, ocx.log_horizon());
        atx  xid8 := COALESCE(ocx.txid(_log_tail."after"), '0'::xid8);
        apos bigint := COALESCE(ocx.global_position(_log_tail."after"), 0);
        c    ocx.cursor;
    BEGIN
        SELECT ocx.cursor(x.txid, x.global_position) INTO c
          FROM ocx.events x
         WHERE x.txid < h AND (x.txid, x.global_position) > (atx, apos)
         ORDER BY x.txid DESC, x.global_position DESC
         LIMIT 1;
        RETURN c;
    END
    $f$;
    -- the sealing task's reader over the stored rows (sql/parts/84_integrity.sql)
    -- the same way: the horizon taken here, on the coordinator
    CREATE OR REPLACE FUNCTION ocx._read_log_stored("after" ocx.cursor, max_count integer,
                                                    horizon xid8 DEFAULT NULL)
        RETURNS TABLE (txid xid8, global_position bigint, hash bytea)
        LANGUAGE plpgsql STABLE
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        h    xid8 := COALESCE(_read_log_stored.horizon, ocx.log_horizon());
        atx  xid8 := COALESCE(ocx.txid(_read_log_stored."after"), '0'::xid8);
        apos bigint := COALESCE(ocx.global_position(_read_log_stored."after"), 0);
        lim  bigint := ocx._count_arg(_read_log_stored.max_count);
    BEGIN
        RETURN QUERY SELECT x.txid, x.global_position, x.hash
                       FROM ocx.events x
                      WHERE x.txid < h AND (x.txid, x.global_position) > (atx, apos)
                      ORDER BY x.txid, x.global_position
                      LIMIT lim;
    END
    $f$;
    -- a projection's lag (ocx.projection_status, sql/parts/40_projections.sql):
    -- the view joins local tables with the log, which Citus does not plan; a
    -- PL/pgSQL query with the checkpoint as values is one count per shard
    CREATE OR REPLACE FUNCTION ocx._projection_lag(checkpoint_txid xid8, checkpoint_position bigint,
                                                   types text[], categories text[],
                                                   OUT events bigint, OUT oldest timestamptz)
        RETURNS SETOF record
        LANGUAGE plpgsql STABLE PARALLEL SAFE
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        atx  xid8 := _projection_lag.checkpoint_txid;
        apos bigint := _projection_lag.checkpoint_position;
        typs text[] := _projection_lag.types;
        cats text[] := _projection_lag.categories;
    BEGIN
        RETURN QUERY SELECT pg_catalog.count(*), pg_catalog.min(x.time)
                       FROM ocx.events x
                      WHERE (x.txid, x.global_position) > (atx, apos)
                        AND ocx._log_selects(x.type, x.stream_id, typs, cats);
    END
    $f$;
    -- read_tagged the same way (sql/parts/25_dcb.sql)
    CREATE OR REPLACE FUNCTION ocx.read_tagged(tags text[], types text[] DEFAULT NULL,
                                               "after" ocx.cursor DEFAULT NULL, max_count integer DEFAULT 1000)
        RETURNS SETOF ocx.event
        LANGUAGE plpgsql STABLE
        SET search_path = pg_catalog, pg_temp
    AS $f$
    DECLARE
        h    xid8 := ocx.log_horizon();
        tgs  text[] := ocx._tags_arg(read_tagged.tags);
        typs text[] := read_tagged.types;
        atx  xid8 := COALESCE(ocx.txid(read_tagged."after"), '0'::xid8);
        apos bigint := COALESCE(ocx.global_position(read_tagged."after"), 0);
        lim  bigint := ocx._count_arg(read_tagged.max_count);
        e    record;
    BEGIN
        FOR e IN SELECT * FROM ocx.events x
                  WHERE x.tags @> tgs AND x.txid < h AND (x.txid, x.global_position) > (atx, apos)
                    AND (typs IS NULL OR x.type = ANY (typs))
                  ORDER BY x.txid, x.global_position
                  LIMIT lim
        LOOP
            RETURN NEXT ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
                            ocx._upcast_version(e.type, e.schema_version), e.time,
                            ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
                            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
                            e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position))::ocx.event;
        END LOOP;
    END
    $f$;

    -- As whom: Citus refuses, in one transaction, a statement on a shard
    -- that another role already modified in it; the appends (and the
    -- snapshots load writes) run as ocx_owner, so the per-stream readers and
    -- load do too (SECURITY DEFINER).  ocx_owner is subject to the tenancy
    -- policies (FORCE), so a reader still sees only its tenant's streams.
    FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'ocx'::regnamespace AND p.proname IN ('load', 'snapshot')
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', r.fn);
    END LOOP;
    -- snapshots: the single-node policy ("visible when its stream is") is a
    -- sub-select Citus cannot run; they are read and written only through
    -- load and snapshot (as ocx_owner, after the stream row was read under
    -- its policy), and no longer selectable by ocx_reader
    EXECUTE 'CREATE POLICY snapshots_tenant ON ocx.snapshots FOR ALL USING (true) WITH CHECK (true)';
    EXECUTE 'REVOKE SELECT ON ocx.snapshots FROM ocx_reader';
    -- ocx.tenant reaches the workers only as SET LOCAL, which Citus sends
    -- along with this setting (docs/scaling.md, "Tenancy on Citus")
    EXECUTE pg_catalog.format('ALTER DATABASE %I SET citus.propagate_set_commands = %L',
                              pg_catalog.current_database(), 'local');
    PERFORM pg_catalog.set_config('citus.propagate_set_commands', 'local', false);

    -- Citus runs each statement on a worker as the role that runs it on the
    -- coordinator; the writer and admin entry points run as ocx_owner, which
    -- must therefore log in to the workers (docs/scaling.md says how to
    -- restrict it to the coordinator's connections).  Propagated to every node.
    ALTER ROLE ocx_owner LOGIN;
    -- load's query (C, src/aggregate.c) upcasts in the query, which Citus
    -- runs on the stream's worker; there ocx._upcast reads the definitions
    -- from the reference tables' local copies, a query Citus calls "nested"
    -- and refuses unless allowed.  The definitions are read as committed (a
    -- definition changed earlier in the same transaction is not seen there:
    -- docs/scaling.md).  Propagated to every node.
    ALTER ROLE ocx_owner SET citus.allow_nested_distributed_execution = on;
    -- the same for ocx_worker, as whom the worker reads the log for the
    -- projections (here; on the workers above)
    ALTER ROLE ocx_worker LOGIN;
    ALTER ROLE ocx_worker SET citus.allow_nested_distributed_execution = on;

    -- what needs one log order is refused (OX700), in place of the
    -- single-node definitions (same signatures; privileges are kept)
    FOR r IN SELECT p.oid, p.proname, pg_catalog.pg_get_function_arguments(p.oid) AS args,
                    pg_catalog.pg_get_function_result(p.oid) AS result
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'ocx'::regnamespace AND p.prokind = 'f'
                AND p.proname = ANY (refused)
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE FUNCTION ocx.%I(%s) RETURNS %s LANGUAGE plpgsql '
            'SET search_path = pg_catalog, pg_temp AS %L',
            r.proname, r.args, r.result,
            pg_catalog.format('BEGIN RAISE EXCEPTION %L USING ERRCODE = ''OX700'', HINT = %L; END',
                              'ocx.' || r.proname || '() is not supported on a distributed log',
                              'read per stream (ocx.read_stream, ocx.load); see docs/scaling.md'));
    END LOOP;
    RETURN 'ocx: log distributed by stream_id';
END
$$;
COMMENT ON FUNCTION ocx.distribute() IS
    'Citus coordinator: make streams, events and snapshots co-located distributed tables by stream_id and the definitions reference tables; read_all, read_category, read_tagged, projections, subscriptions and sagas then read the distributed log in log order, and what it does not support raises OX700 (docs/scaling.md)';
