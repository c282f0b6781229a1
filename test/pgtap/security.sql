-- Roles, grants and SECURITY DEFINER settings (docs/security.md).
BEGIN;
SELECT plan(55);

-- the roles and their chain
SELECT has_role('ocx_reader');
SELECT has_role('ocx_writer');
SELECT has_role('ocx_admin');
SELECT is_member_of('ocx_reader', 'ocx_writer');
SELECT is_member_of('ocx_writer', 'ocx_admin');
SELECT is_empty($$ SELECT rolname FROM pg_catalog.pg_roles
                    WHERE rolname IN ('ocx_reader', 'ocx_writer', 'ocx_admin')
                      AND (rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole) $$,
                'the ocx roles cannot log in and have no special attributes');

-- PUBLIC: no routine, table, view or sequence in schema ocx
SELECT is_empty($$ SELECT p.oid::regprocedure::text
                     FROM pg_catalog.pg_proc p,
                          pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                    WHERE p.pronamespace = 'ocx'::regnamespace AND a.grantee = 0 $$,
                'no ocx routine is executable by PUBLIC');
SELECT is_empty($$ SELECT c.relname::text
                     FROM pg_catalog.pg_class c,
                          pg_catalog.aclexplode(COALESCE(c.relacl, pg_catalog.acldefault(
                              CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
                    WHERE c.relnamespace = 'ocx'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                      AND a.grantee = 0 $$,
                'no ocx table, view or sequence is accessible to PUBLIC');
SELECT ok(NOT pg_catalog.has_schema_privilege('public', 'ocx', 'CREATE'),
          'PUBLIC cannot create objects in schema ocx');

-- every routine is classified: no public-facing routine is left to the owner
-- alone, but those the "never" rule names (ocx.distribute: docs/security.md)
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace
                      AND p.proname NOT LIKE '\_%'
                      AND p.proname !~ (SELECT r.pattern FROM ocx.privilege_rules() r
                                         WHERE r.kind = 'routine' AND r.grantee IS NULL)
                      AND p.prorettype <> 'pg_catalog.trigger'::regtype
                      AND NOT pg_catalog.has_function_privilege('ocx_admin', p.oid, 'EXECUTE') $$,
                'ocx_admin can execute every non-internal ocx routine');

-- readers: reads, no writes, no definitions
SELECT function_privs_are('ocx', 'read_stream', ARRAY['text', 'bigint', 'integer', 'text', 'text[]', 'boolean'], 'ocx_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'read_all', ARRAY['ocx.cursor', 'integer', 'text[]', 'text[]', 'boolean', 'timestamp with time zone', 'boolean'], 'ocx_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'stream_version', ARRAY['text'], 'ocx_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', '_stream_arg', ARRAY['text'], 'ocx_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'wait_for', ARRAY['text', 'ocx.cursor', 'interval'], 'ocx_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'last_append_cursor', ARRAY[]::text[], 'ocx_reader', ARRAY['EXECUTE']);
SELECT ok(NOT (SELECT p.prosecdef FROM pg_catalog.pg_proc p
                WHERE p.oid = 'ocx.wait_for(text, ocx.cursor, interval)'::regprocedure),
          'wait_for runs with the caller''s rights (it shows only the projections the caller may read)');
SELECT function_privs_are('ocx', 'append', ARRAY['text', 'bigint', 'jsonb'], 'ocx_reader', ARRAY[]::text[]);
-- the backoff of retry policies is arithmetic, for readers too (not an admin's retry_)
SELECT function_privs_are('ocx', 'retry_delay', ARRAY['jsonb', 'integer'], 'ocx_reader', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'skip_dead_letter', ARRAY['bigint'], 'ocx_reader', ARRAY[]::text[]);
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace
                      AND p.proname ~ '^(append|send_command|publish|poll|ack|claim_|complete_|fail_|start_saga|define_|drop_|create_|rebuild_|pause_|resume_|retry_|skip_|snapshot|reset_)'
                      AND p.proname <> 'retry_delay'
                      AND pg_catalog.has_function_privilege('ocx_reader', p.oid, 'EXECUTE') $$,
                'ocx_reader can execute no writer or admin routine');
SELECT table_privs_are('ocx', 'events', 'ocx_reader', ARRAY['SELECT']);
SELECT table_privs_are('ocx', 'streams', 'ocx_reader', ARRAY['SELECT']);

-- writers: appends on top of reads, through ocx.append* only (0.2.0 granted
-- INSERT on ocx.events: forged txids, versions and times)
SELECT function_privs_are('ocx', 'append', ARRAY['text', 'bigint', 'jsonb'], 'ocx_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'append_event', ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'], 'ocx_writer', ARRAY['EXECUTE']);
SELECT table_privs_are('ocx', 'events', 'ocx_writer', ARRAY['SELECT']);
SELECT table_privs_are('ocx', 'streams', 'ocx_writer', ARRAY['SELECT']);
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace
                      AND p.proname ~ '^(define_|drop_|create_|rebuild_|pause_|resume_|retry_|skip_|snapshot|reset_)'
                      AND p.proname <> 'retry_delay'
                      AND pg_catalog.has_function_privilege('ocx_writer', p.oid, 'EXECUTE') $$,
                'ocx_writer can execute no admin routine');

