/*
 * appenders.c
 *		The appenders' horizon: a log horizon that only appenders hold back
 *		(ocx.horizon = 'appenders').
 *
 * The default log horizon is the xmin of the reader's snapshot (logspace.c):
 * every transaction that holds an xid holds it back, whether it appends or
 * not, so a long transaction anywhere in the cluster (a report, a slow
 * projection handler that has written) stops every consumer at its xid.
 *
 * With ocx.horizon = 'appenders', every reader (ocx.log_horizon()) uses
 * another horizon.  Every transaction that writes to the log (an append, a command
 * sent: anything that takes a log txid) first registers here, in shared
 * memory, with a floor below which its xid cannot be:
 *
 *	- a transaction without an xid yet registers the next xid to be
 *	  assigned: the one it gets later is at least that;
 *	- a transaction that already has an xid registers it, but only if it is
 *	  not below the horizon that a consumer has already used in this
 *	  database (published); otherwise it is refused with OX013, a retryable
 *	  error (roll back and retry: the new transaction gets a new xid).
 *
 * A reader's horizon for its snapshot (OcxAppendersHorizon) is the lowest
 * of the xids of the registered appenders of its database that have one
 * (one without an xid yet will get one at or above the next xid), the next
 * xid, the snapshot's xmax, and every xid running at the snapshot that has
 * committed since; it is published (the published value only grows).
 * Every event below it is committed and visible in the snapshot: its
 * appender committed before the snapshot, or was running at it and has
 * committed since (the third term), or started after it (xmax), or is
 * registered (its floor), or is not registered yet and will be refused.
 * Transactions that never write to the log hold nothing back, however long
 * they run.  docs/architecture.md has the argument in full.
 *
 * Registration and clearing take the lock shared (each backend writes only
 * its own entry); computing and publishing take it exclusively, so a
 * registration's check and a consumer's publication never interleave.  The
 * setting is fixed at server start, so appenders and consumers always agree.
 *
 * Not covered, and refused or documented: PREPARE TRANSACTION of a
 * transaction that registered (refused, OX013); events written without the
 * append functions (logical replication apply into ocx.events,
 * pg_restore: the worker waits for the latter).
 *
 * Bystanders (both settings).  ocx's own worker transactions that only keep
 * books -- the bus unit's wake-ups and position, the time map -- run right
 * after every append, take an xid, and with the snapshot horizon would hold
 * back every reader for their length: a read just after an append could
 * miss it while the worker wrote.  Such a transaction declares itself a
 * bystander (OcxBystanderEnter) before it takes an xid; from then on it can
 * never write to the log (OcxAppenderEnter refuses it), so no event can
 * ever carry its xid, and the snapshot horizon (OcxBystandersHorizon) is
 * the lowest xid running at the snapshot that is not a bystander's, or the
 * snapshot's xmax.  Marking and clearing take the lock exclusively, reading
 * takes it shared: while a reader holds it, a marked slot's PGPROC xid is
 * the bystander's own or none (the mark is cleared after commit has
 * cleared the xid), so only bystanders' xids are ever skipped.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_worker.h"

#include "access/transam.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/tuplestore.h"
#include "utils/snapshot.h"

/* ocx.horizon */
typedef enum OcxHorizonMode
{
	OCX_HORIZON_SNAPSHOT,
	OCX_HORIZON_APPENDERS
} OcxHorizonMode;

static const struct config_enum_entry horizon_options[] = {
	{"snapshot", OCX_HORIZON_SNAPSHOT, false},
	{"appenders", OCX_HORIZON_APPENDERS, false},
	{NULL, 0, false}
};

static int	ocx_horizon = OCX_HORIZON_SNAPSHOT;

/* one per backend, indexed by pgprocno */
typedef struct OcxAppender
{
	Oid			dboid;
	bool		active;
	bool		bystander;		/* a bystander's transaction: never writes to the log */
	uint64		floor;			/* full xid: the appender's xid is at least this */
} OcxAppender;

