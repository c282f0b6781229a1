/*
 * pool.c
 *		The units of work of a database and the helpers that take them.
 *
 * Each database served by ocx has one database worker ("ocx worker", kept
 * by the launcher, worker.c) and, when it needs them, helpers ("ocx worker
 * helper"), up to ocx.max_workers processes in all.  The work of a database
 * is split into units: each projection is one, the bus, the command queue
 * and the saga task are one each.  The database worker and its helpers run
 * the same loop (PoolPass): walk every unit, starting at a different one
 * each pass, and run a unit only if no other process runs it, which is
 * known by taking the unit's session-level advisory lock without waiting
 * (field4 OCX_UNIT_LOCK, which pg_advisory_lock never uses).  A unit held by
 * another process is skipped, so a blocked or slow unit delays only itself.
 *
 * Each process publishes the unit it runs and since when (members[] of its
 * slot).  The launcher, which runs no user code, starts a helper when every
 * process of a database has been busy on one unit for OCX_BUSY_MS
 * (OcxPoolManage); a helper leaves after OCX_HELPER_IDLE_MS in which no
 * other process of its database was busy that long.  So an idle database
 * has one process, as in 0.2.0, and one with a stuck handler gets a second
 * within about 200 ms.
 *
 * Each step runs in its own transaction with errors caught (OcxRunStep):
 * abort, log, back off, go on.  A unit's lock is released after its
 * transaction ends, and by process exit on any other path.
 *
 * Locking: every member field is protected by OcxShmem->lock, as the slot
 * fields are (ocx_worker.h).  A process publishes its pid and latch under
 * the lock and clears them in a before_shmem_exit callback.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_retry.h"
#include "ocx_worker.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* the context steps return to; reset by the loops between passes */
MemoryContext OcxStepContext = NULL;

/* a unit held this long by every process of a database: start a helper */
#define OCX_BUSY_MS				100
/* a helper leaves when nobody else was busy that long for this long */
#define OCX_HELPER_IDLE_MS		10000
/* shortest time between two passes that found no work */
#define OCX_MIN_PASS_MS			2
/* ... when wake-ups came in during the last pass too (a stream of appends) */
#define OCX_LOADED_PASS_MS		5
/*
 * The fixed backoff policies of the pool, all through OcxBackoffMs (the one
 * backoff, retry.c): a projection whose batch failed outside its handlers
 * (500 ms doubling to 30 s), a process whose pass failed (100 ms doubling to
 * 30 s), and looking again for events a pass could not see yet (5 ms
 * doubling to 1 s).
 */
#define OCX_PROJECTION_BACKOFF_MS	500
#define OCX_PASS_BACKOFF_MS			100
#define OCX_MAX_BACKOFF_MS			30000
#define OCX_HELD_MIN_MS				5
#define OCX_HELD_MAX_MS				1000
/* locktag field4 of the units' advisory locks */
#define OCX_UNIT_LOCK			0x6f63

/* which kind of unit, locktag field3 */
typedef enum UnitKind
{
	UNIT_PROJECTION = 1,
	UNIT_BUS,
	UNIT_COMMANDS,
	UNIT_SAGAS,
	UNIT_INTEGRITY,				/* seals the log (integrity.c) */
	UNIT_RETENTION,				/* removes what retention allows (removal.c) */
	UNIT_PARTITIONS				/* partitions ahead of a partitioned log (logparts.c) */
} UnitKind;

/* this process: member 0 is the database worker, the others are helpers */
static int	my_slot = -1;
static int	my_member = -1;
static uint32 my_slot_generation = 0;
static uint32 my_member_generation = 0;
static uint32 my_passes = 0;

/* launcher side */
typedef bool (*OcxStepFn) (void *arg);

static BackgroundWorkerHandle *helper_handles[OCX_MAX_DB_SLOTS][OCX_MAX_POOL];
static TimestampTz last_no_slot_warning = 0;

/*
 * Run fn in its own transaction.  An error is caught: the transaction is
 * aborted, the error logged and *failed set; the caller goes on.
 */
