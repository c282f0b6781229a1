
-- Issue 12: units of work and helpers.  ocx.worker_status() shows each
-- database's worker and its helpers with the unit each runs (new trailing columns).
DROP FUNCTION ocx.worker_status();
CREATE FUNCTION ocx.worker_status(
    OUT datid oid, OUT datname text, OUT state text, OUT pid integer,
    OUT launcher_pid integer, OUT worker_restarts bigint,
    OUT role text, OUT worker integer, OUT unit text, OUT unit_since timestamptz,
    OUT units_run bigint)
    RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_worker_status';
COMMENT ON FUNCTION ocx.worker_status() IS
    'the ocx workers (cluster-wide): one worker per database and its helpers, with the unit each runs; raises OX210 without shared_preload_libraries';