/* the horizon consumers of a database have used */
typedef struct OcxPublished
{
	Oid			dboid;
	uint64		horizon;		/* full xid */
} OcxPublished;

/*
 * Databases with a published horizon.  Entries are never reused (a reused
 * one would let an old appender pass): past this many databases the others
 * keep the snapshot horizon, which is always safe.
 */
#define OCX_MAX_PUBLISHED 64

typedef struct OcxAppenders
{
	LWLock	   *lock;
	int			nappenders;
	pg_atomic_uint32 nbystanders;	/* slots marked bystander */
	OcxPublished published[OCX_MAX_PUBLISHED];
	OcxAppender appenders[FLEXIBLE_ARRAY_MEMBER];
} OcxAppenders;

static OcxAppenders *Appenders = NULL;

/* this backend */
static bool registered = false;
static bool bystander = false;
static bool callback_registered = false;

static Size
AppendersSize(void)
{
	return add_size(offsetof(OcxAppenders, appenders),
					mul_size(sizeof(OcxAppender), MaxBackends));
}

void
OcxAppendersShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(AppendersSize()));
	RequestNamedLWLockTranche("ocx horizon", 1);
}

void
OcxAppendersShmemStartup(void)
{
	bool		found;

	Appenders = ShmemInitStruct("ocx horizon", AppendersSize(), &found);
	if (!found)
	{
		memset(Appenders, 0, AppendersSize());
		Appenders->lock = &(GetNamedLWLockTranche("ocx horizon"))->lock;
		Appenders->nappenders = MaxBackends;
		pg_atomic_init_u32(&Appenders->nbystanders, 0);
	}
}

void
OcxAppendersInit(void)
{
	/* a server-start setting can be defined only while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomEnumVariable("ocx.horizon",
							 gettext_noop("Which transactions hold back the log horizon of the ocx workers."),
							 gettext_noop("snapshot: every transaction with an xid; appenders: only transactions that write to the log (an appender older than a horizon already used is refused with OX013)."),
							 &ocx_horizon,
							 OCX_HORIZON_SNAPSHOT, horizon_options,
							 PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
}

/* Whether the appenders' horizon is in use in this process. */
static bool
AppendersOn(void)
{
	return ocx_horizon == OCX_HORIZON_APPENDERS && Appenders != NULL &&
		MyProc != NULL && MyProc->pgprocno >= 0 &&
		MyProc->pgprocno < Appenders->nappenders;
}

/* Whether this process has a slot (shared memory is ours). */
static bool
HasSlot(void)
{
	return Appenders != NULL && MyProc != NULL && MyProc->pgprocno >= 0 &&
		MyProc->pgprocno < Appenders->nappenders;
}

/* End this backend's bystander transaction (lock not held). */
static void
BystanderExit(void)
{
	OcxAppender *me = &Appenders->appenders[MyProc->pgprocno];

	LWLockAcquire(Appenders->lock, LW_EXCLUSIVE);
	if (me->bystander)
	{
		me->bystander = false;
		pg_atomic_fetch_sub_u32(&Appenders->nbystanders, 1);
	}
	LWLockRelease(Appenders->lock);
	bystander = false;
}

static void
AppendersXactCallback(XactEvent event, void *arg)
{
	OcxAppender *me;

	if (bystander)
	{
		switch (event)
		{
			case XACT_EVENT_COMMIT:
			case XACT_EVENT_PARALLEL_COMMIT:
			case XACT_EVENT_ABORT:
			case XACT_EVENT_PARALLEL_ABORT:
			case XACT_EVENT_PREPARE:
				/* after the commit (or abort) has cleared the xid */
				BystanderExit();
				break;
			default:
				break;
		}
	}
	if (!registered)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_OCX_HORIZON_PASSED),
					 errmsg("cannot prepare a transaction that wrote to the ocx log with ocx.horizon = 'appenders'"),
					 errhint("Commit it directly, or set ocx.horizon to 'snapshot'.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* after the commit is visible: a later horizon may pass it */
			me = &Appenders->appenders[MyProc->pgprocno];
			LWLockAcquire(Appenders->lock, LW_SHARED);
			me->active = false;
			LWLockRelease(Appenders->lock);
			registered = false;
			break;
		default:
			break;
	}
}