static bool
OcxRunStep(OcxStepFn fn, void *arg, const char *activity, bool *failed, char **message,
		   int *sqlerrcode)
{
	volatile bool result = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		result = fn(arg);
		if (ActiveSnapshotSet())
			PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(OcxStepContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		/* a batch that lost a race with an administrator is simply retried */
		ereport(edata->sqlerrcode == ERRCODE_OCX_PROJECTION_CHANGED ? DEBUG1 : LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("ocx worker: %s failed: %s", activity, edata->message)));
		if (message)
			*message = pstrdup(edata->message);
		if (sqlerrcode)
			*sqlerrcode = edata->sqlerrcode;
		FreeErrorData(edata);
		*failed = true;
		result = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(OcxStepContext);

	/*
	 * Send the step's table and function statistics, as a backend does when
	 * it goes idle (at most once a second: pgstat keeps the rest pending).
	 * Without it nothing the worker wrote (read-model rows, cursors, the
	 * bus state) reached the statistics until it exited, so autovacuum
	 * never saw those tables' dead rows.
	 */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/*
 * Projections whose batch failed outside their handlers (a missing handler,
 * say) wait with a growing delay of their own, so that the others go on at
 * full speed.  Kept per process: a process that did not see the failure
 * may try the projection once more before it backs off too.
 */
typedef struct ProjectionBackoff
{
	char		name[NAMEDATALEN];
	int32		failures;		/* batches failed in a row */
	TimestampTz retry_at;
} ProjectionBackoff;

#define OCX_MAX_BACKOFFS 64
static ProjectionBackoff backoffs[OCX_MAX_BACKOFFS];
static int	n_backoffs = 0;

/* The backoff entry of a projection, or NULL. */
static ProjectionBackoff *
FindBackoff(const char *name)
{
	int			i;

	for (i = 0; i < n_backoffs; i++)
		if (strcmp(backoffs[i].name, name) == 0)
			return &backoffs[i];
	return NULL;
}

/* A projection's batch failed: wait longer (0.5 s doubling to 30 s). */
static void
NoteBackoff(const char *name, TimestampTz *next_due)
{
	ProjectionBackoff *pb = FindBackoff(name);

	if (pb == NULL)
	{
		if (n_backoffs == OCX_MAX_BACKOFFS)
			return;
		pb = &backoffs[n_backoffs++];
		strlcpy(pb->name, name, NAMEDATALEN);
		pb->failures = 0;
	}
	if (pb->failures < PG_INT32_MAX)
		pb->failures++;
	pb->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   OcxBackoffMs(OCX_PROJECTION_BACKOFF_MS,
															OCX_MAX_BACKOFF_MS,
															pb->failures));
	if (pb->retry_at < *next_due)
		*next_due = pb->retry_at;
}

/* A projection's batch succeeded: no more delay. */
static void
ForgetBackoff(const char *name)
{
	ProjectionBackoff *pb = FindBackoff(name);

	if (pb)
		*pb = backoffs[--n_backoffs];
}

typedef struct ListStep
{
	bool		installed;
	bool		served;
	bool		restoring;
	List	   *names;
	List	   *partitions;		/* of each projection */
	uint64		horizon;		/* the log horizon before the pass's units */
} ListStep;

/* Is ocx still here, is this database served, which projections to run. */
static bool
StepList(void *arg)
{
	ListStep   *ls = (ListStep *) arg;

	ls->installed = OidIsValid(get_extension_oid("ocx", true));
	ls->served = OcxDatabaseServed();
	ls->names = NIL;
	ls->partitions = NIL;
	ls->restoring = ls->installed && ls->served && OcxRestoreConnected();
	if (ls->installed && ls->served && !ls->restoring)
	{
		/* every unit of the pass reads under this horizon or a later one */
		ls->horizon = OcxLogHorizon();
		ls->names = OcxProjectionsToRun(OcxStepContext, &ls->partitions);
	}
	return false;
}

/* Are there events the pass could not see yet (logspace.c)? */
typedef struct HeldStep
{
	uint64		horizon;
	bool		held;
} HeldStep;

static bool
StepHeld(void *arg)
{
	HeldStep   *hs = (HeldStep *) arg;

	hs->held = OcxEventsAtOrAbove(hs->horizon);
	return false;
}

typedef struct FailedStep
{
	const char *name;
	const char *message;
} FailedStep;

static bool
StepFailed(void *arg)
{
	FailedStep *fs = (FailedStep *) arg;

	OcxProjectionFailed(fs->name, fs->message);
	return false;
}

