-- Which form of a read the planner plans (src/livereads.c, docs/scaling.md
-- "A partitioned log"): with include_archived a constant false, NULL or the
-- default, the live log's form alone, which never names ocx_archive.events;
-- with true, or a generic plan's parameter, the archive too.  Seen through
-- the lock the planner takes on every table of the query it plans (the
-- archive is empty here: the rows are the same either way).
\set SHOW_CONTEXT never
CREATE ROLE ocx_regress_rf_reader IN ROLE ocx_reader;
SELECT 'ocx_archive.events'::regclass::oid AS archive_oid \gset
SELECT ocx.append('rf-1', 0, '[{"type": "rf.A", "data": {}}, {"type": "rf.B", "data": {}}]');

-- the default, false and NULL: the live form
BEGIN;
SELECT count(*) AS read_stream FROM ocx.read_stream('rf-1');
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
BEGIN;
SELECT count(*) AS read_stream_backward FROM ocx.read_stream('rf-1', NULL, 1, 'backward', include_archived => false);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
BEGIN;
SELECT count(*) AS read_stream_null FROM ocx.read_stream('rf-1', include_archived => NULL);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
BEGIN;
SELECT count(*) AS read_all FROM ocx.read_all(NULL, 10, categories => ARRAY['rf']);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
BEGIN;
SELECT count(*) AS read_category FROM ocx.read_category('rf', include_archived => false);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
-- the consumers' reader
BEGIN;
SELECT count(*) AS read_log FROM ocx._read_log(NULL, 10, NULL, ARRAY['rf'], true);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
-- a plain reader plans the live form too
SET ROLE ocx_regress_rf_reader;
BEGIN;
SELECT count(*) AS reader_read_stream FROM ocx.read_stream('rf-1');
SELECT count(*) AS reader_read_all FROM ocx.read_all(NULL, 10, categories => ARRAY['rf']);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
RESET ROLE;

-- true: the archive too
BEGIN;
SELECT count(*) AS read_stream_archived FROM ocx.read_stream('rf-1', include_archived => true);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
BEGIN;
SELECT count(*) AS read_category_archived FROM ocx.read_category('rf', include_archived => true);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;

-- a parameter: a custom plan takes the form of its value, a generic plan
-- holds both and runs the one the value selects
PREPARE rf_stream(boolean) AS SELECT count(*) FROM ocx.read_stream('rf-1', include_archived => $1);
PREPARE rf_all(boolean) AS SELECT count(*) FROM ocx.read_all(NULL, 10, categories => ARRAY['rf'], include_archived => $1);
SET plan_cache_mode = force_custom_plan;
BEGIN;
EXECUTE rf_stream(false);
EXECUTE rf_all(false);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
SET plan_cache_mode = force_generic_plan;
EXECUTE rf_stream(false);
EXECUTE rf_stream(true);
EXECUTE rf_stream(NULL);
EXECUTE rf_all(false);
EXECUTE rf_all(true);
BEGIN;
EXECUTE rf_stream(false);
SELECT count(*) AS archive_locked FROM pg_locks WHERE pid = pg_backend_pid() AND relation = :archive_oid;
ROLLBACK;
RESET plan_cache_mode;
DEALLOCATE rf_stream;
DEALLOCATE rf_all;
DROP ROLE ocx_regress_rf_reader;
