-- ---------------------------------------------------------------------------
-- Security: the roles ocx_owner, ocx_reader, ocx_writer, ocx_admin, who owns
-- what, who may run what, and as whom it runs (docs/security.md).
--
-- This part runs after every other part.  It does not list objects one by
-- one: ocx._apply_privileges() classifies every routine, table, view and
-- sequence in schema ocx by the rule below, so an object another subsystem
-- adds is covered the day it lands.  Upgrade scripts call it again as their
-- last statement.
--
-- Ownership: every table, view, sequence and routine of schema ocx belongs to
-- ocx_owner (NOLOGIN, no attributes, no members).  Only it holds INSERT,
-- UPDATE, DELETE or TRUNCATE on ocx tables: the other roles write only
-- through the entry points below, which run with its rights.
--
-- Routines, first match wins:
--   1. trigger functions                       no grant (triggers fire without EXECUTE)
--   2. a name in the "never" pattern           no grant (ocx's own machinery)
--   3. a name in the reader / writer / admin patterns below  that role
--   4. a name starting with "_" (internal)     the least privileged role that
--      can reach it: a role's routine whose body calls it (SQL-standard bodies
--      through pg_depend, other languages by the text "ocx._name("), or a view
--      that uses it (views are readable by ocx_reader); repeated until nothing
--      changes.  Reached by nobody: no grant (ocx_owner, superusers and the
--      workers only).
--   5. anything else                           ocx_admin (fail closed)
-- PUBLIC keeps nothing.
--
-- As whom routines run:
--   granted to ocx_writer or ocx_admin (3)     with ocx_owner's rights: SECURITY
--      DEFINER with SET search_path = pg_catalog, pg_temp; except the C
--      trampolines (AS 'ocx_owner_call'), which switch to ocx_owner themselves
--      and call ocx._<name>, so that the caller can be recorded
--   everything else                            the caller's rights (INVOKER)
-- Row-level security (FORCE) applies to ocx_owner, so every write binds to the
-- caller's ocx.tenant.
--
-- Tables, views and sequences: ocx_reader SELECT; nobody else anything, but
-- INSERT on ocx.import_staging for ocx_admin (the COPY of a bulk import).
-- ---------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_owner') THEN
        CREATE ROLE ocx_owner NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_reader') THEN
        CREATE ROLE ocx_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_writer') THEN
        CREATE ROLE ocx_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_admin') THEN
        CREATE ROLE ocx_admin NOLOGIN;
    END IF;
    -- membership is idempotent: GRANT of an existing membership only notices
    IF NOT pg_catalog.pg_has_role('ocx_writer', 'ocx_reader', 'MEMBER') THEN
        GRANT ocx_reader TO ocx_writer;
    END IF;
    IF NOT pg_catalog.pg_has_role('ocx_admin', 'ocx_writer', 'MEMBER') THEN
        GRANT ocx_writer TO ocx_admin;
    END IF;
    -- the role the workers read the log as: every tenant's events (BYPASSRLS),
    -- nothing else (SELECT through ocx_reader); no login, no members
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_worker') THEN
        CREATE ROLE ocx_worker NOLOGIN BYPASSRLS;
    END IF;
    IF NOT pg_catalog.pg_has_role('ocx_worker', 'ocx_reader', 'MEMBER') THEN
        GRANT ocx_reader TO ocx_worker;
    END IF;
END
$$;

-- Who called: the role an entry point records (the author of user code, the
-- sender of a command).  See src/security.c.
CREATE FUNCTION ocx._caller() RETURNS regrole
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_caller';
COMMENT ON FUNCTION ocx._caller() IS
    'internal: the role that called the running ocx entry point (recorded as author, sender, claimer)';

-- User code called from SQL entry points (a projection's reset function, a
-- handler on retry_dead_letter): as its author, checked first.  Only ocx_owner
-- (an entry point) may call it.
CREATE FUNCTION ocx._call_as_author(fn text, author regrole, e ocx.event DEFAULT NULL) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_call_as_author';
COMMENT ON FUNCTION ocx._call_as_author(text, regrole, ocx.event) IS
    'internal: call fn() or fn(e) (a stored signature, looked up as author) as author, after checking that author may still run it (entry points only)';

-- A function named by the caller inside JSON (ocx.define_module), looked up
-- with the caller's rights, not ocx_owner's.  Entry points only.
CREATE FUNCTION ocx._regprocedure_as(signature text, role regrole) RETURNS regprocedure
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_regprocedure_as';
COMMENT ON FUNCTION ocx._regprocedure_as(text, regrole) IS
    'internal: the function a signature names, looked up with role''s rights (entry points only)';

-- Per-stream state of the other subsystems follows its stream's tenant: a
-- row is visible when its stream is (the policy's sub-select on ocx.streams
-- is itself subject to the streams policy).  Rows without a stream (NULL
-- stream_id) are visible to all.  Applied to the tables below when they
-- exist and have a stream_id column.
DO $$
DECLARE
    t    text;
    qual text;
BEGIN
    FOREACH t IN ARRAY ARRAY['snapshots', 'dead_letters'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('ocx.' OPERATOR(pg_catalog.||) t)
                      AND a.attname OPERATOR(pg_catalog.=) 'stream_id' AND NOT a.attisdropped) THEN
            EXECUTE pg_catalog.format('ALTER TABLE ocx.%I ENABLE ROW LEVEL SECURITY', t);
            EXECUTE pg_catalog.format('ALTER TABLE ocx.%I FORCE ROW LEVEL SECURITY', t);
            qual := pg_catalog.format('stream_id IS NULL OR EXISTS (SELECT FROM ocx.streams s '
                                      'WHERE s.stream_id OPERATOR(pg_catalog.=) %I.stream_id)', t);
            -- dead letters are managed by ocx_admin across tenants (retry,
            -- rebuild), so its members see all of them
            IF t OPERATOR(pg_catalog.=) 'dead_letters' THEN
                qual := qual OPERATOR(pg_catalog.||)
                        ' OR (SELECT pg_catalog.pg_has_role(''ocx_admin'', ''MEMBER''))';
            END IF;
            EXECUTE pg_catalog.format(
                'CREATE POLICY %I ON ocx.%I FOR ALL USING (%s) WITH CHECK (%s)',
                t OPERATOR(pg_catalog.||) '_tenant', t, qual, qual);
            EXECUTE pg_catalog.format(
                'COMMENT ON POLICY %I ON ocx.%I IS %L', t OPERATOR(pg_catalog.||) '_tenant', t,
                'a row is visible when its stream is (the stream''s tenant is the session''s ocx.tenant)'
                OPERATOR(pg_catalog.||) CASE WHEN t OPERATOR(pg_catalog.=) 'dead_letters'
                                             THEN '; members of ocx_admin see all' ELSE '' END);
        END IF;
    END LOOP;
END
$$;

-- The classification rule as data, so that tests and docs can read it.
CREATE FUNCTION ocx.privilege_rules()
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

CREATE FUNCTION ocx._apply_privileges() RETURNS void
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
