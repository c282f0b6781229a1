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
                       'DROP POLICY IF EXISTS snapshots_tenant ON ocx.snapshots; ';
    -- the whole-log consumers and readers that need one log order; on a
    -- distributed log they raise OX700 (docs/scaling.md lists them)
    refused text[] := ARRAY['read_all', 'read_category', 'read_tagged', 'append_if',
                            'define_projection', 'rebuild_projection',
                            'define_subscription', 'create_subscription', 'poll',
                            'define_saga', 'start_saga', 'wait_for'];
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
                  DETAIL = 'whole-log consumers are not supported on a distributed log yet (docs/scaling.md)',
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
    'Citus coordinator: make streams, events and snapshots co-located distributed tables by stream_id and the definitions reference tables; whole-log readers and consumers then raise OX700 (docs/scaling.md)';