/* The holder of the log horizon, warned about (horizon.c). */
static bool
StepHorizon(void *arg)
{
	return OcxHorizonWorkerTick();
}

/* One unit of work, run under its advisory lock. */
typedef struct UnitStep
{
	UnitKind	kind;
	const char *name;			/* the projection's, or NULL */
	int			partition;		/* of a partitioned projection, or -1 */
	char		label[OCX_UNIT_LEN];
	LOCKTAG		tag;
	bool		locked;
	TimestampTz next_due;		/* projections: when a retry is due */
} UnitStep;

/* Publish what this process runs (unit "" when idle). */
static void
PublishUnit(const char *unit)
{
	OcxPoolMember *m;
	Latch	   *launcher = NULL;

	if (my_member < 0)
		return;
	m = &OcxShmem->slots[my_slot].members[my_member];
	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (m->generation == my_member_generation)
	{
		strlcpy(m->unit, unit, OCX_UNIT_LEN);
		m->unit_since = GetCurrentTimestamp();
		if (unit[0] != '\0')
		{
			m->units_run++;
			/* the launcher sleeps long when nothing is busy: it must look */
			if (!OcxShmem->launcher_watching)
				launcher = OcxShmem->launcher_latch;
		}
	}
	LWLockRelease(OcxShmem->lock);
	if (launcher)
		SetLatch(launcher);
}

/*
 * Take the unit's lock without waiting (a session lock: it outlives the
 * step's transaction), then run it.  Returns whether it has more to do.
 */
static bool
StepUnit(void *arg)
{
	UnitStep   *us = (UnitStep *) arg;

	us->locked = LockAcquire(&us->tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
	if (!us->locked)
		return false;
	PublishUnit(us->label);

	switch (us->kind)
	{
		case UNIT_PROJECTION:
			return OcxProjectionBatch(us->name, us->partition, &us->next_due);
		case UNIT_BUS:
			{
				bool		more;

				/* wake-ups and the time map: books only, no reader waits for them */
				OcxBystanderEnter();
				more = OcxBusWorkerTick();

				/* the time map follows the log as the bus does (reads.c) */
				return OcxTimeMapTick() || more;
			}
		case UNIT_COMMANDS:
			return OcxCommandWorkerTick();
		case UNIT_SAGAS:
			return OcxSagaWorkerTick();
		case UNIT_INTEGRITY:
			return OcxIntegrityTick();
		case UNIT_RETENTION:
			/* removes consumed events only: books, no reader waits for it */
			OcxBystanderEnter();
			return OcxRetentionTick();	/* removal.c */
		case UNIT_PARTITIONS:
			return OcxLogPartitionsTick();	/* logparts.c */
	}
	return false;
}

static void
InitUnit(UnitStep *us, UnitKind kind, const char *name, int partition)
{
	memset(us, 0, sizeof(*us));
	us->kind = kind;
	us->name = name;
	us->partition = partition;
	switch (kind)
	{
		case UNIT_PROJECTION:
			if (partition >= 0)
				snprintf(us->label, OCX_UNIT_LEN, "projection %s/%d", name, partition);
			else
				snprintf(us->label, OCX_UNIT_LEN, "projection %s", name);
			break;
		case UNIT_BUS:
			strlcpy(us->label, "bus", OCX_UNIT_LEN);
			break;
		case UNIT_COMMANDS:
			strlcpy(us->label, "commands", OCX_UNIT_LEN);
			break;
		case UNIT_SAGAS:
			strlcpy(us->label, "sagas", OCX_UNIT_LEN);
			break;
		case UNIT_INTEGRITY:
			strlcpy(us->label, "seals", OCX_UNIT_LEN);
			break;
		case UNIT_RETENTION:
			strlcpy(us->label, "retention", OCX_UNIT_LEN);
			break;
		case UNIT_PARTITIONS:
			strlcpy(us->label, "partitions", OCX_UNIT_LEN);
			break;
	}
	SET_LOCKTAG_ADVISORY(us->tag, MyDatabaseId,
						 name ? hash_bytes((const unsigned char *) name, strlen(name)) : 0,
						 (uint32) kind | ((uint32) (partition + 1) << 8), OCX_UNIT_LOCK);
}

/*
 * Run one unit if no other process runs it.  Sets *more when it has more
 * to do at once, *failed on an error, and lowers *next_due to its next
 * retry.
 */
static void
RunUnit(UnitKind kind, const char *name, int partition, TimestampTz now,
		TimestampTz *next_due, bool *more, bool *failed)
{
	UnitStep	us;
	char	   *activity;
	char	   *message = NULL;
	bool		unit_failed = false;
	int			sqlerrcode = 0;
	ProjectionBackoff *pb = NULL;

	if (kind == UNIT_PROJECTION)
	{
		pb = FindBackoff(name);
		if (pb && pb->retry_at > now)
		{
			/* this one failed lately: the others go on meanwhile */
			if (pb->retry_at < *next_due)
				*next_due = pb->retry_at;
			return;
		}
	}
	InitUnit(&us, kind, name, partition);
	us.next_due = *next_due;
	activity = psprintf("ocx worker: %s", us.label);
	if (OcxRunStep(StepUnit, &us, activity, &unit_failed, &message, &sqlerrcode))
		*more = true;
	if (us.locked)
	{
		LockRelease(&us.tag, ExclusiveLock, true);
		PublishUnit("");
	}
	if (kind != UNIT_PROJECTION)
	{
		if (unit_failed)
			*failed = true;
	}
	else if (unit_failed && sqlerrcode == ERRCODE_OCX_PROJECTION_CHANGED)
	{
		/* rolled back: read the row again soon (the change's commit wakes us) */
		TimestampTz soon = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 100);

		if (soon < *next_due)
			*next_due = soon;
	}
	else if (unit_failed)
	{
		FailedStep	fs = {name, message};

		OcxRunStep(StepFailed, &fs, activity, failed, NULL, NULL);
		NoteBackoff(name, next_due);
	}
	else if (us.locked)
	{
		OcxWaitForWake(MyDatabaseId, name);	/* ocx.wait_for (waitfor.c) */
		ForgetBackoff(name);
		if (us.next_due < *next_due)
			*next_due = us.next_due;
	}
	pfree(activity);
}

