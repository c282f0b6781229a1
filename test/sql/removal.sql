-- Stream deletion (issue 14, docs/retention.md): soft delete hides a stream
-- from stream reads and lets it go on after its last version; hard delete
-- (ocx_owner or ocx_admin only) removes its events and leaves a tombstone.
-- Errors and privileges as the least privileged roles.
\set SHOW_CONTEXT never
CREATE ROLE rm_writer IN ROLE ocx_writer;
CREATE ROLE rm_reader IN ROLE ocx_reader;
CREATE ROLE rm_admin IN ROLE ocx_admin;
CREATE TEMP TABLE rm_before AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';
SELECT ocx.define_aggregate('rm_counter', reducer => '{"Inc": [{"add": "n", "value": 1}]}');

-- soft delete, as an ocx_writer member
SET ROLE rm_writer;
SELECT ocx.append('rm-1', 0, '[{"type": "Inc", "data": {}}, {"type": "Inc", "data": {}}, {"type": "Inc", "data": {}}]');
SELECT ocx.delete_stream('rm-1', 3);
RESET ROLE;
SET ROLE rm_reader;
SELECT count(*) AS read_forward FROM ocx.read_stream('rm-1');
SELECT count(*) AS read_backward FROM ocx.read_stream('rm-1', direction => 'backward');
SELECT count(*) AS last_event FROM ocx.last_event('rm-1');
SELECT state, version FROM ocx.load('rm_counter', 'rm-1');
-- the log is unchanged
SELECT count(*) AS in_the_log FROM ocx.events WHERE stream_id = 'rm-1';
RESET ROLE;
-- appends go on at the next version
SET ROLE rm_writer;
SELECT ocx.append('rm-1', 3, '{"type": "Inc", "data": {}}');
RESET ROLE;
SET ROLE rm_reader;
SELECT stream_version FROM ocx.read_stream('rm-1');
SELECT stream_version FROM ocx.last_event('rm-1');
SELECT stream_version FROM ocx.read_stream('rm-1', 1, direction => 'backward');
SELECT state, version FROM ocx.load('rm_counter', 'rm-1');
RESET ROLE;
-- a snapshot taken before the soft delete is not used after it
SELECT ocx.append('rm-2', 0, '[{"type": "Inc", "data": {}}, {"type": "Inc", "data": {}}]');
SELECT ocx.snapshot('rm_counter', 'rm-2');
SELECT ocx.delete_stream('rm-2', NULL);
SELECT ocx.append('rm-2', NULL, '{"type": "Inc", "data": {}}');
SELECT state, version FROM ocx.load('rm_counter', 'rm-2');
SELECT snapshot_version, replayed FROM ocx.last_load();
-- deleting again at the same version changes nothing
SELECT ocx.delete_stream('rm-2', ocx.stream_exists());
SELECT hidden_through FROM ocx.streams WHERE stream_id = 'rm-2';

-- errors: nothing written
SELECT ocx.delete_stream(NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.delete_stream('rm-missing', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.delete_stream('rm-2', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.delete_stream('rm-2', -2);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.delete_stream('', NULL);
\echo :LAST_ERROR_SQLSTATE

-- hard delete: refused to ocx_writer and ocx_reader members (42501)
SELECT ocx.append('rm-3', 0, '[{"type": "Inc", "data": {}}, {"type": "Inc", "data": {}}]');
SET ROLE rm_writer;
SELECT ocx.delete_stream('rm-3', 2, hard => true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE rm_reader;
SELECT ocx.delete_stream('rm-3', 2);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS still_there FROM ocx.read_stream('rm-3');
-- an ocx_admin member may
SET ROLE rm_admin;
SELECT ocx.delete_stream('rm-3', 2, hard => true);
RESET ROLE;
SELECT count(*) AS events_left FROM ocx.events WHERE stream_id = 'rm-3';
SELECT stream_id, first_version, last_version, events, kind, removed_by
  FROM ocx.removals WHERE stream_id = 'rm-3';
SELECT version, deleted FROM ocx.streams WHERE stream_id = 'rm-3';
-- the tombstone refuses every append, whatever the expected version
SELECT ocx.append('rm-3', NULL, '{"type": "Inc", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('rm-3', 2, '{"type": "Inc", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('rm-3', 0, '{"type": "Inc", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('rm-3', ocx.stream_exists(), '[{"type": "Inc", "data": {}}, {"type": "Inc", "data": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_event('rm-3', 5, 'Inc', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.delete_stream('rm-3', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.delete_stream('rm-3', NULL, true);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.load('rm_counter', 'rm-3');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS reads_empty FROM ocx.read_stream('rm-3');

-- the immutability triggers still refuse everything else
DELETE FROM ocx.events WHERE stream_id = 'rm-1';
\echo :LAST_ERROR_SQLSTATE
UPDATE ocx.streams SET version = 9 WHERE stream_id = 'rm-3';
\echo :LAST_ERROR_SQLSTATE

-- retention policies: admin only, checked
SET ROLE rm_writer;
SELECT ocx.define_retention('rm', max_count => 10);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE rm_admin;
SELECT ocx.define_retention('rm');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_retention('rm', max_age => '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_retention('rm', max_count => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_retention('rm x', max_count => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_retention('rm', max_count => 10);
SELECT ocx.define_retention('rm', '30 days', 100);
SELECT category, max_age, max_count, events_removed FROM ocx.retention;
SELECT ocx.drop_retention('rm');
SELECT ocx.drop_retention('rm');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_retention('rm', if_exists => true);
RESET ROLE;
-- counters (cluster-wide: deltas)
SELECT s.name, s.value - b.value AS delta FROM ocx.stats s JOIN rm_before b USING (name)
 WHERE s.name IN ('streams_soft_deleted', 'streams_hard_deleted', 'deleted_events') ORDER BY s.name;

DROP ROLE rm_writer;
DROP ROLE rm_reader;
DROP ROLE rm_admin;
