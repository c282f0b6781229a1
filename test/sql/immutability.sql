-- The log is append-only for every role, the owner and superusers included.
\set SHOW_CONTEXT never
SELECT ocx.append('imm-1', 0, '{"type": "A", "data": {"v": 1}}');

UPDATE ocx.events SET data = '{"v": 2}' WHERE stream_id = 'imm-1';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ocx.events WHERE stream_id = 'imm-1';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ocx.events;
\echo :LAST_ERROR_SQLSTATE
-- replica mode does not switch the triggers off
SET session_replication_role = replica;
DELETE FROM ocx.events WHERE stream_id = 'imm-1';
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
SELECT data FROM ocx.read_stream('imm-1');

-- ordinary roles cannot even reach the tables directly
CREATE ROLE ocx_test_plain;
SET ROLE ocx_test_plain;
SELECT count(*) FROM ocx.events;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE ocx_test_plain;