-- the bus: writers consume and send, admins define
SELECT function_privs_are('ocx', 'poll', ARRAY['text', 'integer', 'text'], 'ocx_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'poll', ARRAY['text', 'integer', 'text'], 'ocx_reader', ARRAY[]::text[]);
SELECT function_privs_are('ocx', 'send_command',
                          ARRAY['text', 'jsonb', 'uuid', 'uuid', 'uuid', 'jsonb', 'timestamp with time zone'],
                          'ocx_writer', ARRAY['EXECUTE']);
SELECT function_privs_are('ocx', 'create_subscription',
                          ARRAY['text', 'text[]', 'text[]', 'integer', 'ocx.cursor', 'interval', 'text'],
                          'ocx_writer', ARRAY[]::text[]);
SELECT table_privs_are('ocx', 'subscriptions', 'ocx_writer', ARRAY['SELECT']);
SELECT column_privs_are('ocx', 'subscriptions', 'created_at', 'ocx_writer', ARRAY['SELECT'],
                        'writers hold no column privilege but SELECT (poll and ack lock with ocx_owner''s rights)');
SELECT column_privs_are('ocx', 'subscriptions', 'types', 'ocx_writer', ARRAY['SELECT'],
                        'writers cannot change a subscription''s filters');

-- admins: define through functions, write no table directly
SELECT table_privs_are('ocx', 'events', 'ocx_admin', ARRAY['SELECT']);
SELECT function_privs_are('ocx', '_apply_privileges', ARRAY[]::text[], 'ocx_admin', ARRAY[]::text[]);

-- the rule covers routines added later (an upgrade script re-applies it),
-- and applying it again changes nothing
CREATE TEMP TABLE acl_before AS
    SELECT p.oid::regprocedure::text AS fn, p.proacl::text AS acl
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'ocx'::regnamespace;
CREATE FUNCTION ocx._sec_test_helper(x int) RETURNS int LANGUAGE sql IMMUTABLE RETURN x;
CREATE FUNCTION ocx.read_sec_test(x int) RETURNS int LANGUAGE sql STABLE
    BEGIN ATOMIC SELECT ocx._sec_test_helper(x); END;
CREATE FUNCTION ocx._sec_test_plhelper() RETURNS int LANGUAGE sql IMMUTABLE RETURN 1;
CREATE FUNCTION ocx.append_sec_test() RETURNS int LANGUAGE plpgsql
    AS $$BEGIN RETURN ocx._sec_test_plhelper(); END$$;
CREATE FUNCTION ocx.define_sec_test() RETURNS void LANGUAGE sql RETURN NULL;
CREATE FUNCTION ocx.sec_test_unclassified() RETURNS void LANGUAGE sql RETURN NULL;
SELECT ocx._apply_privileges();
SELECT function_privs_are('ocx', 'read_sec_test', ARRAY['integer'], 'ocx_reader', ARRAY['EXECUTE'],
                          'a new read_ function goes to ocx_reader');
SELECT function_privs_are('ocx', '_sec_test_helper', ARRAY['integer'], 'ocx_reader', ARRAY['EXECUTE'],
                          'an internal function a reader''s SQL body calls goes to ocx_reader');
SELECT function_privs_are('ocx', '_sec_test_plhelper', ARRAY[]::text[], 'ocx_writer', ARRAY['EXECUTE'],
                          'an internal function a writer''s PL/pgSQL body calls goes to ocx_writer');
SELECT function_privs_are('ocx', '_sec_test_plhelper', ARRAY[]::text[], 'ocx_reader', ARRAY[]::text[],
                          '... and not to ocx_reader');
SELECT function_privs_are('ocx', 'define_sec_test', ARRAY[]::text[], 'ocx_writer', ARRAY[]::text[],
                          'a new define_ function is not for writers');
SELECT function_privs_are('ocx', 'sec_test_unclassified', ARRAY[]::text[], 'ocx_writer', ARRAY[]::text[],
                          'an unclassified function fails closed: admins only');
DROP FUNCTION ocx.read_sec_test(int), ocx._sec_test_helper(int), ocx.append_sec_test(),
    ocx._sec_test_plhelper(), ocx.define_sec_test(), ocx.sec_test_unclassified();
SELECT is_empty($$ SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace
                   EXCEPT SELECT fn, acl FROM acl_before $$,
                'applying the rule again leaves every existing grant as it was');

-- SECURITY DEFINER routines pin search_path
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace AND p.prosecdef
                      AND NOT COALESCE(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false) $$,
                'every SECURITY DEFINER routine has SET search_path = pg_catalog, pg_temp');