/* Whether this helper is asked to leave (false in the database worker). */
static bool
MemberShouldLeave(void)
{
	OcxDbSlot  *slot;
	OcxPoolMember *m;
	bool		leave;

	if (my_member <= 0)
		return false;
	slot = &OcxShmem->slots[my_slot];
	m = &slot->members[my_member];
	LWLockAcquire(OcxShmem->lock, LW_SHARED);
	leave = m->stop_requested || m->generation != my_member_generation ||
		slot->generation != my_slot_generation || slot->state != OCX_SLOT_RUNNING ||
		slot->stop_requested;
	LWLockRelease(OcxShmem->lock);
	return leave;
}

/*
 * Whether a process is busy: on one unit for OCX_BUSY_MS (a slow unit), or
 * working without a sleep for that long (more work than it can do).
 */
static bool
MemberBusy(OcxPoolMember *m, TimestampTz now)
{
	return m->state == OCX_MEMBER_RUNNING &&
		((m->unit[0] != '\0' && TimestampDifferenceExceeds(m->unit_since, now, OCX_BUSY_MS)) ||
		 (m->busy_since != 0 && TimestampDifferenceExceeds(m->busy_since, now, OCX_BUSY_MS)));
}

/* Whether another process of this database is busy. */
static bool
OthersBusy(TimestampTz now)
{
	OcxDbSlot  *slot = &OcxShmem->slots[my_slot];
	bool		busy = false;
	int			i;

	LWLockAcquire(OcxShmem->lock, LW_SHARED);
	for (i = 0; i < OCX_MAX_POOL && !busy; i++)
		busy = i != my_member && MemberBusy(&slot->members[i], now);
	LWLockRelease(OcxShmem->lock);
	return busy;
}

/* Record that this process starts working (now) or goes to sleep (0). */
static void
SetBusySince(TimestampTz when)
{
	OcxPoolMember *m = &OcxShmem->slots[my_slot].members[my_member];
	Latch	   *launcher = NULL;

	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (m->generation == my_member_generation)
	{
		m->busy_since = when;
		if (when != 0 && !OcxShmem->launcher_watching)
			launcher = OcxShmem->launcher_latch;
	}
	LWLockRelease(OcxShmem->lock);
	if (launcher)
		SetLatch(launcher);
}

