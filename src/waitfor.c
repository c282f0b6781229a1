/*
 * waitfor.c
 *		Read-your-writes: ocx.wait_for(projection, cursor, timeout).
 *
 * An API that appended an event and wants to answer from a read model waits
 * until the projection has passed the event's cursor (ocx.last_append_cursor()).
 * "Passed" is read from ocx.projections with a fresh snapshot on every check:
 *
 *	- any projection whose checkpoint is at or after the cursor in log order
 *	  (the worker moves an async projection's checkpoint past every event it
 *	  reads, those its filter skips included);
 *	- a running inline projection as soon as the cursor's transaction has
 *	  ended (its log txid is below the log horizon): inline handlers run in
 *	  the appending transaction, so a committed event is applied;
 *	- any projection with nothing left to apply up to the cursor: its
 *	  transaction has ended and no event the projection wants lies between
 *	  the checkpoint and the cursor (an event it does not want, the cursor of
 *	  a transaction that rolled back).
 *
 * The waiter sleeps on its latch.  Waiters register in a small table in
 * shared memory (database, projection name, latch); the worker calls
 * OcxWaitForWake after each projection batch it commits, which sets the
 * latches of that projection's waiters.  A waiter checks again when woken and
 * at least every WAIT_FOR_POLL_MS, so a lost wake-up, a full table, an inline
 * projection (nobody wakes for those), a hot standby (the worker is on the
 * primary) or ocx loaded without shared_preload_libraries only cost latency.
 *
 * The table is requested by this file's own shared memory hooks, installed
 * by OcxWaitForInit when ocx is preloaded.
 *
 * Locking: OcxWaitFor->lock (the one lock of tranche "ocx wait_for")
 * protects the waiter slots: exclusive to take or free one, shared to set
 * latches.  nwaiters is read without the lock so that a worker with nobody
 * waiting pays one atomic read per batch.  A slot is freed by its backend at
 * the end of the wait (PG_FINALLY) and, for a FATAL exit in the middle of
 * one, by a before_shmem_exit callback; setting the latch of a slot whose
 * backend just left is harmless.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_worker.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_wait_for);

/* Waiters the table holds; more wait too, by polling. */
#define OCX_MAX_WAITERS		128

/* The longest sleep between two checks, woken or not. */
#define WAIT_FOR_POLL_MS	100

typedef struct OcxWaiter
{
	pid_t		pid;			/* 0: the slot is free */
	Oid			dboid;
	Latch	   *latch;
	char		projection[NAMEDATALEN];
} OcxWaiter;

typedef struct OcxWaitForShared
{
	LWLock	   *lock;
	pg_atomic_uint32 nwaiters;	/* slots in use */
	OcxWaiter	waiters[OCX_MAX_WAITERS];
} OcxWaitForShared;

static OcxWaitForShared *OcxWaitFor = NULL;

/* This backend's slot while it waits, else -1. */
static int	my_slot = -1;
static bool exit_callback_registered = false;

static SPIPlanPtr check_plan = NULL;
static SPIPlanPtr check_dist_plan = NULL;
static SPIPlanPtr left_plan = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Ask for the waiters' table and its lock before shared memory is sized. */
static void
WaitForShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(OcxWaitForShared)));
	RequestNamedLWLockTranche("ocx wait_for", 1);
}