/* The published horizon of dboid, 0 if none (lock held). */
static uint64
PublishedLocked(Oid dboid)
{
	int			i;

	for (i = 0; i < OCX_MAX_PUBLISHED; i++)
		if (Appenders->published[i].dboid == dboid)
			return Appenders->published[i].horizon;
	return 0;
}

/*
 * Called before a transaction first writes to the log (OcxAppend, and
 * OcxLogTxid for everything else that takes a log txid).  A no-op with the
 * snapshot horizon.
 */
void
OcxAppenderEnter(void)
{
	OcxAppender *me;
	FullTransactionId fxid;
	uint64		floor;

	if (bystander)
		elog(ERROR, "ocx: a bystander transaction cannot write to the log");
	if (registered || !AppendersOn())
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(AppendersXactCallback, NULL);
		callback_registered = true;
	}
	me = &Appenders->appenders[MyProc->pgprocno];
	LWLockAcquire(Appenders->lock, LW_SHARED);
	fxid = GetTopFullTransactionIdIfAny();
	if (FullTransactionIdIsValid(fxid))
	{
		floor = U64FromFullTransactionId(fxid);
		if (floor < PublishedLocked(MyDatabaseId))
		{
			LWLockRelease(Appenders->lock);
			ereport(ERROR,
					(errcode(ERRCODE_OCX_HORIZON_PASSED),
					 errmsg("this transaction is older than the log horizon the ocx workers have passed"),
					 errdetail("It took its transaction id before its first write to the log, and ocx.horizon is 'appenders'."),
					 errhint("Roll back and retry; write to the log early in the transaction, or before other writes.")));
		}
	}
	else
		floor = U64FromFullTransactionId(ReadNextFullTransactionId());
	me->dboid = MyDatabaseId;
	me->floor = floor;
	me->active = true;
	LWLockRelease(Appenders->lock);
	registered = true;
}

/*
 * Declare the current transaction a bystander: it will never write to the
 * log (an append in it is refused), so it holds back no reader's horizon.
 * For ocx's own bookkeeping transactions (worker units), before their
 * first write.  A transaction that already has an xid, or has written to
 * the log, stays what it is.
 */
void
OcxBystanderEnter(void)
{
	OcxAppender *me;

	if (bystander || registered || !HasSlot() ||
		FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()))
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(AppendersXactCallback, NULL);
		callback_registered = true;
	}
	me = &Appenders->appenders[MyProc->pgprocno];
	LWLockAcquire(Appenders->lock, LW_EXCLUSIVE);
	Assert(!me->bystander);
	me->bystander = true;
	pg_atomic_fetch_add_u32(&Appenders->nbystanders, 1);
	LWLockRelease(Appenders->lock);
	bystander = true;
}

/*
 * The snapshot horizon of snap, as an xid: the lowest xid running at the
 * snapshot that is not a bystander's, or its xmax when none is.  With no
 * bystander marked (or on a standby, where the primary's are unknown) it
 * is the snapshot's xmin.
 */
