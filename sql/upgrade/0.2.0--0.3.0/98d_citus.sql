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

    -- definitions: reference tables (a copy on every node)
    PERFORM create_reference_table('ocx.event_types');
    PERFORM create_reference_table('ocx.upcasters');
    PERFORM create_reference_table('ocx.aggregates');
    PERFORM create_reference_table('ocx.modules');
    -- per stream: co-located, distributed by stream_id
    PERFORM create_distributed_table('ocx.streams', 'stream_id');
    PERFORM create_distributed_table('ocx.events', 'stream_id', colocate_with => 'ocx.streams');
    PERFORM create_distributed_table('ocx.snapshots', 'stream_id', colocate_with => 'ocx.streams');

    EXECUTE pg_catalog.format('CREATE POLICY events_tenant ON ocx.events FOR ALL USING (%s) WITH CHECK (%s)',
                              tenant_events, tenant_check);
    EXECUTE pg_catalog.format('CREATE POLICY streams_tenant ON ocx.streams FOR ALL USING (%s) WITH CHECK (%s)',
                              tenant_events, tenant_check);

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