/* Attach to (or, in the postmaster, create) the waiters' table. */
static void
WaitForShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	OcxWaitFor = ShmemInitStruct("ocx wait_for", sizeof(OcxWaitForShared), &found);
	if (!found)
	{
		memset(OcxWaitFor, 0, sizeof(OcxWaitForShared));
		OcxWaitFor->lock = &(GetNamedLWLockTranche("ocx wait_for"))->lock;
		pg_atomic_init_u32(&OcxWaitFor->nwaiters, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the shared memory hooks (chained, as shmem.c and metrics.c do); a
 * no-op unless ocx is being preloaded: then OcxWaitFor stays NULL and every
 * wait polls.
 */
void
OcxWaitForInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = WaitForShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = WaitForShmemStartup;
}

/* Free this backend's slot, if it holds one. */
static void
Deregister(void)
{
	if (my_slot < 0 || OcxWaitFor == NULL)
		return;
	LWLockAcquire(OcxWaitFor->lock, LW_EXCLUSIVE);
	if (OcxWaitFor->waiters[my_slot].pid == MyProcPid)
	{
		OcxWaitFor->waiters[my_slot].pid = 0;
		OcxWaitFor->waiters[my_slot].latch = NULL;
		pg_atomic_fetch_sub_u32(&OcxWaitFor->nwaiters, 1);
	}
	LWLockRelease(OcxWaitFor->lock);
	my_slot = -1;
}

static void
DeregisterAtExit(int code, Datum arg)
{
	Deregister();
}

/*
 * Take a slot for MyLatch and projection in this database.  A full table
 * (or no shared memory) leaves my_slot at -1: the wait then only polls.
 */
static void
Register(const char *projection)
{
	int			i;

	if (OcxWaitFor == NULL)
		return;
	if (!exit_callback_registered)
	{
		before_shmem_exit(DeregisterAtExit, (Datum) 0);
		exit_callback_registered = true;
	}
	LWLockAcquire(OcxWaitFor->lock, LW_EXCLUSIVE);
	for (i = 0; i < OCX_MAX_WAITERS; i++)
	{
		OcxWaiter  *w = &OcxWaitFor->waiters[i];

		if (w->pid != 0)
			continue;
		w->pid = MyProcPid;
		w->dboid = MyDatabaseId;
		w->latch = MyLatch;
		strlcpy(w->projection, projection, NAMEDATALEN);
		/* a full barrier: a worker that commits after this sees nwaiters > 0 */
		pg_atomic_fetch_add_u32(&OcxWaitFor->nwaiters, 1);
		my_slot = i;
		break;
	}
	LWLockRelease(OcxWaitFor->lock);
}

/*
 * Wake the waiters of projection (NULL: of every projection) in database
 * dboid.  Called by the worker after it committed a projection batch.
 */
void
OcxWaitForWake(Oid dboid, const char *projection)
{
	int			i;

	if (OcxWaitFor == NULL)
		return;
	pg_memory_barrier();
	if (pg_atomic_read_u32(&OcxWaitFor->nwaiters) == 0)
		return;
	LWLockAcquire(OcxWaitFor->lock, LW_SHARED);
	for (i = 0; i < OCX_MAX_WAITERS; i++)
	{
		OcxWaiter  *w = &OcxWaitFor->waiters[i];

		if (w->pid != 0 && w->dboid == dboid && w->latch != NULL &&
			(projection == NULL || strncmp(w->projection, projection, NAMEDATALEN) == 0))
			SetLatch(w->latch);
	}
	LWLockRelease(OcxWaitFor->lock);
}

/*
 * A wait timeout in microseconds (a month counts 30 days, as in interval
 * comparison); beyond int64, -1 or "forever".
 */
static int64
TimeoutMicros(Interval *timeout)
{
	int64		days = (int64) timeout->month * DAYS_PER_MONTH + timeout->day;
	int64		usecs;

	if (pg_mul_s64_overflow(days, USECS_PER_DAY, &usecs) ||
		pg_add_s64_overflow(usecs, timeout->time, &usecs))
		return ((double) days * USECS_PER_DAY + timeout->time) < 0 ? -1 : PG_INT64_MAX;
	return usecs;
}

/*
 * Refuse a wait that cannot succeed because of where it runs: in the ocx
 * worker (a projection handler), in a transaction that holds a transaction
 * id at or below the cursor's (the event is its own, or one of a later
 * transaction that the log horizon, held down by this one, cannot pass), or
 * in one whose snapshot would not show the read model afterwards.
 */
static void
CheckWaitingTransaction(uint64 txid)
{
	FullTransactionId mine = GetTopFullTransactionIdIfAny();

	/* a handler in the worker: the worker would wait for itself */
	if (MyBgworkerEntry != NULL && strcmp(MyBgworkerEntry->bgw_library_name, "ocx") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_CANNOT_WAIT),
				 errmsg("cannot wait in an ocx background worker"),
				 errdetail("The worker applies the projections: a handler that waits for one would wait for its own worker."),
				 errhint("Call ocx.wait_for from client sessions only.")));

	if (FullTransactionIdIsValid(mine))
	{
		uint64		own = U64FromFullTransactionId(mine) + OcxLogXidOffset();

		if (txid == own)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_CANNOT_WAIT),
					 errmsg("cannot wait for an event of the current transaction"),
					 errdetail("Projections see the event only after this transaction commits."),
					 errhint("Commit first, then call ocx.wait_for in the next transaction.")));
		if (txid > own)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_CANNOT_WAIT),
					 errmsg("cannot wait for an event of a transaction newer than the current one"),
					 errdetail("This transaction holds back the log horizon: no projection can pass the cursor before it ends."),
					 errhint("Wait in a transaction that has written nothing, or end this one first.")));
	}
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_OCX_CANNOT_WAIT),
				 errmsg("cannot wait in a %s transaction",
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("The transaction's snapshot would not show what the projection writes meanwhile."),
				 errhint("Call ocx.wait_for in READ COMMITTED, such as in its own statement outside an explicit transaction.")));
}

