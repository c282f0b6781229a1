
-- Issue 12: with ocx.horizon = 'appenders', ocx.horizon_holder() names the
-- oldest appending transaction of the database, not the oldest xid.
CREATE FUNCTION ocx._horizon_appenders(OUT pid integer, OUT xid xid) RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'ocx_horizon_appenders';
COMMENT ON FUNCTION ocx._horizon_appenders() IS
    'internal: with ocx.horizon = ''appenders'', the appending transactions of this database that hold the horizon (pid, xid)';

-- Bystanders: ocx's own bookkeeping transactions (the bus unit), which can
-- never write to the log and so hold back no reader (src/appenders.c).
CREATE FUNCTION ocx._horizon_bystanders(OUT pid integer, OUT xid xid) RETURNS SETOF record
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'ocx_horizon_bystanders';
COMMENT ON FUNCTION ocx._horizon_bystanders() IS
    'internal: the processes whose running transaction is a bystander, and its xid if it has one (it can never write to the log, so it holds back no reader''s horizon)';
CREATE FUNCTION ocx._bystander() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'ocx_bystander';
COMMENT ON FUNCTION ocx._bystander() IS
    'internal: declare the calling transaction a bystander (before it takes an xid; true when it is one): it holds back no reader''s horizon and cannot write to the log';

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
               AND a.pid OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT b.pid FROM ocx._horizon_bystanders() b))
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
    'the transaction that holds the log horizon (the oldest running xid in the cluster other than ocx''s bookkeeping transactions, the bystanders; with ocx.horizon = ''appenders'', the oldest appending transaction of this database): its backend pid (NULL for a prepared transaction), age, xid, database and prepared gid; all NULL when none';


-- Bystanders (src/appenders.c): ocx's bookkeeping transactions hold back no reader.
COMMENT ON FUNCTION ocx.log_horizon() IS
    'the snapshot''s xmin in the log xid space (passing over ocx''s bookkeeping transactions, which never write to the log): every event with a txid below it is committed or gone, so readers see only those';
