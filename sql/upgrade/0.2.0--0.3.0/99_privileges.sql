-- Last: the grant rule over every object, old and new.  The rule and the
-- function that applies it are stated once, here, as in
-- sql/parts/90_security.sql (a fragment that changes them changes this copy;
-- t/090 holds the upgrade equal to a fresh install).

CREATE OR REPLACE FUNCTION ocx.privilege_rules()
    RETURNS TABLE (kind text, pattern text, grantee text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.kind, r.pattern, r.grantee
      FROM (VALUES
        ('routine', '^(_call_as_author|_regprocedure_as|_execute_as_author|_apply_privileges|distribute|set_logical_subscriber|partition_log)$', NULL),
        ('routine', '^(read_|stream_version$|category$|to_cloudevent$|load$|last_load$|upcast$|'
                    'cursor|txid$|global_position$|stream_partition$|worker_status$|'
                    'trace$|metrics$|privilege_rules$|log_horizon$|log_txid$|horizon_holder$|'
                    'last_append_cursor$|wait_for$|_horizon_appenders$|export$)', 'ocx_reader'),
        ('routine', '^(append|send_command$|publish$|poll$|ack$|claim_|complete_|fail_|'
                    'start_saga$|cancel_command$|delete_stream$)', 'ocx_writer'),
        ('routine', '^retry_delay$', 'ocx_reader'),
        ('routine', '^(last_event|stream_exists)$', 'ocx_reader'),
        ('routine', '^(saga_graph|projection_graph)$', 'ocx_reader'),
        ('routine', '^(define_|drop_|create_|rebuild_|pause_|resume_|retry_|snapshot|reset_|purge_|abort_)',
                    'ocx_admin'),
        -- tables no role but ocx_owner reads: no tenant column (the time map,
        -- removals: they would show any tenant's writes and deletions), keys,
        -- the import's batch (ocx_admin only INSERTs into import_staging)
        ('table', '^(time_map|time_map_state|subject_keys|erasures|removals|import_staging)$', NULL)
      ) AS r(kind, pattern, grantee);
END;
COMMENT ON FUNCTION ocx.privilege_rules() IS
    'the name patterns ocx._apply_privileges() grants by: routines (grantee NULL: never granted) and owner-only tables (kind table, grantee NULL); see docs/security.md';

CREATE OR REPLACE FUNCTION ocx._apply_privileges() RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ns      oid := 'ocx'::regnamespace;
    r       record;
    changed boolean;
    roles   text[] := ARRAY['ocx_reader', 'ocx_writer', 'ocx_admin'];
BEGIN
    -- ownership: ocx_owner owns every table, view, standalone sequence (the
    -- others follow their table) and routine
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relkind FROM pg_catalog.pg_class c
         WHERE c.relnamespace = ns AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
           AND c.relowner <> 'ocx_owner'::regrole
           AND NOT (c.relkind = 'S' AND EXISTS (
                    SELECT FROM pg_catalog.pg_depend d
                     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                       AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO ocx_owner',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.rel);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = ns AND p.proowner <> 'ocx_owner'::regrole LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO ocx_owner', r.fn);
    END LOOP;
    EXECUTE 'GRANT USAGE ON SCHEMA ocx TO ocx_owner';
    -- views read with the caller's rights and row-level security, never
    -- with their owner's (the caller's ocx.tenant decides what they show)
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_catalog.pg_class c
              WHERE c.relnamespace = ns AND c.relkind = 'v'
                AND NOT COALESCE(c.reloptions @> ARRAY['security_invoker=true'], false) LOOP
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', r.rel);
    END LOOP;

    -- 1-5: one level per routine (1 reader, 2 writer, 3 admin, 4 nobody)
    CREATE TEMP TABLE IF NOT EXISTS ocx_privilege_levels (fn oid PRIMARY KEY, name text, lvl int)
        ON COMMIT DROP;
    TRUNCATE pg_temp.ocx_privilege_levels;
    INSERT INTO pg_temp.ocx_privilege_levels
    SELECT p.oid, p.proname,
           CASE WHEN p.prorettype = 'pg_catalog.trigger'::regtype THEN 4
                ELSE COALESCE((SELECT CASE x.grantee WHEN 'ocx_reader' THEN 1
                                                     WHEN 'ocx_writer' THEN 2
                                                     WHEN 'ocx_admin' THEN 3 ELSE 5 END
                                 FROM ocx.privilege_rules() x
                                WHERE x.kind = 'routine' AND p.proname ~ x.pattern
                                ORDER BY x.grantee IS NOT NULL, 1 LIMIT 1),
                              CASE WHEN p.proname LIKE '\_%' THEN 4 ELSE 3 END)
           END
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = ns;

    -- internal routines views use: readers query views, the view's function
    -- calls run with the reader's privileges
    UPDATE pg_temp.ocx_privilege_levels l SET lvl = 1
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_rewrite rw ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND rw.oid = d.objid
      JOIN pg_catalog.pg_class c ON c.oid = rw.ev_class AND c.relnamespace = ns
     WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = l.fn
       AND l.name LIKE '\_%' AND l.lvl BETWEEN 2 AND 4;

    -- internal routines called by granted routines, to a fixpoint
    LOOP
        changed := false;
        FOR r IN
            SELECT l.fn, min(c.lvl) AS lvl
              FROM pg_temp.ocx_privilege_levels l
              JOIN pg_temp.ocx_privilege_levels c ON c.lvl < l.lvl
              JOIN pg_catalog.pg_proc cp ON cp.oid = c.fn
             WHERE l.name LIKE '\_%' AND l.lvl <= 4
               AND (EXISTS (SELECT FROM pg_catalog.pg_depend d
                             WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = c.fn
                               AND d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = l.fn)
                    OR (cp.prosqlbody IS NULL
                        AND cp.prolang NOT IN (SELECT g.oid FROM pg_catalog.pg_language g
                                                WHERE g.lanname IN ('internal', 'c'))
                        AND strpos(cp.prosrc, 'ocx.' || l.name || '(') > 0))
             GROUP BY l.fn
        LOOP
            UPDATE pg_temp.ocx_privilege_levels l SET lvl = r.lvl WHERE l.fn = r.fn AND l.lvl > r.lvl;
            IF FOUND THEN
                changed := true;
            END IF;
        END LOOP;
        EXIT WHEN NOT changed;
    END LOOP;

    EXECUTE 'REVOKE ALL ON ALL ROUTINES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    FOR r IN SELECT l.fn, l.lvl FROM pg_temp.ocx_privilege_levels l WHERE l.lvl < 4 LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %I', r.fn::regprocedure, roles[r.lvl]);
    END LOOP;

    -- as whom: the writer and admin entry points run with ocx_owner's rights
    FOR r IN
        SELECT l.fn::regprocedure AS fn, p.prosecdef, p.proconfig
          FROM pg_temp.ocx_privilege_levels l JOIN pg_catalog.pg_proc p ON p.oid = l.fn
         WHERE l.lvl IN (2, 3) AND l.name NOT LIKE '\_%'
           AND NOT (p.prolang = (SELECT g.oid FROM pg_catalog.pg_language g WHERE g.lanname = 'c')
                    AND p.prosrc = 'ocx_owner_call')
           AND NOT (p.prosecdef AND p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'])
    LOOP
        EXECUTE format('ALTER ROUTINE %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', r.fn);
    END LOOP;

    -- tables, views, sequences: read by ocx_reader, written by ocx_owner only
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    EXECUTE 'GRANT USAGE ON SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT SELECT ON ALL SEQUENCES IN SCHEMA ocx TO ocx_reader';
    -- but the owner-only tables of ocx.privilege_rules() (kind 'table', no
    -- grantee): ocx_owner's functions read them for the caller
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_catalog.pg_class c
              WHERE c.relnamespace = ns AND c.relkind IN ('r', 'p', 'v', 'm')
                AND EXISTS (SELECT FROM ocx.privilege_rules() x
                             WHERE x.kind = 'table' AND x.grantee IS NULL AND c.relname ~ x.pattern) LOOP
        EXECUTE format('REVOKE SELECT ON %s FROM ocx_reader', r.rel);
    END LOOP;
    -- the import's staging table: ocx_admin copies a batch into it
    -- (ocx.import_begin, COPY, ocx.import_commit; docs/migrating.md)
    IF pg_catalog.to_regclass('ocx.import_staging') IS NOT NULL THEN
        EXECUTE 'GRANT INSERT ON ocx.import_staging TO ocx_admin';
    END IF;
    DROP TABLE pg_temp.ocx_privilege_levels;
END
$$;
COMMENT ON FUNCTION ocx._apply_privileges() IS
    'internal: give every ocx object to ocx_owner, grant routines to ocx_reader/ocx_writer/ocx_admin by ocx.privilege_rules(), make the writer and admin entry points run with ocx_owner''s rights; run by the install and every upgrade script';

SELECT ocx._apply_privileges();
