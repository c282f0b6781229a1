-- Issue 13: event tags, ocx.append_if (consistency boundaries beyond one
-- stream), ocx.read_tagged and ocx.cancel_command.  Run as login roles that
-- are plain members of the ocx roles (superusers bypass row-level security).
\set SHOW_CONTEXT never
CREATE ROLE ocx_regress_dcb_writer LOGIN IN ROLE ocx_writer;
CREATE ROLE ocx_regress_dcb_reader LOGIN IN ROLE ocx_reader;
SET ROLE ocx_regress_dcb_writer;
SET ocx.tenant = 'dcbacme';

-- tags are stored sorted and distinct; an empty array is no tags
SELECT ocx.append('dcbcourse-1', 0, '{"type": "CourseDefined", "data": {"capacity": 1}, "tags": ["course:c1"]}');
SELECT ocx.append('dcbstudent-1', 0, '[{"type": "StudentRegistered", "tags": ["student:s1", "student:s1"]},
                                      {"type": "Note", "tags": []}]');
SELECT ocx.append_event('dcbstudent-2', 0, 'StudentRegistered', '{}');
SELECT stream_id, stream_version, type, tags FROM ocx.events WHERE stream_id LIKE 'dcb%' ORDER BY global_position;

-- bad tags: OX015, nothing written
SELECT ocx.append('dcbbad-1', NULL, '{"type": "X", "tags": "course:c1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('dcbbad-1', NULL, '{"type": "X", "tags": [1]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('dcbbad-1', NULL, '{"type": "X", "tags": [""]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('dcbbad-1', NULL, jsonb_build_object('type', 'X', 'tags', jsonb_build_array(repeat('x', 257))));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('dcbbad-1', NULL, jsonb_build_object('type', 'X', 'tags', (SELECT jsonb_agg('t' || i) FROM generate_series(1, 33) i)));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('dcbbad-1', NULL, '[{"type": "X"}, {"type": "Y", "tags": [null]}]');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS bad_written FROM ocx.events WHERE stream_id = 'dcbbad-1';

-- the decider reads the boundary: course c1's and student s1's events
SELECT stream_id, type FROM ocx.read_tagged(ARRAY['course:c1']);
SELECT stream_id, type FROM ocx.read_tagged(ARRAY['student:s1'], types => ARRAY['StudentRegistered']);
SELECT count(*) FROM ocx.read_tagged(ARRAY['student:s1'], types => ARRAY['Other']);
SELECT count(*) FROM ocx.read_tagged(ARRAY['course:c1', 'student:s1']);

-- append_if: matching means type in types (any when absent) and every tag
-- of the condition among the event's tags
SELECT "cursor" AS c1 FROM ocx.read_tagged(ARRAY['course:c1']) \gset
SELECT ocx.append_if('[{"stream_id": "dcbsub-1", "type": "Subscribed", "tags": ["course:c1", "student:s1"]}]',
                     jsonb_build_object('tags', ARRAY['course:c1'], 'after', :'c1')) IS NOT NULL AS appended;
-- the same decision again with the old cursor: the event just written matches
-- (DETAIL names the event's cursor, which varies: terse)
\set VERBOSITY terse
SELECT ocx.append_if('[{"stream_id": "dcbsub-1", "type": "Subscribed", "tags": ["course:c1", "student:s1"]}]',
                     jsonb_build_object('tags', ARRAY['course:c1'], 'after', :'c1'));
\echo :LAST_ERROR_SQLSTATE
-- a type that no matching event has: no conflict
SELECT ocx.append_if('{"stream_id": "dcbsub-2", "type": "Waitlisted", "tags": ["course:c1"]}',
                     jsonb_build_object('tags', ARRAY['course:c1'], 'types', ARRAY['Cancelled'], 'after', :'c1')) IS NOT NULL AS appended;
-- a tag set no event carries in full: no conflict
SELECT ocx.append_if('{"stream_id": "dcbsub-3", "type": "Subscribed", "tags": ["course:c2", "student:s1"]}',
                     '{"tags": ["course:c2", "student:s9"]}') IS NOT NULL AS appended;
-- no cursor: no matching event may exist at all
SELECT ocx.append_if('{"stream_id": "dcbsub-4", "type": "Subscribed", "tags": ["course:c2"]}',
                     '{"tags": ["course:c2"], "types": ["Subscribed"]}');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- events of several streams in one call, all or nothing; the cursor is the last one's
SELECT x.c OPERATOR(ocx.=) ocx.last_append_cursor() AS last_cursor
  FROM (SELECT ocx.append_if('[{"stream_id": "dcbmulti-1", "type": "A", "tags": ["course:c3"]},
                               {"stream_id": "dcbmulti-2", "type": "B", "tags": ["course:c3"]},
                               {"stream_id": "dcbmulti-1", "type": "C"}]',
                             '{"tags": ["course:c3"]}') AS c OFFSET 0) x;
SELECT stream_id, stream_version, type, ocx.cursor(txid, global_position) OPERATOR(ocx.=) ocx.last_append_cursor() AS is_last
  FROM ocx.events WHERE stream_id LIKE 'dcbmulti-%' ORDER BY global_position;
SELECT count(*) AS sub_events FROM ocx.events WHERE stream_id LIKE 'dcbsub-%';

-- bad conditions (OX016) and events (OX002, OX015): nothing written
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', '{"types": ["X"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', '{"tags": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', '{"tags": ["a"], "after": "nope"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', '{"tags": ["a"], "after": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', '{"tags": ["a"], "types": [""]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"stream_id": "dcbbad-2", "type": "X"}', '{"tags": ["a"], "whatever": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('{"type": "X"}', '{"tags": ["a"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('[{"stream_id": "dcbbad-2", "type": "X"}, {"stream_id": "dcbbad-3", "type": "Y", "tags": 7}]', '{"tags": ["a"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_if('[]', '{"tags": ["a"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS bad_written FROM ocx.events WHERE stream_id LIKE 'dcbbad-%';
SELECT * FROM ocx.read_tagged(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_tagged('{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ocx.read_tagged(ARRAY['a', NULL]);
\echo :LAST_ERROR_SQLSTATE

-- tenancy: another tenant neither sees nor conflicts with acme's tags
SET ocx.tenant = 'dcbglobex';
SELECT count(*) AS globex_sees FROM ocx.read_tagged(ARRAY['course:c1']);
SELECT ocx.append_if('{"stream_id": "dcbglobex-1", "type": "Subscribed", "tags": ["course:c1"]}',
                     '{"tags": ["course:c1"]}') IS NOT NULL AS appended;
SET ocx.tenant = 'dcbacme';
SELECT count(*) AS acme_sees FROM ocx.read_tagged(ARRAY['course:c1']);

-- read_tagged upcasts: a dcb.Seat v1 event comes back as v2 (qty renamed to
-- n), for the writer and for a reader of the tenant; another tenant sees none
RESET ROLE;
SELECT ocx.define_event_type('dcb.Seat', 2);
SELECT ocx.define_upcaster('dcb.Seat', 1, spec => '{"op": "rename", "from": "qty", "to": "n"}');
SET ROLE ocx_regress_dcb_writer;
SELECT ocx.append('dcbseat-1', 0, '[{"type": "dcb.Seat", "schema_version": 1, "data": {"qty": 2}, "tags": ["seat:s9"]},
                                   {"type": "dcb.Seat", "data": {"n": 3}, "tags": ["seat:s9"]}]');
SELECT stream_version, type, schema_version, data, tenant_id FROM ocx.read_tagged(ARRAY['seat:s9']);
SET ROLE ocx_regress_dcb_reader;
SELECT stream_version, schema_version, data FROM ocx.read_tagged(ARRAY['seat:s9'], types => ARRAY['dcb.Seat']);
SET ocx.tenant = 'dcbglobex';
SELECT count(*) AS globex_sees_seats FROM ocx.read_tagged(ARRAY['seat:s9']);
SET ocx.tenant = 'dcbacme';

-- a reader reads tags, cannot append_if
SET ROLE ocx_regress_dcb_reader;
SELECT count(*) AS reader_sees FROM ocx.read_tagged(ARRAY['course:c1']);
SELECT ocx.append_if('{"stream_id": "dcbreader-1", "type": "X", "tags": ["a"]}', '{"tags": ["a"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000d1');
\echo :LAST_ERROR_SQLSTATE

-- cancel_command: a scheduled or pending command is cancelled (true), a
-- second cancel says false, a running or finished one is OX325, an unknown
-- one (or another tenant's) OX320
SET ROLE ocx_regress_dcb_writer;
SELECT ocx.send_command('dcb.Remind', '{}', command_id => '7a000000-0000-4000-8000-0000000000d1',
                        run_at => now() + interval '1 day') IS NOT NULL AS sent;
SELECT ocx.send_command('dcb.Remind', '{}', command_id => '7a000000-0000-4000-8000-0000000000d2') IS NOT NULL AS sent;
SELECT ocx.send_command('dcb.Remind', '{}', command_id => '7a000000-0000-4000-8000-0000000000d3') IS NOT NULL AS sent;
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000d1') AS scheduled_cancelled;
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000d1') AS cancelled_again;
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000d2') AS pending_cancelled;
-- a claim never returns a cancelled command
SELECT command_id FROM ocx.claim_commands(ARRAY['dcb.Remind'], 10);
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000d3');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.complete_command('7a000000-0000-4000-8000-0000000000d3', '{}',
                            (SELECT claim_token FROM ocx.commands WHERE command_id = '7a000000-0000-4000-8000-0000000000d3'));
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000d3');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.cancel_command(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT command_id, status FROM ocx.commands WHERE type = 'dcb.Remind' ORDER BY command_id;
SELECT command_id, event FROM ocx.command_history WHERE event = 'cancelled' ORDER BY command_id;
SET ocx.tenant = 'dcbglobex';
SELECT ocx.send_command('dcb.Remind', '{}', command_id => '7a000000-0000-4000-8000-0000000000d4') IS NOT NULL AS sent;
SET ocx.tenant = 'dcbacme';
SELECT ocx.cancel_command('7a000000-0000-4000-8000-0000000000d4');
\echo :LAST_ERROR_SQLSTATE
RESET ocx.tenant;
RESET ROLE;
SELECT status FROM ocx.commands WHERE command_id = '7a000000-0000-4000-8000-0000000000d4';

DELETE FROM ocx.commands WHERE type = 'dcb.Remind';
DROP OWNED BY ocx_regress_dcb_writer, ocx_regress_dcb_reader;
DROP ROLE ocx_regress_dcb_writer;
DROP ROLE ocx_regress_dcb_reader;