TransactionId
OcxBystandersHorizon(Snapshot snap)
{
	static Snapshot last_snap = NULL;
	static uint64 last_completions = 0;
	static TransactionId last_xmin = InvalidTransactionId;
	static TransactionId last_xmax = InvalidTransactionId;
	static TransactionId last_h = InvalidTransactionId;
	TransactionId skip[64];
	int			nskip = 0;
	TransactionId h;
	uint32		i;

	if (!HasSlot() || snap->takenDuringRecovery || snap->xcnt == 0 ||
		pg_atomic_read_u32(&Appenders->nbystanders) == 0)
		return snap->xmin;
	if (snap == last_snap && snap->snapXactCompletionCount == last_completions &&
		snap->xmin == last_xmin && snap->xmax == last_xmax &&
		TransactionIdIsValid(last_h))
		return last_h;

	LWLockAcquire(Appenders->lock, LW_SHARED);
	for (i = 0; i < (uint32) Appenders->nappenders && nskip < (int) lengthof(skip); i++)
	{
		TransactionId x;

		if (!Appenders->appenders[i].bystander)
			continue;
		x = ProcGlobal->allProcs[i].xid;
		if (TransactionIdIsNormal(x))
			skip[nskip++] = x;
	}
	LWLockRelease(Appenders->lock);

	/* more bystanders than room: skipping fewer is always safe */
	h = snap->xmax;
	for (i = 0; i < snap->xcnt; i++)
	{
		TransactionId x = snap->xip[i];
		int			j;

		if (!TransactionIdPrecedes(x, h))
			continue;
		for (j = 0; j < nskip; j++)
			if (TransactionIdEquals(skip[j], x))
				break;
		if (j == nskip)
			h = x;
	}

	last_snap = snap;
	last_completions = snap->snapXactCompletionCount;
	last_xmin = snap->xmin;
	last_xmax = snap->xmax;
	last_h = h;
	return h;
}

/* x (a 32-bit xid near next) as a full xid */
static uint64
FullXid(FullTransactionId next, TransactionId x)
{
	return U64FromFullTransactionId(next) + (int32) (x - XidFromFullTransactionId(next));
}

/*
 * The appenders' horizon for a reader whose snapshot is snap, as a full xid,
 * or 0 when the snapshot horizon applies (the setting is off, on a standby,
 * no room to publish).  It is the lowest of:
 *
 *	- the floors of the registered appenders of this database, or the next
 *	  xid when there is none: every appender below it committed before now
 *	  or, not yet registered, will be refused (the horizon is published);
 *	- the snapshot's xmax: a transaction that started after the snapshot
 *	  may have committed by now, unseen by it;
 *	- every xid that was running at the snapshot and has committed since:
 *	  its events, if any, are not in the snapshot.
 *
 * So every event below it is visible in snap.  Kept for the rest of the
 * statement (the same snapshot gives the same answer): ocx.log_horizon() is
 * evaluated per row in a filter.
 */