/*
 * One pass over every unit of the database.  Returns what it found of the
 * database; sets *more when some unit has more to do at once, lowers
 * *next_due, sets *failed on an error.
 */
static OcxPassResult
PoolPass(TimestampTz now, TimestampTz *next_due, bool *more, bool *failed,
		 uint64 *horizon)
{
	ListStep	ls;
	bool		list_failed = false;
	int			nunits;
	int			np;
	int			start;
	int			k;
	ListCell   *lc;
	ListCell   *lc2;
	const char **unit_names;
	int		   *unit_partitions;

	*more = false;
	*horizon = 0;
	memset(&ls, 0, sizeof(ls));
	ls.installed = true;
	ls.served = true;
	OcxRunStep(StepList, &ls, "ocx worker: checking for work", &list_failed, NULL, NULL);
	if (list_failed)
	{
		*failed = true;
		return OCX_PASS_FAILED;
	}
	if (!ls.installed)
		return OCX_PASS_NO_EXTENSION;
	if (!ls.served)
		return OCX_PASS_NOT_SERVED;
	if (ls.restoring)
	{
		/* a pg_restore is loading this database: act on none of it yet */
		pgstat_report_activity(STATE_IDLE, "ocx worker: waiting for pg_restore to finish");
		return OCX_PASS_RESTORING;
	}
	*horizon = ls.horizon;

	/*
	 * The projections (a partitioned one is one unit per partition), then the
	 * bus, the command queue, the sagas, the seals, retention and the log's
	 * partitions ahead (one unit each).
	 */
	np = 0;
	foreach(lc, ls.partitions)
		np += lfirst_int(lc) > 1 ? lfirst_int(lc) : 1;
	unit_names = palloc(sizeof(char *) * Max(np, 1));
	unit_partitions = palloc(sizeof(int) * Max(np, 1));
	np = 0;
	forboth(lc, ls.names, lc2, ls.partitions)
	{
		int			n = lfirst_int(lc2);
		int			p;

		for (p = 0; p < Max(n, 1); p++)
		{
			unit_names[np] = (const char *) lfirst(lc);
			unit_partitions[np++] = n > 1 ? p : -1;
		}
	}
	nunits = np + 6;
	start = (int) ((my_member + my_passes++) % (uint32) nunits);
	for (k = 0; k < nunits; k++)
	{
		int			u = (start + k) % nunits;

		CHECK_FOR_INTERRUPTS();
		if (MemberShouldLeave())
			break;
		if (u < np)
			RunUnit(UNIT_PROJECTION, unit_names[u], unit_partitions[u], now,
					next_due, more, failed);
		else
			RunUnit((UnitKind) (UNIT_BUS + (u - np)), NULL, -1, now, next_due, more, failed);
	}
	return OCX_PASS_OK;
}

/*
 * The loop of the database worker (member 0) and of its helpers: a pass,
 * then sleep on the latch until woken, until a retry is due or until
 * ocx.naptime passes.  Returns only in the database worker, with why the
 * database needs no worker.  Runs in OcxStepContext.
 */
