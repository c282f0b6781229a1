-- Least privilege by construction (docs/security.md, "Who runs what"):
-- ocx_owner owns everything and is the only role that writes ocx tables;
-- every other role writes through the entry points, which run with its
-- rights and bind to the caller's ocx.tenant; the caller is what is recorded.
BEGIN;
SELECT plan(75);

-- ocx_owner: no login, no attributes, no members
SELECT has_role('ocx_owner');
SELECT is_empty($$ SELECT rolname FROM pg_catalog.pg_roles
                    WHERE rolname = 'ocx_owner'
                      AND (rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb
                           OR rolreplication) $$,
                'ocx_owner cannot log in and has no special attributes');
SELECT is_empty($$ SELECT m.member::regrole::text FROM pg_catalog.pg_auth_members m
                    WHERE m.roleid = 'ocx_owner'::regrole $$,
                'nobody is a member of ocx_owner');
SELECT is((SELECT rolcanlogin::text || rolsuper::text || rolbypassrls::text || rolcreaterole::text
             FROM pg_catalog.pg_roles WHERE rolname = 'ocx_worker'), 'falsefalsetruefalse',
          'ocx_worker, the role the workers read as: no login, no superuser, BYPASSRLS (every tenant)');
SELECT is((SELECT string_agg(r.roleid::regrole::text || '>' || r.member::regrole::text, ',')
             FROM pg_catalog.pg_auth_members r
            WHERE 'ocx_worker'::regrole IN (r.roleid, r.member)), 'ocx_reader>ocx_worker',
          'ocx_worker has only ocx_reader''s privileges (SELECT) and no members');
SELECT ok(pg_catalog.has_schema_privilege('ocx_worker', 'ocx', 'USAGE')
          AND pg_catalog.has_table_privilege('ocx_worker', 'ocx.events', 'SELECT')
          AND pg_catalog.has_function_privilege('ocx_worker', 'ocx.read_all(ocx.cursor, integer, text[], text[], boolean, timestamptz, boolean)', 'EXECUTE'),
          'ocx_worker inherits what it needs to read the log');

-- it owns every object of schema ocx
SELECT is_empty($$ SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
                    WHERE c.relnamespace = 'ocx'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                      AND c.relowner <> 'ocx_owner'::regrole $$,
                'ocx_owner owns every table, view and sequence in ocx');
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace AND p.proowner <> 'ocx_owner'::regrole $$,
                'ocx_owner owns every routine in ocx');

