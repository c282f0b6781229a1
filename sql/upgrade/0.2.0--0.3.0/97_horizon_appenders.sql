
-- Issue 12: with ocx.horizon = 'appenders', ocx.horizon_holder() names the
-- oldest appending transaction of the database, not the oldest xid.
CREATE FUNCTION ocx._horizon_appenders(OUT pid integer, OUT xid xid) RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'ocx_horizon_appenders';
COMMENT ON FUNCTION ocx._horizon_appenders() IS
    'internal: with ocx.horizon = ''appenders'', the appending transactions of this database that hold the horizon (pid, xid)';

CREATE OR REPLACE FUNCTION ocx.horizon_holder(OUT pid integer, OUT xact_age interval, OUT backend_xid xid,
                                   OUT datname name, OUT prepared_gid text)
    RETURNS record
    LANGUAGE sql VOLATILE PARALLEL RESTRICTED
BEGIN ATOMIC
    SELECT h.pid,
           CASE WHEN h.since IS NOT NULL
                THEN GREATEST(pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) h.since, '0'::interval)
           END,
           h.xid, h.datname, h.gid
      FROM (SELECT a.pid, a.xact_start AS since, a.backend_xid AS xid, a.datname, NULL::text AS gid
              FROM pg_catalog.pg_stat_activity a
             WHERE a.backend_xid IS NOT NULL
               AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
               AND (pg_catalog.current_setting('ocx.horizon', true) IS DISTINCT FROM 'appenders'
                    OR a.pid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ap.pid FROM ocx._horizon_appenders() ap)))
            UNION ALL
            SELECT NULL::integer, x.prepared, x.transaction, x.database, x.gid
              FROM pg_catalog.pg_prepared_xacts x
             WHERE pg_catalog.current_setting('ocx.horizon', true) IS DISTINCT FROM 'appenders') h
     ORDER BY pg_catalog.age(h.xid) DESC
     LIMIT 1;
END;
COMMENT ON FUNCTION ocx.horizon_holder() IS
    'the transaction that holds the log horizon (the oldest running xid in the cluster; with ocx.horizon = ''appenders'', the oldest appending transaction of this database): its backend pid (NULL for a prepared transaction), age, xid, database and prepared gid; all NULL when none';