/*
 * The check: the projection's checkpoint (its slowest partition's, when it
 * is partitioned), mode, state, the log horizon, and
 * whether nothing is left for it up to the cursor: the cursor's transaction
 * has ended and no event it wants lies between its checkpoint and the
 * cursor (the scan of projection_status's lag, bounded by the cursor, on the
 * log-order index).
 */
#define CHECK_SQL \
	"SELECT c.checkpoint_txid, c.checkpoint_position, p.mode, p.state, h.horizon, " \
	"$2 OPERATOR(pg_catalog.<) h.horizon AND NOT EXISTS (SELECT FROM ocx.events e " \
	" WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) (c.checkpoint_txid, c.checkpoint_position) " \
	"   AND (e.txid, e.global_position) OPERATOR(pg_catalog.<=) ($2, $3) " \
	"   AND ocx._log_selects(e.type, e.stream_id, p.types, p.categories)) " \
	CHECK_FROM

/*
 * On a distributed log (citus.c) Citus does not plan that join of the local
 * projection tables with the distributed log: the projection's row first
 * (the horizon taken on the coordinator), then the log (LEFT_SQL).
 */
#define CHECK_DIST_SQL \
	"SELECT c.checkpoint_txid, c.checkpoint_position, p.mode, p.state, h.horizon, " \
	"false, p.types, p.categories " \
	CHECK_FROM
#define LEFT_SQL \
	"SELECT true FROM ocx.events e " \
	" WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) ($1, $2) " \
	"   AND (e.txid, e.global_position) OPERATOR(pg_catalog.<=) ($3, $4) " \
	"   AND ocx._log_selects(e.type, e.stream_id, $5, $6) LIMIT 1"

#define CHECK_FROM \
	"FROM ocx.projections p " \
	/* a partitioned projection: its slowest partition */ \
	"CROSS JOIN LATERAL (SELECT COALESCE(pm.checkpoint_txid, p.checkpoint_txid) AS checkpoint_txid, " \
	" COALESCE(pm.checkpoint_position, p.checkpoint_position) AS checkpoint_position " \
	" FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT pp.checkpoint_txid, pp.checkpoint_position " \
	"  FROM ocx.projection_partitions pp WHERE pp.projection OPERATOR(pg_catalog.=) p.name " \
	"   AND p.partitions OPERATOR(pg_catalog.>) 1 " \
	"  ORDER BY pp.checkpoint_txid, pp.checkpoint_position LIMIT 1) pm ON true) c, " \
	"LATERAL (SELECT ocx.log_horizon() AS horizon) h " \
	"WHERE p.name OPERATOR(pg_catalog.=) $1"

/*
 * Has projection passed (txid, position)?  One query with a fresh snapshot
 * (READ COMMITTED, not read-only), run with the caller's rights: the caller
 * sees the projections that ocx.projection_status shows it, and the events
 * its row-level security shows it (its own among them).  OX200 when the
 * projection does not exist (or was dropped while we waited).
 */
