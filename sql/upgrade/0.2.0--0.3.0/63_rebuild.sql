-- Issue 12: blue/green rebuilds.  A projection declares its read-model
-- tables (define_projection(..., tables regclass[]), a new last parameter);
-- rebuild_projection(name, shadow => true) builds shadow copies of them while
-- the live ones keep serving, and the worker swaps them in with the
-- checkpoint in one transaction.  define_projection and rebuild_projection
-- take new parameters: their final text is in 90_security.sql, which replaces
-- both (it runs after this fragment).  New columns of ocx.projections, the
-- helpers, drop_projection and ocx.projection_status are final here.

ALTER TABLE ocx.projections ADD COLUMN tables text[];
ALTER TABLE ocx.projections ADD COLUMN shadow_schema text;
ALTER TABLE ocx.projections ADD COLUMN shadow_checkpoint_txid xid8;
ALTER TABLE ocx.projections ADD COLUMN shadow_checkpoint_position bigint;
ALTER TABLE ocx.projections ADD COLUMN shadow_failures integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN ocx.projections.tables IS
    'the read-model tables the projection declared (schema-qualified names), swapped by a blue/green rebuild';
COMMENT ON COLUMN ocx.projections.shadow_schema IS
    'during a blue/green rebuild: the schema holding the shadow copies of the tables; NULL otherwise';
COMMENT ON COLUMN ocx.projections.shadow_checkpoint_txid IS
    'during a blue/green rebuild: the txid of the shadow replay''s checkpoint';
COMMENT ON COLUMN ocx.projections.shadow_checkpoint_position IS
    'during a blue/green rebuild: the position of the shadow replay''s checkpoint';
COMMENT ON COLUMN ocx.projections.shadow_failures IS
    'failed batches of the blue/green rebuild in a row; at the retry policy''s attempts it is abandoned';

-- Blue/green rebuilds (docs/projections.md, "Blue/green rebuilds"): the
-- declared read-model tables are copied empty into a shadow schema, the
-- worker replays the log into the copies while the live tables keep being
-- updated, then swaps them in one transaction.  The DDL runs as the
-- projection's owner (ocx._execute_as_author), never as ocx_owner.
CREATE FUNCTION ocx._execute_as_author(author regrole, statements text[]) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_execute_as_author';
COMMENT ON FUNCTION ocx._execute_as_author(regrole, text[]) IS
    'internal: run statements ocx built (a blue/green rebuild''s DDL) as author, search_path pg_catalog, security-restricted (entry points and the worker only)';

-- A read-model table by its stored name, looked up in the catalogs: ocx_owner
-- (rebuild_projection) has no USAGE on the schemas of user tables.
CREATE FUNCTION ocx._relation_oid(name text) RETURNS oid
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN (SELECT c.oid FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE n.nspname OPERATOR(pg_catalog.=) (pg_catalog.parse_ident(name))[1]
               AND c.relname OPERATOR(pg_catalog.=) (pg_catalog.parse_ident(name))[2]);
COMMENT ON FUNCTION ocx._relation_oid(text) IS
    'internal: the oid of a table named schema.table (quoted as needed), from the catalogs; NULL if none';

CREATE FUNCTION ocx._projection_tables(tables regclass[]) RETURNS text[]
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    c pg_class;
    names text[] := '{}';
