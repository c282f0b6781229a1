/*
 * logspace.c
 *		The database's own transaction-id space for log order.
 *
 * Log order is (txid, global_position), and a reader may see an event once
 * its txid is below the horizon: the xmin of its snapshot, below which
 * every transaction has finished (docs/architecture.md, "Log order").  A
 * transaction id means something only in the cluster that assigned it, so
 * the log does not store raw ids: it stores them in the database's *log xid
 * space*,
 *
 *		log txid    = top-level full transaction id + xid_offset
 *		log horizon = full xmin of the snapshot     + xid_offset
 *
 * where xid_offset is the one row of ocx.log_space.  It is 0 until the
 * database is restored: the row is dumped with the data, and a restore's
 * COPY into the row that CREATE EXTENSION made fires a trigger that raises
 * the offset by 2^48 above both.  From then on every new transaction's log
 * txid is above every restored one, whatever the new cluster's counter (a
 * cluster would need 2^48 transactions, 89 years at 100,000 per second, to
 * get past a jump), and every restored event is below the horizon.
 * Consumers' cursors are data too, so each continues where it was.
 *
 * The offset is read once per backend and kept; the statement trigger on
 * ocx.log_space sends a relcache invalidation for the table, and our
 * callback forgets the value, so a backend that appended before a restore
 * into its database reads the new offset at its next use.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "commands/trigger.h"
#include "pgstat.h"
#include "utils/backend_status.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_log_txid);
PG_FUNCTION_INFO_V1(ocx_log_horizon);

static bool offset_valid = false;
static uint64 xid_offset = 0;
static Oid	log_space_relid = InvalidOid;

void
OcxLogSpaceRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == log_space_relid)
		offset_valid = false;
}

/*
 * The offset, from the cache or from ocx.log_space.  The table is read
 * directly (not with SPI): callers are SQL functions of any role and the
 * append path, and the row is not a secret.
 */
uint64
OcxLogXidOffset(void)
{
	Oid			nsp;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	uint64		offset = 0;

	if (offset_valid)
		return xid_offset;

	nsp = get_namespace_oid(OCX_SCHEMA, true);
	log_space_relid = OidIsValid(nsp) ? get_relname_relid("log_space", nsp) : InvalidOid;
	if (!OidIsValid(log_space_relid))
		return 0;				/* the 0.2.0 schema, before its update: no offset */

	rel = table_open(log_space_relid, AccessShareLock);
	/*
	 * A new snapshot, except in parallel mode, which forbids one: the
	 * leader of a parallel plan evaluates ocx.log_horizon() (PARALLEL
	 * RESTRICTED) in it, in the first read of a session when an inlined SQL
	 * function over the reader is parallel safe or restricted (ocx.export);
	 * there the query's own snapshot serves.
	 */
	snap = RegisterSnapshot(IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot());
	scan = systable_beginscan(rel, InvalidOid, false, snap, 0, NULL);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		/* column 2 is xid_offset (sql/parts/10_log.sql) */
		Datum		d = heap_getattr(tup, 2, RelationGetDescr(rel), &isnull);

		if (!isnull && DatumGetInt64(d) > 0)
			offset = (uint64) DatumGetInt64(d);
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);

	xid_offset = offset;
	offset_valid = true;
	return offset;
}

/*
 * The current transaction's log txid (assigns a transaction id).  A hot
 * standby cannot assign one: refused there as pg_current_xact_id() is, with
 * the read-only SQLSTATE rather than GetTopFullTransactionId's internal
 * error (ocx.log_txid(), ocx.import_begin(); the writers refuse earlier).
 */
uint64
OcxLogTxid(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot take a log transaction id during recovery"),
				 errdetail("A hot standby only reads the log."),
				 errhint("Append, import and send commands on the primary.")));
	OcxAppenderEnter();
	return U64FromFullTransactionId(GetTopFullTransactionId()) + OcxLogXidOffset();
}

/*
 * The log horizon of the active snapshot: its xmin as a full transaction id
 * (the xmin is within 2^31 of the next id, which gives it its epoch), plus
 * the offset.  Every log txid below it belongs to a finished transaction.
 */
uint64
OcxLogHorizon(void)
{
	Snapshot	snap = GetActiveSnapshot();
	FullTransactionId next;
	uint64		xmin;

	uint64		appenders;
	TransactionId h;

	if (snap == NULL)
		elog(ERROR, "ocx: no active snapshot for the log horizon");
	/* a distributed log: what committed here is visible on the workers (citus.c) */
	OcxWaitForCommittingAppenders();
	/* with ocx.horizon = 'appenders', only appenders hold it (appenders.c) */
	appenders = OcxAppendersHorizon(snap);
	if (appenders != 0)
		return appenders + OcxLogXidOffset();
	/* ocx's bookkeeping transactions hold nothing back (appenders.c) */
	h = OcxBystandersHorizon(snap);
	next = ReadNextFullTransactionId();
	if (!TransactionIdIsNormal(h))
		xmin = (uint64) h;
	else
		xmin = U64FromFullTransactionId(next) +
			(int32) (h - XidFromFullTransactionId(next));
	return xmin + OcxLogXidOffset();
}

/*
 * Is there an event at or above a log txid (one index probe on the log-order
 * index)?  The worker asks it after a pass, with the horizon the pass read
 * under, to learn whether events it could not see yet are waiting (pool.c).
 * max(), not EXISTS (... WHERE txid >= $1): the kept plan is generic, and
 * for EXISTS the planner chose a sequential scan that expects an early match
 * and reads the whole log when there is none (40 ms per pass at 1.3 million
 * events, the wake-up latency in make bench went from 1 ms to 45 ms).
 */
bool
OcxEventsAtOrAbove(uint64 txid)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {XID8OID};
	Datum		args[1];
	bool		found;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(txid));
	if (SPI_execute_plan(OcxKeptPlan(&plan,
									 "SELECT pg_catalog.max(e.txid) OPERATOR(pg_catalog.>=) $1 "
									 "FROM ocx.events e",
									 1, argtypes),
						 args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "ocx: the look for events above the horizon failed");
	found = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return !isnull && found;
}

/* ocx.log_txid() → xid8 */
Datum
ocx_log_txid(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(FullTransactionIdFromU64(OcxLogTxid()));
}

/* ocx.log_horizon() → xid8 */
Datum
ocx_log_horizon(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(FullTransactionIdFromU64(OcxLogHorizon()));
}

/*
 * Is a pg_restore connected to this database?  The worker leaves the
 * database alone meanwhile: a restore without --single-transaction commits
 * table by table, and a consumer that ran between two tables would act on
 * half a database.
 */
bool
OcxRestoreConnected(void)
{
	int			n;
	int			i;
	bool		found = false;

	pgstat_clear_backend_activity_snapshot();
	n = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= n && !found; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *be;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_procpid != MyProcPid && be->st_databaseid == MyDatabaseId &&
			strcmp(be->st_appname, "pg_restore") == 0)
			found = true;
	}
	return found;
}

/*
 * ocx._log_space_changed(): statement trigger on ocx.log_space.  Every
 * backend forgets the offset when it next accepts invalidations after our
 * commit; this one at once.
 */
PG_FUNCTION_INFO_V1(ocx_log_space_changed);

Datum
ocx_log_space_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._log_space_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	offset_valid = false;
	PG_RETURN_POINTER(NULL);
}
