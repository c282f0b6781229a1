-- ---------------------------------------------------------------------------
-- Security: the roles ocx_reader, ocx_writer, ocx_admin and their grants.
--
-- This part runs after every other part.  It does not list functions one by
-- one: ocx._apply_privileges() classifies every routine, table, view and
-- sequence in schema ocx by the rule below (docs/security.md has it as a
-- table), so a function another subsystem adds is covered the day it lands.
-- Upgrade scripts call it again as their last statement.
--
-- Routines, first match wins:
--   1. trigger functions                       no grant (triggers fire without EXECUTE)
--   2. a name in the reader / writer / admin patterns below  that role
--   3. a name starting with "_" (internal)     the least privileged role that
--      can reach it: a role's routine whose body calls it (SQL-standard bodies
--      through pg_depend, other languages by the text "ocx._name("), or a view
--      that uses it (views are readable by ocx_reader); repeated until nothing
--      changes.  Reached by nobody: no grant (superuser and the workers only).
--   4. anything else                           ocx_admin (fail closed)
-- PUBLIC keeps nothing.
--
-- Tables, views and sequences:
--   ocx_reader  SELECT on every table, view and sequence
--   ocx_writer  INSERT on ocx.events (through ocx.append*; triggers refuse
--               UPDATE/DELETE/TRUNCATE), INSERT/UPDATE on ocx.streams,
--               INSERT/UPDATE/DELETE on the state tables named in the writer
--               table pattern, UPDATE (created_at) on the definitions its
--               functions lock (the lock pattern), USAGE on sequences
--   ocx_admin   INSERT/UPDATE/DELETE on every other table
-- Row-level security (10_log.sql) keeps tenants apart inside those grants.
-- ---------------------------------------------------------------------------

DO $$
BEGIN
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
END
$$;

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
        ('routine', '^(read_|stream_version$|category$|to_cloudevent$|load$|last_load$|upcast$|'
                    'cursor|txid$|global_position$|stream_partition$|worker_status$|'
                    'trace$|metrics$|stats$|privilege_rules$)', 'ocx_reader'),
        ('routine', '^(append|send_command$|publish$|poll$|ack$|nack$|claim_|complete_|fail_|'
                    'start_saga$)', 'ocx_writer'),
        ('routine', '^(define_|drop_|create_|rebuild_|pause_|resume_|retry_|snapshot|reset_)',
                    'ocx_admin'),
        ('lock',    '^(subscriptions|saga_definitions)$', 'ocx_writer'),
        ('table',   '^(snapshots|commands|command_history|subscription_partitions|'
                    'subscription_consumers|saga_instances|saga_steps|saga_timeouts)$', 'ocx_writer')
      ) AS r(kind, pattern, grantee);
END;
COMMENT ON FUNCTION ocx.privilege_rules() IS
    'the name patterns ocx._apply_privileges() grants by (see docs/security.md)';

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
    -- 1-4: one level per routine (1 reader, 2 writer, 3 admin, 4 nobody)
    CREATE TEMP TABLE IF NOT EXISTS ocx_privilege_levels (fn oid PRIMARY KEY, name text, lvl int)
        ON COMMIT DROP;
    TRUNCATE pg_temp.ocx_privilege_levels;
    INSERT INTO pg_temp.ocx_privilege_levels
    SELECT p.oid, p.proname,
           CASE WHEN p.prorettype = 'pg_catalog.trigger'::regtype THEN 4
                ELSE COALESCE((SELECT CASE x.grantee WHEN 'ocx_reader' THEN 1
                                                     WHEN 'ocx_writer' THEN 2 ELSE 3 END
                                 FROM ocx.privilege_rules() x
                                WHERE x.kind = 'routine' AND p.proname ~ x.pattern
                                ORDER BY 1 LIMIT 1),
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
       AND l.name LIKE '\_%' AND l.lvl > 1;

    -- internal routines called by granted routines, to a fixpoint
    LOOP
        changed := false;
        FOR r IN
            SELECT l.fn, min(c.lvl) AS lvl
              FROM pg_temp.ocx_privilege_levels l
              JOIN pg_temp.ocx_privilege_levels c ON c.lvl < l.lvl
              JOIN pg_catalog.pg_proc cp ON cp.oid = c.fn
             WHERE l.name LIKE '\_%'
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

    -- tables, views, sequences
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA ocx FROM PUBLIC, ocx_reader, ocx_writer, ocx_admin';
    EXECUTE 'GRANT USAGE ON SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT SELECT ON ALL SEQUENCES IN SCHEMA ocx TO ocx_reader';
    EXECUTE 'GRANT USAGE ON ALL SEQUENCES IN SCHEMA ocx TO ocx_writer';
    EXECUTE 'GRANT INSERT ON ocx.events TO ocx_writer';
    EXECUTE 'GRANT INSERT, UPDATE ON ocx.streams TO ocx_writer';
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relname
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace = ns AND c.relkind IN ('r', 'p')
           AND c.relname NOT IN ('events', 'streams')
    LOOP
        -- definitions that writer functions lock (SELECT ... FOR NO KEY
        -- UPDATE needs UPDATE on some column): UPDATE of created_at only
        IF EXISTS (SELECT FROM ocx.privilege_rules() x
                    WHERE x.kind = 'lock' AND r.relname ~ x.pattern)
           AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = r.rel AND a.attname = 'created_at' AND NOT a.attisdropped) THEN
            EXECUTE format('GRANT UPDATE (created_at) ON %s TO ocx_writer', r.rel);
        END IF;
        IF EXISTS (SELECT FROM ocx.privilege_rules() x
                    WHERE x.kind = 'table' AND r.relname ~ x.pattern) THEN
            EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO ocx_writer', r.rel);
        ELSE
            EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO ocx_admin', r.rel);
        END IF;
    END LOOP;
    DROP TABLE pg_temp.ocx_privilege_levels;
END
$$;
COMMENT ON FUNCTION ocx._apply_privileges() IS
    'internal: grant every ocx routine, table, view and sequence to ocx_reader/ocx_writer/ocx_admin by ocx.privilege_rules(); run by the install and every upgrade script';

SELECT ocx._apply_privileges();