BEGIN
    IF tables IS NULL THEN
        RETURN NULL;
    END IF;
    IF cardinality(tables) = 0 OR array_ndims(tables) > 1 OR array_position(tables, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'projection tables must not be empty, multidimensional or contain nulls' USING ERRCODE = 'OX201',
            HINT = 'Pass NULL when the projection declares no read-model tables.';
    END IF;
    FOREACH t IN ARRAY tables LOOP
        SELECT * INTO c FROM pg_class WHERE oid = t;
        IF c.relkind <> 'r' OR c.relispartition OR c.relpersistence = 't'
           OR c.relnamespace IN ('pg_catalog'::regnamespace, 'ocx'::regnamespace)
           OR (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace) LIKE 'ocx\_shadow\_%'
           OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = t OR i.inhparent = t) THEN
            RAISE EXCEPTION 'projection table % must be an ordinary table', t USING ERRCODE = 'OX201',
                DETAIL = 'A read-model table is a permanent or unlogged table, neither partitioned nor inherited, outside schemas ocx, ocx_shadow_* and pg_catalog.';
        END IF;
        IF NOT pg_has_role(ocx._caller(), c.relowner, 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of table %', t USING ERRCODE = '42501',
                DETAIL = 'A blue/green rebuild replaces the table; only its owner may declare it.';
        END IF;
        IF (SELECT count(*) FROM unnest(tables) u JOIN pg_class uc ON uc.oid = u WHERE uc.relname = c.relname) > 1 THEN
            RAISE EXCEPTION 'projection tables must have distinct names' USING ERRCODE = 'OX201',
                DETAIL = format('More than one table is named %I.', c.relname),
                HINT = 'A blue/green rebuild builds the tables side by side in one shadow schema.';
        END IF;
        names := names || (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_namespace n WHERE n.oid = c.relnamespace);
    END LOOP;
    RETURN names;
END;
$$;
COMMENT ON FUNCTION ocx._projection_tables(regclass[]) IS
    'internal: the checked read-model tables of define_projection, as schema-qualified names';

CREATE FUNCTION ocx._projection_shadow_schema(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'ocx_shadow_' OPERATOR(pg_catalog.||)
           pg_catalog.left(pg_catalog.regexp_replace(pg_catalog.lower(name), '[^a-z0-9_]', '_', 'g'), 40)
           OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.md5(name), 8);
COMMENT ON FUNCTION ocx._projection_shadow_schema(text) IS
    'internal: the shadow schema of a projection''s blue/green rebuild (ocx_shadow_<name>_<hash>)';

-- May the projection be rebuilt blue/green: raises OX201 (not possible for
-- this projection) or OX232 (its tables cannot be swapped now).
CREATE FUNCTION ocx._projection_shadow_check(p ocx.projections) RETURNS void
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner regrole := to_regrole(quote_ident(p.owner));
    tn text;
    t regclass;
    c pg_class;
    users text;
BEGIN
    IF p.mode <> 'async' THEN
        RAISE EXCEPTION 'inline projection "%" cannot be rebuilt blue/green', p.name USING ERRCODE = 'OX201',
            DETAIL = 'Appends apply an inline projection to its live tables in their own transactions.',
            HINT = 'Rebuild it without shadow => true, or define it as async.';
    END IF;
    IF p.tables IS NULL THEN
        RAISE EXCEPTION 'projection "%" declares no read-model tables', p.name USING ERRCODE = 'OX201',
            DETAIL = 'A blue/green rebuild builds shadow copies of the tables the projection declares.',
            HINT = 'Define it again with tables => ''{...}'' naming the tables its handler writes.';
    END IF;
    IF owner IS NULL THEN
        RAISE EXCEPTION 'the role that defined projection "%" no longer exists', p.name USING ERRCODE = 'OX502';
    END IF;
    IF NOT has_database_privilege(owner, current_database(), 'CREATE') THEN
        RAISE EXCEPTION 'role "%" that owns projection "%" may not create the shadow schema', p.owner, p.name
            USING ERRCODE = 'OX232',
            HINT = format('GRANT CREATE ON DATABASE %I TO %I.', current_database(), p.owner);
    END IF;
    FOREACH tn IN ARRAY p.tables LOOP
        t := ocx._relation_oid(tn);
        IF t IS NULL THEN
            RAISE EXCEPTION 'read-model table % of projection "%" does not exist', tn, p.name USING ERRCODE = 'OX232',
                HINT = 'Define the projection again with its current tables.';
        END IF;
        SELECT * INTO c FROM pg_class WHERE oid = t;
        IF c.relkind <> 'r' OR c.relispartition
           OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = t OR i.inhparent = t) THEN
            RAISE EXCEPTION 'read-model table % is no longer an ordinary table', t USING ERRCODE = 'OX232';
        END IF;
        IF NOT pg_has_role(owner, c.relowner, 'USAGE') OR NOT has_schema_privilege(owner, c.relnamespace, 'CREATE') THEN
            RAISE EXCEPTION 'role "%" that owns projection "%" may not replace table %', p.owner, p.name, t
                USING ERRCODE = 'OX232',
                DETAIL = 'The swap drops the table and moves its shadow copy into its schema, as the projection''s owner.',
                HINT = 'The projection''s owner must own the table (or be a member of its owner) and have CREATE on its schema.';
        END IF;
        IF c.relrowsecurity THEN
            RAISE EXCEPTION 'read-model table % has row-level security', t USING ERRCODE = 'OX232',
                DETAIL = 'Its policies would not be carried over to the rebuilt table.',
                HINT = 'Rebuild without shadow => true.';
        END IF;
        -- everything that depends on the table but its own parts (columns,
        -- indexes, constraints other than foreign keys, defaults, extended
        -- statistics, its row type, TOAST table and identity sequences)
        SELECT string_agg(DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid), ', ') INTO users
          FROM pg_depend d
         WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = t)
                OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype))
           AND d.deptype IN ('n', 'a')
           AND NOT (d.classid = 'pg_class'::regclass AND d.objid = t)
           AND NOT (d.classid = 'pg_class'::regclass
                    AND EXISTS (SELECT FROM pg_index i WHERE i.indexrelid = d.objid AND i.indrelid = t))
           AND NOT (d.classid = 'pg_constraint'::regclass
                    AND EXISTS (SELECT FROM pg_constraint k
                                 WHERE k.oid = d.objid AND k.conrelid = t AND k.contype <> 'f'))
           AND NOT (d.classid = 'pg_attrdef'::regclass
                    AND EXISTS (SELECT FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = t))
           AND NOT (d.classid = 'pg_statistic_ext'::regclass
                    AND EXISTS (SELECT FROM pg_statistic_ext s WHERE s.oid = d.objid AND s.stxrelid = t));
        IF users IS NOT NULL THEN
            RAISE EXCEPTION 'read-model table % cannot be swapped by a blue/green rebuild', t USING ERRCODE = 'OX232',
                DETAIL = format('Other objects depend on it: %s.', users),
                HINT = 'Drop the dependent objects (views, foreign keys, triggers, rules, publications, sequences it owns) or rebuild without shadow => true.';
        END IF;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION ocx._projection_shadow_check(ocx.projections) IS
    'internal: raise OX201 or OX232 unless the projection''s read-model tables can be rebuilt blue/green';

