/*
 * horizon.c
 *		The long-transaction stall: a WARNING when one transaction holds the
 *		log horizon for too long.
 *
 * A reader sees an event once its log txid is below the log horizon, the
 * xmin of its snapshot (logspace.c, docs/architecture.md): the oldest
 * transaction id still running anywhere in the cluster.  So one transaction
 * that took an id and stays open -- idle in transaction, a long batch, a
 * forgotten prepared transaction, in any database -- stops every ocx
 * consumer at its id for as long as it lives: projections, subscriptions,
 * sagas and the bus wait, none of them fails.  ocx.horizon_holder()
 * (sql/parts/10_log.sql) names that transaction, and ocx.projection_status
 * and ocx.metrics() show its age and pid; this file is the database
 * worker's part.  Once the holder is older than ocx.horizon_warn_after and
 * committed events of this database wait behind it, the worker logs a
 * WARNING (OX211) that names it and says what to do.
 *
 * No shared state.  Each database worker looks at most once a second (and
 * not at all in a database whose schema predates ocx.horizon_holder) and
 * remembers in its own memory whom it warned about and when, so that it
 * names a holder at most once a minute.  (A holder in one database stalls
 * the consumers of every database; each database's worker warns for its
 * own waiting events.)
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* How often the worker looks at the holder. */
#define HORIZON_CHECK_MS		1000

/* How often it names the same holder again. */
#define HORIZON_REPEAT_MS		(60 * 1000)

/* Holders warned about lately (pid 0: a prepared transaction). */
#define HORIZON_WARNED_SLOTS	8

typedef struct HorizonWarned
{
	int			pid;
	TimestampTz at;
} HorizonWarned;

static HorizonWarned warned[HORIZON_WARNED_SLOTS];
static TimestampTz last_check = 0;
static SPIPlanPtr holder_plan = NULL;

/*
 * May the holder with this pid be named now?  True at most once per
 * HORIZON_REPEAT_MS for each pid; the slot warned about longest ago is
 * reused.
 */
static bool
HorizonMayWarn(int pid, TimestampTz now)
{
	int			i;
	int			oldest = 0;

	for (i = 0; i < HORIZON_WARNED_SLOTS; i++)
	{
		if (warned[i].at != 0 && warned[i].pid == pid)
		{
			if (!TimestampDifferenceExceeds(warned[i].at, now, HORIZON_REPEAT_MS))
				return false;
			warned[i].at = now;
			return true;
		}
		if (warned[i].at < warned[oldest].at)
			oldest = i;
	}
	warned[oldest].pid = pid;
	warned[oldest].at = now;
	return true;
}

/*
 * Log the OX211 WARNING for the holder in the current row of SPI_tuptable:
 * (pid, prepared_gid, datname, backend_xid, age in seconds).
 */
static void
HorizonWarn(HeapTuple tup, TupleDesc desc, long secs)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, 1, &isnull);
	char	   *gid = SPI_getvalue(tup, desc, 2);
	char	   *datname = SPI_getvalue(tup, desc, 3);
	char	   *xid = SPI_getvalue(tup, desc, 4);

	if (!isnull)
	{
		int			pid = DatumGetInt32(d);

		ereport(WARNING,
				(errcode(ERRCODE_OCX_LOG_HORIZON_HELD),
				 errmsg("process %d has held the ocx log horizon for %ld s", pid, secs),
				 datname ?
				 errdetail("Its transaction id %s (database \"%s\") is the oldest running in the cluster: "
						   "no projection, subscription, saga or bus wake-up reads the events "
						   "of transactions that took their ids after it until it ends.",
						   xid ? xid : "?", datname) :
				 errdetail("Its transaction id %s is the oldest running in the cluster: "
						   "no projection, subscription, saga or bus wake-up reads the events "
						   "of transactions that took their ids after it until it ends.",
						   xid ? xid : "?"),
				 errhint("Commit or roll back that transaction, or end it with "
						 "SELECT pg_terminate_backend(%d); ocx.horizon_holder() shows the holder, "
						 "idle_in_transaction_session_timeout ends idle ones.", pid)));
	}
	else
		ereport(WARNING,
				(errcode(ERRCODE_OCX_LOG_HORIZON_HELD),
				 errmsg("prepared transaction \"%s\" has held the ocx log horizon for %ld s",
						gid ? gid : "?", secs),
				 errdetail("Its transaction id %s is the oldest running in the cluster: "
						   "no projection, subscription, saga or bus wake-up reads the events "
						   "of transactions that took their ids after it until it is finished.",
						   xid ? xid : "?"),
				 errhint("Finish it with COMMIT PREPARED or ROLLBACK PREPARED in database \"%s\".",
						 datname ? datname : "?")));
}

/*
 * The worker's look at the horizon, in the caller's transaction: with
 * ocx.horizon_warn_after set, at most once a second, read the holder and
 * whether committed events of this database wait behind the horizon, and
 * warn when the holder is older than the setting.  Always false: it never
 * asks the worker for another pass.
 */
bool
OcxHorizonWorkerTick(void)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext ctx;
	MemoryContext old;
	SPIPlanPtr	plan;
	int			rc;

	if (ocx_horizon_warn_after <= 0 ||
		!TimestampDifferenceExceeds(last_check, now, HORIZON_CHECK_MS))
		return false;
	last_check = now;

	/* a database still on the 0.2.0 schema (before ALTER EXTENSION UPDATE) */
	if (!OidIsValid(LookupFuncName(list_make2(makeString(OCX_SCHEMA), makeString("horizon_holder")),
								   0, NULL, true)))
		return false;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "ocx horizon check", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(ctx);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	plan = OcxKeptPlan(&holder_plan,
					   "SELECT h.pid, h.prepared_gid, h.datname::pg_catalog.text, "
					   "       h.backend_xid::pg_catalog.text, "
					   "       EXTRACT(epoch FROM h.xact_age)::pg_catalog.float8 "
					   "  FROM ocx.horizon_holder() h "
					   " WHERE h.backend_xid IS NOT NULL AND h.xact_age IS NOT NULL",
					   0, NULL);
	rc = SPI_execute_plan(plan, NULL, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ocx: the log horizon check failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		pid_null;
		float8		age_s = DatumGetFloat8(SPI_getbinval(tup, desc, 5, &isnull));
		Datum		pid = SPI_getbinval(tup, desc, 1, &pid_null);

		/*
		 * Whether committed events wait behind the horizon: asked here, with
		 * the horizon taken in C, not in the query, where Citus would run
		 * ocx.log_horizon() on the workers (src/citus.c).  The nested SPI
		 * call keeps this level's tuple table.
		 */
		if (age_s * 1000.0 >= (float8) ocx_horizon_warn_after &&
			OcxEventsAtOrAbove(OcxLogHorizon()) &&
			HorizonMayWarn(pid_null ? 0 : DatumGetInt32(pid), now))
			HorizonWarn(tup, desc, (long) age_s);
	}
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return false;
}