-- nobody else holds INSERT, UPDATE, DELETE or TRUNCATE on any ocx table
-- (catalog), but ocx_admin INSERT on the import's staging table (the COPY of
-- a bulk import: docs/migrating.md; nothing reaches the log but through
-- ocx.import_commit)
SELECT is((SELECT string_agg(c.relname::text || ' ' || a.privilege_type || ' to ' || a.grantee::regrole::text, ',')
             FROM pg_catalog.pg_class c,
                  pg_catalog.aclexplode(COALESCE(c.relacl, pg_catalog.acldefault('r', c.relowner))) a
            WHERE c.relnamespace = 'ocx'::regnamespace AND c.relkind IN ('r', 'p')
              AND a.grantee <> 'ocx_owner'::regrole
              AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
          'import_staging INSERT to ocx_admin',
          'no role but ocx_owner holds INSERT, UPDATE, DELETE or TRUNCATE on an ocx table, but ocx_admin INSERT on ocx.import_staging');
SELECT is_empty($$ SELECT c.relname::text || '.' || at.attname || ' ' || a.privilege_type
                     FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_attribute at ON at.attrelid = c.oid AND at.attacl IS NOT NULL,
                          pg_catalog.aclexplode(at.attacl) a
                    WHERE c.relnamespace = 'ocx'::regnamespace
                      AND a.privilege_type IN ('INSERT', 'UPDATE') $$,
                'no column of an ocx table is writable by grant');

-- ... and every direct write is refused with 42501, for each ocx role and a plain login role
CREATE ROLE ocx_tap_login LOGIN;
CREATE FUNCTION pg_temp.direct_writes() RETURNS TABLE (role text, tbl text, op text, state text)
    LANGUAGE plpgsql AS $$
DECLARE
    t   regclass;
    col text;
BEGIN
    FOREACH role IN ARRAY ARRAY['ocx_reader', 'ocx_writer', 'ocx_admin', 'ocx_worker', 'ocx_tap_login'] LOOP
        FOR t, col IN
            SELECT c.oid::regclass,
                   (SELECT quote_ident(a.attname) FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.attidentity = '' AND a.attgenerated = '' ORDER BY a.attnum LIMIT 1)
              FROM pg_catalog.pg_class c
             WHERE c.relnamespace = 'ocx'::regnamespace AND c.relkind IN ('r', 'p')
        LOOP
            FOREACH op IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'] LOOP
                tbl := t::text;
                BEGIN
                    EXECUTE format('SET LOCAL ROLE %I', role);
                    EXECUTE CASE op WHEN 'INSERT' THEN format('INSERT INTO %s DEFAULT VALUES', t)
                                    WHEN 'UPDATE' THEN format('UPDATE %s SET %s = %s', t, col, col)
                                    WHEN 'DELETE' THEN format('DELETE FROM %s', t)
                                    ELSE format('TRUNCATE %s', t) END;
                    RAISE EXCEPTION 'allowed' USING ERRCODE = 'ZX999';   -- undo it
                EXCEPTION WHEN OTHERS THEN
                    state := CASE SQLSTATE WHEN 'ZX999' THEN 'allowed' ELSE SQLSTATE END;
                END;
                RETURN NEXT;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
CREATE TEMP TABLE tap_writes AS SELECT * FROM pg_temp.direct_writes();
SELECT cmp_ok((SELECT count(*) FROM tap_writes), '>=', 5 * 4 * 20::bigint,
              'direct writes were tried on every ocx table, four ways, as five roles');
SELECT is((SELECT string_agg(role || ' ' || tbl || ' ' || op || ' ' || state, ',') FROM tap_writes
            WHERE state <> '42501'),
          'ocx_admin ocx.import_staging INSERT allowed',
          'every direct INSERT, UPDATE, DELETE and TRUNCATE on an ocx table is refused with 42501, but ocx_admin''s INSERT into ocx.import_staging');

-- as whom: writer and admin entry points run with ocx_owner's rights
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace AND p.proname NOT LIKE '\_%'
                      AND pg_catalog.has_function_privilege('ocx_writer', p.oid, 'EXECUTE')
                      AND NOT pg_catalog.has_function_privilege('ocx_reader', p.oid, 'EXECUTE')
                      AND NOT p.prosecdef AND p.prosrc <> 'ocx_owner_call' $$,
                'every writer entry point runs with ocx_owner''s rights');
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace AND p.proname NOT LIKE '\_%'
                      AND pg_catalog.has_function_privilege('ocx_admin', p.oid, 'EXECUTE')
                      AND NOT pg_catalog.has_function_privilege('ocx_writer', p.oid, 'EXECUTE')
                      AND NOT p.prosecdef AND p.prosrc <> 'ocx_owner_call' $$,
                'every admin entry point runs with ocx_owner''s rights');
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace = 'ocx'::regnamespace AND p.prosrc = 'ocx_owner_call'
                      AND NOT EXISTS (
                          SELECT FROM pg_catalog.pg_proc i
                           WHERE i.pronamespace = p.pronamespace AND i.proname = '_' || p.proname
                             AND i.proargtypes = p.proargtypes AND NOT i.prosecdef
                             AND i.proacl IS NOT NULL
                             AND NOT EXISTS (SELECT FROM pg_catalog.aclexplode(i.proacl) a
                                              WHERE a.grantee <> 'ocx_owner'::regrole)) $$,
                'every trampoline has its body ocx._<name>, executable by ocx_owner only');
SELECT is_empty($$ SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
                    WHERE p.oid IN ('ocx._call_as_author(text, regrole, ocx.event)'::regprocedure,
                                    'ocx._regprocedure_as(text, regrole)'::regprocedure,
                                    'ocx._execute_as_author(regrole, text[])'::regprocedure)
                      AND (pg_catalog.has_function_privilege('ocx_admin', p.oid, 'EXECUTE')
                           OR pg_catalog.has_function_privilege('ocx_tap_login', p.oid, 'EXECUTE')) $$,
                'the functions that act as another role are granted to nobody');