-- routines whose names resolve at run time (PL/pgSQL, SQL with a string
-- body) pin search_path (user code they call gets its own: src/security.c)
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                     JOIN pg_catalog.pg_language l ON l.oid = p.prolang
                    WHERE p.pronamespace = 'ocx'::regnamespace
                      AND l.lanname NOT IN ('c', 'internal') AND p.prosqlbody IS NULL
                      AND NOT COALESCE(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
                      $$,
                'run-time-resolved routines pin search_path = pg_catalog, pg_temp');

-- row-level security keeps tenants apart, for the owner too
SELECT policies_are('ocx', 'events', ARRAY['events_tenant']);
SELECT policies_are('ocx', 'streams', ARRAY['streams_tenant']);
SELECT is_empty($$ SELECT c.relname::text FROM pg_catalog.pg_class c
                    WHERE c.oid IN ('ocx.events'::regclass, 'ocx.streams'::regclass)
                      AND NOT (c.relrowsecurity AND c.relforcerowsecurity) $$,
                'ocx.events and ocx.streams ENABLE and FORCE row-level security');
SELECT is_empty($$ SELECT pol.polname::text FROM pg_catalog.pg_policy pol
                    WHERE pol.polrelid IN ('ocx.events'::regclass, 'ocx.streams'::regclass)
                      AND (pg_catalog.strpos(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
                                             'current_setting(''ocx.tenant''::text, true)') = 0
                           OR pg_catalog.strpos(pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
                                                'current_setting(''ocx.tenant''::text, true)') = 0) $$,
                'the tenant policies read and check ocx.tenant');

-- every alternative of every grant rule names a routine that exists (a rule
-- that matches nothing is dead, or a misspelling that grants nothing)
SELECT is_empty($$
    WITH alts AS (
        SELECT r.grantee, pg_catalog.unnest(pg_catalog.regexp_split_to_array(
                   pg_catalog.regexp_replace(r.pattern, '^\^\(?|\)\$?$', '', 'g'), '\|')) AS alt
          FROM ocx.privilege_rules() r WHERE r.kind = 'routine')
    SELECT a.grantee || ': ' || a.alt FROM alts a
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.pronamespace = 'ocx'::regnamespace
                          AND p.proname ~ ('^' || a.alt)) $$,
    'every alternative of ocx.privilege_rules() matches a routine of schema ocx');

-- owner-only tables (privilege_rules kind 'table'): no tenant column or keys
SELECT is_empty($$ SELECT c.relname::text FROM pg_catalog.pg_class c
                    WHERE c.relnamespace = 'ocx'::regnamespace
                      AND c.relname IN ('removals', 'time_map', 'time_map_state', 'subject_keys', 'erasures')
                      AND pg_catalog.has_table_privilege('ocx_admin', c.oid, 'SELECT') $$,
                'removals, the time map, data keys and erasures are readable by no ocx role');
SELECT table_privs_are('ocx', 'removals', 'ocx_reader', ARRAY[]::text[],
                       'a reader may not see which streams of any tenant were removed');
SELECT table_privs_are('ocx', 'seals', 'ocx_reader', ARRAY['SELECT'],
                       'seals (roots and cursors, no stream ids) stay readable');
SELECT is_empty($$
    WITH alts AS (
        SELECT pg_catalog.unnest(pg_catalog.regexp_split_to_array(
                   pg_catalog.regexp_replace(r.pattern, '^\^\(?|\)\$?$', '', 'g'), '\|')) AS alt
          FROM ocx.privilege_rules() r WHERE r.kind = 'table')
    SELECT a.alt FROM alts a
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                        WHERE c.relnamespace = 'ocx'::regnamespace AND c.relname = a.alt) $$,
    'every owner-only table rule names a table of schema ocx');

SELECT * FROM finish();
ROLLBACK;