OcxPassResult
OcxPoolLoop(int slot_index, int member, uint32 slot_generation, uint32 member_generation)
{
	int32		pass_failures = 0;	/* passes failed in a row */
	int32		held_looks = 0; /* looks again while events stay held */
	int64		backoff_ms = 0;
	bool		more = false;
	TimestampTz last_pass = 0;
	TimestampTz last_needed = GetCurrentTimestamp();
	bool		working = false;
	int			gather_ms = OCX_MIN_PASS_MS;

	my_slot = slot_index;
	my_member = member;
	my_slot_generation = slot_generation;
	my_member_generation = member_generation;

	/*
	 * No JIT in the worker's session.  Its statements are small kept plans
	 * run thousands of times a second, and JIT compiles again on every
	 * execution of a plan whose estimated cost passes jit_above_cost: the
	 * retention unit's streams query, estimated high over never-analyzed
	 * tables, spent 200-350 ms per pass compiling, with no policy defined
	 * and nothing to read, which kept a helper busy and took a core from the
	 * appenders (docs/performance.md).  A handler that wants JIT sets it
	 * itself (SET LOCAL jit = on).
	 */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);

	for (;;)
	{
		bool		failed = false;
		TimestampTz now;
		TimestampTz next_due;
		long		sleep_ms;
		OcxPassResult result;
		uint64		pass_horizon = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (member == 0 && OcxShmem->slots[slot_index].stop_requested)
			return OCX_PASS_STOP;
		if (MemberShouldLeave())
			proc_exit(0);

		/*
		 * Under a stream of appends the latch is set again and again; after a
		 * pass that found nothing to do, let wake-ups gather for a moment
		 * rather than run a pass per append: a wait on the timeout alone (the
		 * latch is set already), which still ends with the postmaster, and
		 * SIGTERM is acted on right after it.  The moment is 2 ms, and 5 ms
		 * while wake-ups also came in during the pass before (set below): a
		 * pass costs a handful of transactions whatever it finds, and at
		 * thousands of appends a second passes 2 ms apart took a tenth of
		 * the machine's CPU (docs/performance.md).
		 */
		now = GetCurrentTimestamp();
		if (!more && last_pass != 0 &&
			!TimestampDifferenceExceeds(last_pass, now, gather_ms))
		{
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 gather_ms - TimestampDifferenceMilliseconds(last_pass, now),
							 PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
		ResetLatch(MyLatch);
		MemoryContextReset(OcxStepContext);

		now = GetCurrentTimestamp();
		if (!working)
		{
			SetBusySince(now);
			working = true;
		}
		last_pass = now;
		next_due = TimestampTzPlusMilliseconds(now, ocx_naptime);
		result = PoolPass(now, &next_due, &more, &failed, &pass_horizon);
		if (result == OCX_PASS_NO_EXTENSION || result == OCX_PASS_NOT_SERVED)
		{
			if (member == 0)
				return result;
			proc_exit(0);		/* the database worker decides */
		}

		/* the database worker also watches the long-transaction stall */
		if (member == 0 && result == OCX_PASS_OK)
			OcxRunStep(StepHorizon, NULL, "ocx worker: log horizon", &failed, NULL, NULL);

		if (failed)
		{
			if (pass_failures < PG_INT32_MAX)
				pass_failures++;
			backoff_ms = OcxBackoffMs(OCX_PASS_BACKOFF_MS, OCX_MAX_BACKOFF_MS, pass_failures);
		}
		else
		{
			pass_failures = 0;
			backoff_ms = 0;
			if (member == 0 && result == OCX_PASS_OK && OcxShmem->slots[slot_index].failures != 0)
			{
				LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
				OcxShmem->slots[slot_index].failures = 0;
				LWLockRelease(OcxShmem->lock);
			}
		}

		/*
		 * Events committed at or above the horizon the pass read under were
		 * invisible to it: an older transaction with an xid was still open.
		 * Their own commits woke us before the pass, and the blocking
		 * transaction wakes nobody when it ends unless it appended (a
		 * command handled, a claim, a report): without a look again the
		 * events waited for the naptime (5 s by default).  Look again soon,
		 * backing off while the blocker stays open.
		 */
		if (result == OCX_PASS_OK && !more && !failed && pass_horizon != 0)
		{
			HeldStep	hs = {pass_horizon, false};
			bool		held_failed = false;

			OcxRunStep(StepHeld, &hs, "ocx worker: log horizon", &held_failed, NULL, NULL);
			if (hs.held && !held_failed)
			{
				if (held_looks < PG_INT32_MAX)
					held_looks++;
				next_due = Min(next_due,
							   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   OcxBackoffMs(OCX_HELD_MIN_MS,
																		OCX_HELD_MAX_MS,
																		held_looks)));
			}
			else
				held_looks = 0;
		}

		/* a helper is needed while another process is held by a slow unit */
		now = GetCurrentTimestamp();
		if (member > 0)
		{
			if (more || OthersBusy(now))
				last_needed = now;
			else if (TimestampDifferenceExceeds(last_needed, now, OCX_HELPER_IDLE_MS))
				proc_exit(0);
		}

		/* woken during the pass: appends keep coming, gather longer next time */
		gather_ms = MyLatch->is_set ? OCX_LOADED_PASS_MS : OCX_MIN_PASS_MS;

		if (more && !failed)
			sleep_ms = 0;
		else
			sleep_ms = Max(TimestampDifferenceMilliseconds(now, next_due), backoff_ms);
		if (member > 0)
			sleep_ms = Min(sleep_ms, OCX_HELPER_IDLE_MS);
		if (sleep_ms > 0)
		{
			SetBusySince(0);
			working = false;
			pgstat_report_activity(STATE_IDLE, result == OCX_PASS_RESTORING ?
								   "ocx worker: waiting for pg_restore to finish" :
								   "ocx worker: waiting for appends");
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
		}
	}
}