-- Statements that give dst the owner, privileges (table and column) and
-- comment of src.
CREATE FUNCTION ocx._projection_acl_sync(src regclass, dst regclass) RETURNS text[]
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s pg_class;
    d pg_class;
    r record;
    stmts text[] := '{}';
BEGIN
    SELECT * INTO s FROM pg_class WHERE oid = src;
    SELECT * INTO d FROM pg_class WHERE oid = dst;
    IF d.relowner <> s.relowner THEN
        stmts := stmts || format('ALTER TABLE %s OWNER TO %I', dst, pg_get_userbyid(s.relowner));
    END IF;
    FOR r IN SELECT a.grantee FROM aclexplode(COALESCE(d.relacl, acldefault('r', d.relowner))) a
             UNION SELECT s.relowner LOOP
        stmts := stmts || format('REVOKE ALL ON TABLE %s FROM %s', dst,
                                 CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    FOR r IN SELECT a.grantee, a.privilege_type, a.is_grantable
               FROM aclexplode(COALESCE(s.relacl, acldefault('r', s.relowner))) a LOOP
        stmts := stmts || format('GRANT %s ON TABLE %s TO %s%s', r.privilege_type, dst,
                                 CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                                 CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    FOR r IN SELECT at.attname, a.grantee, a.privilege_type, a.is_grantable
               FROM pg_attribute at, aclexplode(at.attacl) a
              WHERE at.attrelid = src AND at.attnum > 0 AND NOT at.attisdropped AND at.attacl IS NOT NULL LOOP
        stmts := stmts || format('GRANT %s (%I) ON TABLE %s TO %s%s', r.privilege_type, r.attname, dst,
                                 CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                                 CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    RETURN stmts || format('COMMENT ON TABLE %s IS %L', dst, obj_description(src, 'pg_class'));
END;
$$;
COMMENT ON FUNCTION ocx._projection_acl_sync(regclass, regclass) IS
    'internal: statements giving a shadow table the owner, privileges and comment of its live table';

-- Drop a projection's shadow schema (as its owner) and forget the blue/green
-- rebuild; reason, if given, becomes its last error.
CREATE FUNCTION ocx._projection_shadow_discard(name text, reason text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections := ocx._projection_row(name);
BEGIN
    IF p.shadow_schema IS NULL THEN
        RETURN;
    END IF;
    IF to_regnamespace(quote_ident(p.shadow_schema)) IS NOT NULL THEN
        PERFORM ocx._execute_as_author(to_regrole(quote_ident(p.owner)),
                                       ARRAY[format('DROP SCHEMA %I CASCADE', p.shadow_schema)]);
    END IF;
    UPDATE ocx.projections
       SET shadow_schema = NULL, shadow_checkpoint_txid = NULL, shadow_checkpoint_position = NULL,
           shadow_failures = 0, last_error = COALESCE(reason, last_error),
           last_error_at = CASE WHEN reason IS NULL THEN last_error_at ELSE now() END,
           updated_at = now()
     WHERE projections.name = p.name;
END;
$$;
COMMENT ON FUNCTION ocx._projection_shadow_discard(text, text) IS
    'internal: drop a projection''s shadow schema and forget its blue/green rebuild (reason: recorded as last_error)';

-- Create the shadow schema and the empty copies of the tables, as the owner.
CREATE FUNCTION ocx._projection_shadow_create(p ocx.projections) RETURNS text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sh text := ocx._projection_shadow_schema(p.name);
    owner regrole := to_regrole(quote_ident(p.owner));
    tn text;
    c record;
    stmts text[];
BEGIN
    IF to_regnamespace(quote_ident(sh)) IS NOT NULL THEN
        RAISE EXCEPTION 'schema "%" already exists', sh USING ERRCODE = 'OX232',
            DETAIL = format('A blue/green rebuild of projection "%s" builds its tables in that schema.', p.name),
            HINT = 'It is not a shadow schema of a running rebuild: drop or rename it.';
    END IF;
    stmts := ARRAY[format('CREATE SCHEMA %I', sh)];
    FOREACH tn IN ARRAY p.tables LOOP
        SELECT cl.relname, cl.relpersistence, ts.spcname INTO c
          FROM pg_class cl LEFT JOIN pg_tablespace ts ON ts.oid = cl.reltablespace
         WHERE cl.oid = ocx._relation_oid(tn);
        stmts := stmts || format('CREATE %sTABLE %I.%I (LIKE %s INCLUDING ALL)%s',
                                 CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, sh, c.relname, tn,
                                 CASE WHEN c.spcname IS NOT NULL THEN format(' TABLESPACE %I', c.spcname) ELSE '' END);
    END LOOP;
    PERFORM ocx._execute_as_author(owner, stmts);
    stmts := '{}';
    FOREACH tn IN ARRAY p.tables LOOP
        stmts := stmts || ocx._projection_acl_sync(ocx._relation_oid(tn)::regclass,
                              ocx._relation_oid(format('%I.%I', sh, (SELECT relname FROM pg_class
                                                                      WHERE oid = ocx._relation_oid(tn))))::regclass);
    END LOOP;
    PERFORM ocx._execute_as_author(owner, stmts);
    RETURN sh;
END;
$$;
COMMENT ON FUNCTION ocx._projection_shadow_create(ocx.projections) IS
    'internal: create a projection''s shadow schema with empty copies of its read-model tables (as its owner); returns the schema';

-- Called by the worker once the shadow replay has caught up: in the worker's
-- transaction, lock the live tables (waiting at most 1 s), give the shadow
-- tables their owner, privileges and comment, drop the live tables, move the
-- shadow tables in, and move the checkpoint to the shadow's.  false (try
-- again later) when the locks were not granted or the live checkpoint is
-- still ahead of the shadow's.
CREATE FUNCTION ocx._projection_swap(name text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ocx.projections;
    owner regrole;
    saved_timeout text := current_setting('lock_timeout');
    tn text;
    c record;
    stmts text[] := '{}';
BEGIN
    SELECT * INTO p FROM ocx.projections WHERE projections.name = _projection_swap.name FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR p.shadow_schema IS NULL THEN
        RETURN false;
    END IF;
    -- not before the shadow has every event the live tables have: a reader
    -- must never see the read model go back
    IF (p.shadow_checkpoint_txid, p.shadow_checkpoint_position) < (p.checkpoint_txid, p.checkpoint_position) THEN
        RETURN false;
    END IF;
    owner := to_regrole(quote_ident(p.owner));
    BEGIN
        PERFORM set_config('lock_timeout', '1s', true);
        PERFORM ocx._execute_as_author(owner, ARRAY[format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE',
                                                           array_to_string(p.tables, ', '))]);
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;
    END;
    PERFORM set_config('lock_timeout', saved_timeout, true);
    -- under the locks nothing new can come to depend on the tables
    PERFORM ocx._projection_shadow_check(p);
    FOREACH tn IN ARRAY p.tables LOOP
        SELECT cl.relname, n.nspname INTO c
          FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = ocx._relation_oid(tn);
        stmts := stmts
                 || ocx._projection_acl_sync(ocx._relation_oid(tn)::regclass,
                                             ocx._relation_oid(format('%I.%I', p.shadow_schema, c.relname))::regclass)
                 || format('DROP TABLE %s', tn)
                 || format('ALTER TABLE %I.%I SET SCHEMA %I', p.shadow_schema, c.relname, c.nspname);
    END LOOP;
    PERFORM ocx._execute_as_author(owner, stmts || format('DROP SCHEMA %I', p.shadow_schema));
    -- every event up to the shadow checkpoint is in the new tables
    DELETE FROM ocx.dead_letters d WHERE d.projection = p.name AND d.state IN ('parked', 'held');
    UPDATE ocx.projections
       SET checkpoint_txid = p.shadow_checkpoint_txid, checkpoint_position = p.shadow_checkpoint_position,
           checkpoint_time = (SELECT e.time FROM ocx.events e WHERE e.global_position = p.shadow_checkpoint_position),
           events_applied = p.rebuild_done, failing_position = NULL, failing_attempts = 0, retry_at = NULL,
           rebuild_finished_at = now(), shadow_schema = NULL, shadow_checkpoint_txid = NULL,
           shadow_checkpoint_position = NULL, shadow_failures = 0, updated_at = now()
     WHERE projections.name = p.name;
    RETURN true;
END;
$$;
COMMENT ON FUNCTION ocx._projection_swap(text) IS
    'internal (worker): swap a caught-up blue/green rebuild''s shadow tables in for the live ones, with the checkpoint, in one transaction; false when the live tables are busy';

CREATE OR REPLACE FUNCTION ocx.drop_projection(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._projection_row(name);
    PERFORM ocx._projection_shadow_discard(name);
    DELETE FROM ocx.projections p WHERE p.name = drop_projection.name;
END;
$$;
COMMENT ON FUNCTION ocx.drop_projection(text) IS
    'remove a projection, its checkpoint, its dead letters and the shadow tables of a blue/green rebuild (the read model tables are yours to drop)';

-- ocx.projection_status gains shadow_checkpoint: its final text is in 95_partitions.sql.