static bool
ProjectionPassed(Datum name, const char *name_str, uint64 txid, int64 position)
{
	static const Oid argtypes[3] = {TEXTOID, XID8OID, INT8OID};
	MemoryContext cxt = CurrentMemoryContext;
	bool		dist = OcxLogDistributed();
	SPITupleTable *row;
	Datum		args[3];
	bool		isnull;
	uint64		ckpt_txid;
	int64		ckpt_pos;
	uint64		horizon;
	char	   *mode;
	char	   *state;
	bool		nothing_left;
	bool		passed;

	args[0] = name;
	args[1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(txid));
	args[2] = Int64GetDatum(position);
	if (OcxRunKeptPlan(dist ? OcxKeptPlan(&check_dist_plan, CHECK_DIST_SQL, 3, argtypes) :
					   OcxKeptPlan(&check_plan, CHECK_SQL, 3, argtypes),
					   args, NULL, false) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_UNKNOWN_PROJECTION),
				 errmsg("projection \"%s\" does not exist", name_str),
				 errhint("See ocx.projection_status for the defined projections.")));
	MemoryContextSwitchTo(cxt);	/* SPI returned to its own context */

	ckpt_txid = U64FromFullTransactionId(DatumGetFullTransactionId(
		SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	ckpt_pos = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	mode = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	horizon = U64FromFullTransactionId(DatumGetFullTransactionId(
		SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull)));
	nothing_left = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));

	passed = ckpt_txid > txid || (ckpt_txid == txid && ckpt_pos >= position) ||
		(strcmp(mode, "inline") == 0 && strcmp(state, "running") == 0 && txid < horizon) ||
		nothing_left;
	row = SPI_tuptable;
	if (!passed && dist && txid < horizon)
	{
		static const Oid left_types[6] = {XID8OID, INT8OID, XID8OID, INT8OID,
		TEXTARRAYOID, TEXTARRAYOID};
		Datum		left[6];
		char		left_nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

		left[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(ckpt_txid));
		left[1] = Int64GetDatum(ckpt_pos);
		left[2] = args[1];
		left[3] = args[2];
		left[4] = SPI_getbinval(row->vals[0], row->tupdesc, 7, &isnull);
		left_nulls[4] = isnull ? 'n' : ' ';
		left[5] = SPI_getbinval(row->vals[0], row->tupdesc, 8, &isnull);
		left_nulls[5] = isnull ? 'n' : ' ';
		/* a row: an event it wants is left (Citus plans no NOT EXISTS of this shape) */
		passed = OcxRunKeptPlan(OcxKeptPlan(&left_plan, LEFT_SQL, 6, left_types),
								left, left_nulls, false) == 0;
		MemoryContextSwitchTo(cxt);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_freetuptable(row);
	return passed;
}

/*
 * The wait: check, sleep on the latch (woken by the worker, or after
 * WAIT_FOR_POLL_MS at most), check again, until passed or the deadline.
 * Interrupts (cancel, statement_timeout, terminate) are served while
 * sleeping.
 */
static bool
WaitLoop(Datum name, const char *name_str, uint64 txid, int64 position, int64 timeout_us)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx wait_for",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline;
	bool		passed = false;

	if (pg_add_s64_overflow(start, timeout_us, &deadline))
		deadline = DT_NOEND;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	for (;;)
	{
		TimestampTz now;
		long		sleep_ms;

		/* what one check leaves behind (SPI's results are freed by SPI) */
		MemoryContextReset(cxt);
		MemoryContextSwitchTo(cxt);
		if (ProjectionPassed(name, name_str, txid, position))
		{
			passed = true;
			break;
		}
		now = GetCurrentTimestamp();
		if (now >= deadline)
			break;
		sleep_ms = TimestampDifferenceMilliseconds(now, deadline);
		/* round up: never wake just before the deadline to sleep again for 0 ms */
		if (sleep_ms <= 0 || sleep_ms > WAIT_FOR_POLL_MS)
			sleep_ms = sleep_ms <= 0 ? 1 : WAIT_FOR_POLL_MS;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return passed;
}

/*
 * ocx.wait_for(projection text, cursor ocx.cursor, timeout interval) -> boolean:
 * true as soon as projection has passed cursor, false when timeout has passed
 * first.
 */
Datum
ocx_wait_for(PG_FUNCTION_ARGS)
{
	Datum		name;
	char	   *name_str;
	uint64		txid;
	int64		position;
	int64		timeout_us;
	volatile bool passed = false;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_UNKNOWN_PROJECTION),
				 errmsg("projection name must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("cursor must not be null"),
				 errhint("ocx.last_append_cursor() is NULL until this session appends, and after the appending transaction rolled back.")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("timeout must not be null"),
				 errhint("Pass how long to wait at most, such as '5 seconds'.")));
	name = PG_GETARG_DATUM(0);
	name_str = TextDatumGetCString(name);
	OcxCursorParts(PG_GETARG_DATUM(1), &txid, &position);
	timeout_us = TimeoutMicros(PG_GETARG_INTERVAL_P(2));
	if (timeout_us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("timeout must not be negative"),
				 errhint("Pass 0 to check once without waiting.")));
	CheckWaitingTransaction(txid);

	Register(name_str);
	PG_TRY();
	{
		passed = WaitLoop(name, name_str, txid, position, timeout_us);
	}
	PG_FINALLY();
	{
		Deregister();
	}
	PG_END_TRY();
	PG_RETURN_BOOL(passed);
}