/* Report that this helper has gone, so nobody signals a stranger. */
static void
HelperDetach(int code, Datum arg)
{
	OcxDbSlot  *slot = &OcxShmem->slots[my_slot];
	OcxPoolMember *m = &slot->members[my_member];
	Latch	   *launcher = NULL;

	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (m->generation == my_member_generation)
	{
		m->state = OCX_MEMBER_FREE;
		m->pid = 0;
		m->latch = NULL;
		m->unit[0] = '\0';
		m->stop_requested = false;
		launcher = OcxShmem->launcher_latch;
	}
	LWLockRelease(OcxShmem->lock);
	if (launcher)
		SetLatch(launcher);
}

/* A helper's main function: attach to its member entry, then the loop. */
void
OcxHelperMain(Datum arg)
{
	OcxDbSlot  *slot;
	OcxPoolMember *m;
	uint32		extra[3];
	int			si = DatumGetInt32(arg);
	Oid			dboid;

	memcpy(extra, MyBgworkerEntry->bgw_extra, sizeof(extra));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (si < 0 || si >= OCX_MAX_DB_SLOTS || extra[1] < 1 || extra[1] >= OCX_MAX_POOL)
		proc_exit(0);
	my_slot = si;
	my_member = (int) extra[1];
	my_member_generation = extra[2];
	slot = &OcxShmem->slots[si];
	m = &slot->members[my_member];
	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (m->generation != extra[2] || m->state != OCX_MEMBER_STARTING ||
		m->stop_requested || slot->generation != extra[0] ||
		slot->state != OCX_SLOT_RUNNING || slot->stop_requested)
	{
		if (m->generation == extra[2])
		{
			m->state = OCX_MEMBER_FREE;
			m->stop_requested = false;
		}
		LWLockRelease(OcxShmem->lock);
		proc_exit(0);
	}
	m->state = OCX_MEMBER_RUNNING;
	m->pid = MyProcPid;
	m->latch = MyLatch;
	m->unit[0] = '\0';
	m->unit_since = GetCurrentTimestamp();
	dboid = slot->dboid;
	LWLockRelease(OcxShmem->lock);
	before_shmem_exit(HelperDetach, (Datum) 0);
	SetLatch(MyLatch);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("ocx worker helper");

	OcxStepContext = AllocSetContextCreate(TopMemoryContext, "ocx worker helper",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(OcxStepContext);
	(void) OcxPoolLoop(si, my_member, extra[0], extra[2]);
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * The launcher's side
 * ---------------------------------------------------------------------
 */

/*
 * Register a dynamic background worker that connects to a database (the
 * database worker, worker.c, or a helper), notifying the launcher; *handle
 * is replaced.  False when the postmaster has no free slot.
 */
bool
OcxRegisterDatabaseProcess(const char *function, const char *name, const char *type,
						   int32 main_arg, const void *extra, size_t extra_len,
						   BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	Assert(extra_len <= BGW_EXTRALEN);
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ocx");
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(main_arg);
	worker.bgw_notify_pid = MyProcPid;
	memcpy(worker.bgw_extra, extra, extra_len);

	if (*handle)
	{
		pfree(*handle);
		*handle = NULL;
	}
	if (!RegisterDynamicBackgroundWorker(&worker, handle))
	{
		*handle = NULL;
		return false;
	}
	return true;
}

/* Register helper i of slot si (lock held); false when no slot is free. */
static bool
StartHelperLocked(int si, int i)
{
	OcxDbSlot  *slot = &OcxShmem->slots[si];
	OcxPoolMember *m = &slot->members[i];
	uint32		extra[3];
	char		name[BGW_MAXLEN];

	m->generation++;
	extra[0] = slot->generation;
	extra[1] = (uint32) i;
	extra[2] = m->generation;
	snprintf(name, BGW_MAXLEN, "ocx worker helper %d for database %u", i, slot->dboid);
	if (!OcxRegisterDatabaseProcess("OcxHelperMain", name, "ocx worker helper", si,
									extra, sizeof(extra), &helper_handles[si][i]))
		return false;
	m->state = OCX_MEMBER_STARTING;
	m->stop_requested = false;
	m->pid = 0;
	m->latch = NULL;
	m->unit[0] = '\0';
	m->unit_since = GetCurrentTimestamp();
	m->units_run = 0;
	return true;
}

/*
 * The launcher's pass over every database's processes: forget helpers that
 * never attached, stop the ones beyond ocx.max_workers, start one where
 * every process has been busy on one unit for OCX_BUSY_MS.  Returns how
 * long the launcher may sleep before it must look again (LONG_MAX: nothing
 * is busy, a unit that starts wakes it).
 */
long
OcxPoolManage(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = LONG_MAX;
	bool		no_slot = false;
	bool		watching = false;
	bool		waiting = false;
	int			si;
	int			i;

	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);

	/* a database waiting for its worker goes before helpers of another */
	for (si = 0; si < OCX_MAX_DB_SLOTS; si++)
		if (OcxShmem->slots[si].state == OCX_SLOT_REQUESTED ||
			OcxShmem->slots[si].state == OCX_SLOT_STARTING ||
			(OcxShmem->slots[si].state == OCX_SLOT_HOLD && !OcxShmem->slots[si].stop_requested))
			waiting = true;

	for (si = 0; si < OCX_MAX_DB_SLOTS; si++)
	{
		OcxDbSlot  *slot = &OcxShmem->slots[si];
		int			running = 0;
		int			starting = 0;
		int			busy = 0;

		for (i = 0; i < OCX_MAX_POOL; i++)
		{
			OcxPoolMember *m = &slot->members[i];
			pid_t		pid;

			if (i > 0 && m->state == OCX_MEMBER_STARTING && helper_handles[si][i] != NULL &&
				GetBackgroundWorkerPid(helper_handles[si][i], &pid) == BGWH_STOPPED)
				m->state = OCX_MEMBER_FREE; /* it never attached */
			if (m->state == OCX_MEMBER_FREE)
				continue;
			if (i > 0 && i >= ocx_max_workers && !m->stop_requested)
			{
				/* ocx.max_workers was lowered */
				m->stop_requested = true;
				if (m->latch)
					SetLatch(m->latch);
			}
			if (m->state == OCX_MEMBER_STARTING)
			{
				starting++;
				continue;
			}
			running++;
			if (m->unit[0] != '\0' || m->busy_since != 0)
				watching = true;
			if (MemberBusy(m, now))
				busy++;
		}
		if (waiting || slot->state != OCX_SLOT_RUNNING || slot->stop_requested || running == 0 ||
			starting > 0 || busy < running || running >= ocx_max_workers)
			continue;
		for (i = 1; i < ocx_max_workers && i < OCX_MAX_POOL; i++)
			if (slot->members[i].state == OCX_MEMBER_FREE)
				break;
		if (i < ocx_max_workers && i < OCX_MAX_POOL)
		{
			if (!StartHelperLocked(si, i))
				no_slot = true;
		}
	}
	OcxShmem->launcher_watching = watching;
	LWLockRelease(OcxShmem->lock);
	if (watching)
		sleep_ms = OCX_BUSY_MS / 2;

	if (no_slot && TimestampDifferenceExceeds(last_no_slot_warning, now, 60000))
	{
		last_no_slot_warning = now;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("ocx: no background worker slot available for a worker helper"),
				 errdetail("Every ocx process of a database is busy; ocx.max_workers is %d.",
						   ocx_max_workers),
				 errhint("Raise max_worker_processes.")));
	}
	return sleep_ms;
}

/*
 * Ask every helper of the slot to leave now (lock held exclusively): the
 * database worker leaves, or DROP DATABASE needs the database.  Holding the
 * lock keeps the pids from being reused under us.
 */
void
OcxPoolStopLocked(OcxDbSlot *slot)
{
	int			i;

	for (i = 1; i < OCX_MAX_POOL; i++)
	{
		OcxPoolMember *m = &slot->members[i];

		if (m->state == OCX_MEMBER_FREE)
			continue;
		m->stop_requested = true;
		if (m->state == OCX_MEMBER_RUNNING && m->pid != 0)
			kill(m->pid, SIGTERM);
	}
}