SELECT ok(NOT pg_catalog.has_function_privilege('ocx_admin', 'ocx.distribute()', 'EXECUTE')
          AND NOT pg_catalog.has_function_privilege('ocx_tap_login', 'ocx.distribute()', 'EXECUTE')
          AND NOT (SELECT prosecdef FROM pg_catalog.pg_proc WHERE oid = 'ocx.distribute()'::regprocedure),
          'ocx.distribute() is owner-only and runs as its caller');

-- every public function works for the roles it is granted to, under tenancy
CREATE ROLE ocx_tap_admin IN ROLE ocx_admin;
CREATE ROLE ocx_tap_writer IN ROLE ocx_writer;
CREATE ROLE ocx_tap_reader IN ROLE ocx_reader;
CREATE FUNCTION public.tap_apply(s jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT s || jsonb_build_object('n', coalesce((s->>'n')::int, 0) + 1) $$;
CREATE FUNCTION public.tap_up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{"v2": true}' $$;
CREATE FUNCTION public.tap_cmd(c ocx.command) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
ALTER FUNCTION public.tap_apply(jsonb, ocx.event) OWNER TO ocx_tap_admin;
CREATE TABLE public.tap_model (n int);
ALTER TABLE public.tap_model OWNER TO ocx_tap_admin;
CREATE FUNCTION public.tap_handler(e ocx.event) RETURNS void LANGUAGE sql AS $$ INSERT INTO public.tap_model VALUES (1) $$;
CREATE FUNCTION public.tap_reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM public.tap_model $$;

SET ROLE ocx_tap_admin;
SELECT lives_ok($$ SELECT ocx.define_event_type('TapThing', 2) $$, 'ocx_admin: define_event_type');
SELECT lives_ok($$ SELECT ocx.define_upcaster('TapThing', 1, 'public.tap_up(jsonb)'::regprocedure) $$,
                'ocx_admin: define_upcaster');
SELECT lives_ok($$ SELECT ocx.define_aggregate('tap_thing', 'public.tap_apply(jsonb, ocx.event)') $$,
                'ocx_admin: define_aggregate');
SELECT lives_ok($$ SELECT ocx.define_command_handler('tap.Cmd', NULL) $$, 'ocx_admin: define_command_handler');
SELECT lives_ok($$ SELECT ocx.create_subscription('tap_sub', categories => '{tapthing}') $$,
                'ocx_admin: create_subscription');
SELECT lives_ok($$ SELECT ocx.define_projection('tap_proj', 'public.tap_handler(ocx.event)', categories => '{tapthing}',
                                                 reset => 'public.tap_reset()') $$, 'ocx_admin: define_projection');
SELECT lives_ok($$ SELECT ocx.pause_projection('tap_proj'); SELECT ocx.resume_projection('tap_proj') $$,
                'ocx_admin: pause_projection, resume_projection');
SELECT lives_ok($$ SELECT ocx.rebuild_projection('tap_proj') $$, 'ocx_admin: rebuild_projection (reset as the owner)');
SELECT lives_ok($$ SELECT ocx.define_saga('tap_saga', '{"steps": [{"name": "a", "command": "tap.Cmd", "success": "TapDone"}]}') $$,
                'ocx_admin: define_saga');
SELECT lives_ok($$ SELECT ocx.define_module('tap_mod', '{"event_types": [{"type": "TapMod", "schema_version": 1}]}') $$,
                'ocx_admin: define_module');
SELECT lives_ok($$ SELECT ocx.define_command_handler('tap.Server', 'public.tap_cmd(ocx.command)'); SELECT ocx.drop_command_handler('tap.Server') $$,
                'ocx_admin: define_command_handler with a function, drop_command_handler');
RESET ROLE;
SELECT is((SELECT definer::text FROM ocx.aggregates WHERE aggregate_type = 'tap_thing'), 'ocx_tap_admin',
          'the aggregate records its caller as definer, not ocx_owner');
SELECT is((SELECT definer::text FROM ocx.upcasters WHERE type = 'TapThing'), 'ocx_tap_admin',
          'the upcaster records its caller as definer');

SET ROLE ocx_tap_writer;
SET ocx.tenant = 'acme';
SELECT is(ocx.append('tapthing-1', 0, '{"type": "TapThing", "schema_version": 1, "data": {}}'), 1::bigint,
          'ocx_writer: append as tenant acme');
SELECT is((SELECT tenant_id FROM ocx.events WHERE stream_id = 'tapthing-1'), 'acme',
          'the event is stamped with the caller''s tenant, not ocx_owner''s');
SELECT is((SELECT state->>'n' FROM ocx.load('tap_thing', 'tapthing-1')), '1', 'ocx_writer: load');
SELECT is(ocx.send_command('tap.Cmd', '{}', command_id => '7a000000-0000-4000-8000-000000000001'),
          '7a000000-0000-4000-8000-000000000001'::uuid, 'ocx_writer: send_command');
SELECT is((SELECT actor FROM ocx.command_history
            WHERE command_id = '7a000000-0000-4000-8000-000000000001' AND event = 'sent'),
          'ocx_tap_writer', 'the command history records the caller');
SELECT lives_ok($$ SELECT ocx.complete_command(c.command_id, '{}', c.claim_token)
                     FROM ocx.claim_commands('{tap.Cmd}') c $$, 'ocx_writer: claim_commands + complete_command');
SELECT is((SELECT status FROM ocx.commands WHERE command_id = '7a000000-0000-4000-8000-000000000001'),
          'succeeded', '... the command is done');
SELECT is(ocx.append_event('tapthing-2', 0, 'TapThing', '{}'), 1::bigint, 'ocx_writer: append_event');
SELECT is(ocx.append_cloudevents('tapthing-3', 0, '{"specversion": "1.0", "id": "tap-ce-1", "source": "tap", "type": "TapThing", "data": {}}'),
          1::bigint, 'ocx_writer: append_cloudevents');
SELECT lives_ok($$ SELECT ocx.send_command('tap.Cmd', '{}', command_id => '7a000000-0000-4000-8000-000000000002');
                   SELECT ocx.fail_command(c.command_id, 'no', false, c.claim_token) FROM ocx.claim_commands('{tap.Cmd}') c $$,
                'ocx_writer: fail_command');
SELECT lives_ok($$ SELECT * FROM ocx.poll('tap_sub', 10) $$, 'ocx_writer: poll');
SELECT lives_ok($$ SELECT ocx.publish('tap_channel', '{"hello": 1}') $$, 'ocx_writer: publish');
SELECT isnt(ocx.start_saga('tap_saga', '{}', '7b000000-0000-4000-8000-000000000001'), NULL, 'ocx_writer: start_saga');
SELECT is((SELECT tenant_id FROM ocx.saga_instances WHERE saga_id = '7b000000-0000-4000-8000-000000000001'), 'acme',
          'the saga belongs to the caller''s tenant');
-- stream deletion (docs/retention.md): soft for writers, hard for ocx_owner/ocx_admin only
SELECT is(ocx.append_event('tapdel-1', 0, 'TapThing', '{}'), 1::bigint, 'ocx_writer: append to delete');
SELECT is(ocx.delete_stream('tapdel-1', 1), 1::bigint, 'ocx_writer: soft delete_stream');
SELECT is((SELECT count(*) FROM ocx.read_stream('tapdel-1')), 0::bigint, 'ocx_writer: a soft-deleted stream reads empty');
SELECT throws_ok($$ SELECT ocx.delete_stream('tapdel-1', NULL, hard => true) $$, '42501', NULL,
                 'ocx_writer: hard delete_stream is refused (42501)');
SELECT throws_ok($$ SELECT ocx.define_retention('tapdel', max_count => 1) $$, '42501', NULL,
                 'ocx_writer: define_retention is refused (42501)');
SET ocx.tenant = 'globex';
SELECT throws_ok($$ SELECT ocx.append_event('tapthing-1', NULL, 'TapThing', '{}') $$, 'OX012', NULL,
                 'ocx_writer: another tenant''s stream is refused with OX012');
SELECT throws_ok($$ SELECT ocx.delete_stream('tapdel-1', NULL) $$, 'OX102', NULL,
                 'ocx_writer: another tenant''s stream cannot be deleted (it does not exist for the session)');
RESET ocx.tenant;
RESET ROLE;

SET ROLE ocx_tap_reader;
SET ocx.tenant = 'acme';
SELECT is((SELECT (data->>'v2')::boolean FROM ocx.read_stream('tapthing-1')), true,
          'ocx_reader: read_stream, upcast by the admin''s upcaster');
-- (log-order reads see committed transactions only: nothing of this test's own)
SELECT lives_ok($$ SELECT * FROM ocx.read_all() $$, 'ocx_reader: read_all');
SELECT lives_ok($$ SELECT * FROM ocx.read_category('tapthing') $$, 'ocx_reader: read_category');
SELECT is(ocx.stream_version('tapthing-1'), 1::bigint, 'ocx_reader: stream_version');
SELECT is((SELECT ocx.to_cloudevent(e)->>'type' FROM ocx.read_stream('tapthing-3') e), 'TapThing', 'ocx_reader: to_cloudevent');
SELECT is((SELECT (ocx.upcast(e)).schema_version FROM ocx.read_stream('tapthing-1') e), 2, 'ocx_reader: upcast');
SELECT is((SELECT state->>'n' FROM ocx.load('tap_thing', 'tapthing-2')), '1', 'ocx_reader: load');
SELECT is((SELECT replayed FROM ocx.last_load()), 1::bigint, 'ocx_reader: last_load');
SELECT lives_ok($$ SELECT * FROM ocx.trace('7a000000-0000-4000-8000-000000000001') $$, 'ocx_reader: trace');
SELECT ok(ocx.metrics() LIKE '%ocx_%', 'ocx_reader: metrics');
SELECT cmp_ok((SELECT count(*) FROM ocx.stats), '>', 0::bigint, 'ocx_reader: ocx.stats');
SELECT lives_ok($$ SELECT * FROM ocx.horizon_holder() $$, 'ocx_reader: horizon_holder');
SELECT throws_ok($$ SELECT ocx.delete_stream('tapdel-1', NULL) $$, '42501', NULL,
                 'ocx_reader: delete_stream is refused (42501)');
SELECT is((SELECT count(*) FROM ocx.saga_instances), 1::bigint, 'ocx_reader of acme: its saga');
RESET ocx.tenant;
SELECT is((SELECT count(*) FROM ocx.read_stream('tapthing-1')), 0::bigint,
          'ocx_reader without the tenant sees nothing of acme''s');
SELECT is((SELECT count(*) FROM ocx.saga_instances) + (SELECT count(*) FROM ocx.commands), 0::bigint,
          '... nor its sagas and commands');
RESET ROLE;

SET ROLE ocx_tap_admin;
SET ocx.tenant = 'acme';
SELECT lives_ok($$ SELECT ocx.snapshot('tap_thing', 'tapthing-2') $$, 'ocx_admin: snapshot');
SELECT is(ocx.delete_stream('tapdel-1', NULL, hard => true), 1::bigint, 'ocx_admin: hard delete_stream');
SELECT throws_ok($$ SELECT ocx.append_event('tapdel-1', NULL, 'TapThing', '{}') $$, 'OX641', NULL,
                 'the tombstone refuses appends (OX641)');
SELECT lives_ok($$ SELECT ocx.define_retention('tapdel', '1 day', 10); SELECT ocx.drop_retention('tapdel') $$,
                'ocx_admin: define_retention, drop_retention');
SELECT lives_ok($$ SELECT ocx.abort_saga('7b000000-0000-4000-8000-000000000001', 'tap') $$, 'ocx_admin: abort_saga');
SELECT lives_ok($$ SELECT ocx.retry_command('7a000000-0000-4000-8000-000000000002') $$, 'ocx_admin: retry_command');
SELECT lives_ok($$ SELECT ocx.purge_commands('0 seconds') $$, 'ocx_admin: purge_commands');
SELECT lives_ok($$ SELECT ocx.drop_projection('tap_proj'); SELECT ocx.drop_saga('tap_saga');
                   SELECT ocx.drop_subscription('tap_sub') $$, 'ocx_admin: drop_projection, drop_saga, drop_subscription');
RESET ocx.tenant;
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