uint64
OcxAppendersHorizon(Snapshot snap)
{
	static Snapshot last_snap = NULL;
	static uint64 last_completions = 0;
	static TransactionId last_xmin = InvalidTransactionId;
	static TransactionId last_xmax = InvalidTransactionId;
	static uint64 last_h = 0;
	FullTransactionId next;
	uint64		h;
	uint32		i;
	int			free_entry = -1;

	if (!AppendersOn() || snap == NULL || snap->takenDuringRecovery || RecoveryInProgress())
		return 0;
	if (snap == last_snap && snap->snapXactCompletionCount == last_completions &&
		snap->xmin == last_xmin && snap->xmax == last_xmax && last_h != 0)
		return last_h;

	LWLockAcquire(Appenders->lock, LW_EXCLUSIVE);
	next = ReadNextFullTransactionId();
	h = U64FromFullTransactionId(next);
	for (i = 0; i < (uint32) Appenders->nappenders; i++)
	{
		OcxAppender *a = &Appenders->appenders[i];
		TransactionId x;
		uint64		floor;

		if (!a->active || a->dboid != MyDatabaseId)
			continue;

		/*
		 * An appender that has no xid yet holds nothing back: the xid it gets
		 * will be at least next, read above under XidGenLock, before which
		 * every xid already assigned was stored in its PGPROC.  One that has
		 * an xid holds the horizon at it.
		 */
		x = ProcGlobal->allProcs[i].xid;
		pg_read_barrier();
		floor = TransactionIdIsValid(x) ? FullXid(next, x) : U64FromFullTransactionId(next);
		if (a->floor > floor)
			floor = a->floor;
		if (floor < h)
			h = floor;
	}
	if (TransactionIdIsNormal(snap->xmax) && FullXid(next, snap->xmax) < h)
		h = FullXid(next, snap->xmax);
	for (i = 0; i < snap->xcnt; i++)
	{
		uint64		x = FullXid(next, snap->xip[i]);

		if (x < h && TransactionIdDidCommit(snap->xip[i]))
			h = x;
	}
	for (i = 0; i < OCX_MAX_PUBLISHED; i++)
	{
		OcxPublished *p = &Appenders->published[i];

		if (p->dboid == MyDatabaseId)
		{
			if (p->horizon < h)
				p->horizon = h;
			break;
		}
		if (p->dboid == InvalidOid && free_entry < 0)
			free_entry = i;
	}
	if (i == OCX_MAX_PUBLISHED)
	{
		if (free_entry < 0)
		{
			LWLockRelease(Appenders->lock);
			return 0;
		}
		Appenders->published[free_entry].dboid = MyDatabaseId;
		Appenders->published[free_entry].horizon = h;
	}
	LWLockRelease(Appenders->lock);

	last_snap = snap;
	last_completions = snap->snapXactCompletionCount;
	last_xmin = snap->xmin;
	last_xmax = snap->xmax;
	last_h = h;
	return h;
}

/*
 * SQL: ocx._horizon_appenders() -- the registered appenders of this database
 * that hold the appenders' horizon (those with an xid): pid and xid.  No rows
 * with the snapshot horizon.  ocx.horizon_holder() names the oldest of them
 * when ocx.horizon is 'appenders'.
 */
PG_FUNCTION_INFO_V1(ocx_horizon_appenders);

Datum
ocx_horizon_appenders(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (!AppendersOn())
		return (Datum) 0;
	LWLockAcquire(Appenders->lock, LW_SHARED);
	for (i = 0; i < Appenders->nappenders; i++)
	{
		OcxAppender *a = &Appenders->appenders[i];
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		TransactionId x;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (!a->active || a->dboid != MyDatabaseId)
			continue;
		x = proc->xid;
		if (!TransactionIdIsValid(x))
			continue;
		values[0] = Int32GetDatum(proc->pid);
		values[1] = TransactionIdGetDatum(x);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(Appenders->lock);
	return (Datum) 0;
}

/*
 * SQL: ocx._horizon_bystanders() -- the processes whose running transaction
 * is a bystander (holds no reader back), and its xid if it has one;
 * ocx.horizon_holder() passes them over.
 */
PG_FUNCTION_INFO_V1(ocx_horizon_bystanders);

Datum
ocx_horizon_bystanders(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (!HasSlot() || pg_atomic_read_u32(&Appenders->nbystanders) == 0)
		return (Datum) 0;
	LWLockAcquire(Appenders->lock, LW_SHARED);
	for (i = 0; i < Appenders->nappenders; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};
		TransactionId x;

		if (!Appenders->appenders[i].bystander)
			continue;
		x = ProcGlobal->allProcs[i].xid;
		values[0] = Int32GetDatum(ProcGlobal->allProcs[i].pid);
		values[1] = TransactionIdGetDatum(x);
		nulls[1] = !TransactionIdIsValid(x);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(Appenders->lock);
	return (Datum) 0;
}

/*
 * SQL: ocx._bystander() -- declare the calling transaction a bystander
 * (OcxBystanderEnter).  Internal: granted to nobody; the tests use it to
 * hold a bystander transaction open.
 */
PG_FUNCTION_INFO_V1(ocx_bystander);

Datum
ocx_bystander(PG_FUNCTION_ARGS)
{
	OcxBystanderEnter();
	PG_RETURN_BOOL(bystander);
}
