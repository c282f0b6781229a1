/*
 * worker.c
 *		The launcher and the per-database background workers.
 *
 * With ocx in shared_preload_libraries, _PG_init registers one launcher.  It
 * connects to no database (it reads the shared catalog pg_database) and
 * keeps one worker per database that has ocx installed, using the slots in
 * shared memory (shmem.c, src/README.md draws the state machine):
 *
 *	- at start, and every minute for databases it has not seen, it asks for a
 *	  worker in every database that accepts connections; a worker that finds
 *	  no ocx in its database leaves at once and its slot is freed;
 *	- a backend that appends (or creates the extension, or defines a
 *	  projection) wakes its database's worker at commit through the worker's
 *	  latch; with no worker yet it fills a slot and wakes the launcher;
 *	- DROP DATABASE, ALTER DATABASE (rename, tablespace) and CREATE DATABASE
 *	  from a template need the database to themselves: a ProcessUtility hook
 *	  asks the database's worker to leave (and the launcher to hold off)
 *	  before the command runs, so they are never blocked by a worker; DROP
 *	  EXTENSION ocx does the same, so it never waits for a long batch;
 *	- a worker that fails is restarted with a growing delay; when the
 *	  postmaster has no free worker slot the launcher warns and retries.
 *
 * A database worker loops: reload settings on SIGHUP, leave on SIGTERM or a
 * stop request, run each piece of work (each projection's batch, then the
 * bus, command and saga ticks) in its own transaction with errors caught
 * (abort, log, back off, continue), then sleep on its latch until woken or
 * until ocx.naptime passes.  pg_stat_activity shows what it is doing.
 *
 * Locking: every slot field is protected by OcxShmem->lock (ocx_worker.h).
 * A worker publishes its pid and latch under the lock and clears them, under
 * the lock, in a before_shmem_exit callback, so whoever holds the lock may
 * signal the pid or set the latch it reads.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_retry.h"
#include "ocx_worker.h"

#include <signal.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "executor/spi.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

PG_FUNCTION_INFO_V1(ocx_worker_status);


/*
 * How long a database stays without worker after DROP/ALTER DATABASE asked
 * (DROP DATABASE waits up to 5 s for other sessions to leave), and after
 * DROP EXTENSION asked.
 */
#define OCX_STOP_HOLD_MS		6000
#define OCX_EXT_HOLD_MS			500
/* the launcher looks for new databases this often */
#define OCX_RESCAN_MS			60000
/* retry delay when the postmaster has no free worker slot */
#define OCX_NO_SLOT_RETRY_MS	10000
/*
 * The launcher's restart of a database worker that failed: after failure k
 * (1, 2, ...) 2 s doubling to 30 s, through the one backoff (OcxBackoffMs,
 * retry.c).
 */
#define OCX_RESTART_BACKOFF_MS	2000
#define OCX_MAX_BACKOFF_MS		30000

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* When to start again a database worker that failed `failures` times in a row. */
static TimestampTz
RestartAt(TimestampTz now, int failures)
{
	return TimestampTzPlusMilliseconds(now, OcxBackoffMs(OCX_RESTART_BACKOFF_MS,
														 OCX_MAX_BACKOFF_MS, failures));
}


/* database worker side */
static int	my_slot = -1;
static uint32 my_generation = 0;
static OcxExitReason my_exit_reason = OCX_EXIT_UNKNOWN;

/* launcher side */
static BackgroundWorkerHandle *handles[OCX_MAX_DB_SLOTS];
static Oid	no_ocx[1024];		/* databases probed and found without ocx */
static int	n_no_ocx = 0;

typedef struct OcxDatabase
{
	Oid			oid;
	bool		connectable;
} OcxDatabase;

/*
 * Ask dboid's worker to leave now and keep it away for a while, so that a
 * command that needs the database to itself is not blocked.  Holding the
 * lock while signalling keeps the pid from being reused under us.
 */
static void
StopDatabaseWorker(Oid dboid, int hold_ms)
{
	int			i;
	Latch	   *launcher = NULL;

	if (OcxShmem == NULL || !OidIsValid(dboid))
		return;
	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
	{
		OcxDbSlot  *slot = &OcxShmem->slots[i];

		if (slot->state == OCX_SLOT_FREE || slot->dboid != dboid)
			continue;
		slot->stop_requested = true;
		slot->stop_hold_ms = hold_ms;
		slot->wake_pending = false;
		OcxPoolStopLocked(slot);
		if (slot->state == OCX_SLOT_RUNNING && slot->pid != 0)
			kill(slot->pid, SIGTERM);
		else if (slot->state == OCX_SLOT_REQUESTED || slot->state == OCX_SLOT_HOLD)
		{
			slot->state = OCX_SLOT_HOLD;
			slot->restart_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   hold_ms);
		}
		launcher = OcxShmem->launcher_latch;
	}
	LWLockRelease(OcxShmem->lock);
	if (launcher)
		SetLatch(launcher);
}

/* The value of option name in a CREATE/ALTER DATABASE option list, or NULL. */
static char *
DatabaseOption(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0 && def->arg != NULL)
			return defGetString(def);
	}
	return NULL;
}

/*
 * DROP EXTENSION ocx without CASCADE fails on an object outside the
 * extension that depends on one of its members (a view on ocx.events, a
 * function taking ocx.event, a foreign key to ocx.streams).  Objects that are
 * parts of members (a view's rule, a table's row type, trigger or policy)
 * are followed up their internal and automatic dependencies to the member.
 * Returns one line "X depends on Y" per such dependency, or NULL.  Read from
 * pg_depend before the DROP takes any lock.
 */
static const char *external_dependents_sql =
"WITH RECURSIVE members(classid, objid) AS ("
"  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d"
"   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass"
"     AND d.refobjid = $1 AND d.deptype = 'e'"
"  UNION ALL SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass, $1),"
" dependents(classid, objid, rc, ro) AS ("
"  SELECT DISTINCT d.classid, d.objid, d.refclassid, d.refobjid FROM pg_catalog.pg_depend d"
"    JOIN members m ON d.refclassid = m.classid AND d.refobjid = m.objid"
"   WHERE d.deptype = 'n'),"
" up(classid, objid, c0, o0) AS ("
"  SELECT DISTINCT classid, objid, classid, objid FROM dependents"
"  UNION"
"  SELECT d.refclassid, d.refobjid, u.c0, u.o0 FROM up u"
"    JOIN pg_catalog.pg_depend d ON d.classid = u.classid AND d.objid = u.objid"
"   WHERE d.deptype IN ('i', 'a'))"
" SELECT pg_catalog.string_agg(l, E'\\n' ORDER BY l) FROM ("
"  SELECT DISTINCT pg_catalog.pg_describe_object(x.classid, x.objid, 0) || ' depends on ' ||"
"         pg_catalog.pg_describe_object(x.rc, x.ro, 0) AS l"
"    FROM dependents x WHERE NOT EXISTS ("
"     SELECT FROM up u JOIN members m ON m.classid = u.classid AND m.objid = u.objid"
"      WHERE u.c0 = x.classid AND u.o0 = x.objid)) s";

static char *
ExternalDependents(Oid extoid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	char	   *result = NULL;
	char	   *lines;

	args[0] = ObjectIdGetDatum(extoid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	if (SPI_execute_with_args(external_dependents_sql, 1, argtypes, args, NULL,
							  true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "ocx: the dependency check of DROP EXTENSION failed");
	lines = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (lines != NULL)
		result = MemoryContextStrdup(CurTransactionContext, lines);
	SPI_finish();
	return result;
}

/*
 * DROP EXTENSION ocx: stop the worker so that the DROP never waits for (or
 * deadlocks with) its batch, but only when the DROP can succeed.  A DROP
 * without CASCADE that dependent objects would make fail (2BP01) is refused
 * here, before it takes a lock: a failed DROP must neither end the worker
 * nor cut its batch short.
 */
static void
PrepareDropExtension(DropStmt *drop)
{
	Oid			extoid = get_extension_oid("ocx", true);
	char	   *deps;

	if (!OidIsValid(extoid))
		return;					/* nothing to drop, no worker to stop */
	if (!pg_extension_ownercheck(extoid, GetUserId()))
		return;					/* the DROP fails with 42501 */
	if (drop->behavior != DROP_CASCADE && (deps = ExternalDependents(extoid)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop extension ocx because other objects depend on it"),
				 errdetail("%s", deps),
				 errhint("Use DROP ... CASCADE to drop the dependent objects too.")));
	StopDatabaseWorker(MyDatabaseId, OCX_EXT_HOLD_MS);
}

/*
 * Before the commands that refuse to run while anyone is connected to a
 * database, make sure that no ocx worker is.
 */
static void
OcxProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *dbname = NULL;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			dbname = ((DropdbStmt *) stmt)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				dbname = ((RenameStmt *) stmt)->subname;
			break;
		case T_AlterDatabaseStmt:
			if (DatabaseOption(((AlterDatabaseStmt *) stmt)->options, "tablespace"))
				dbname = ((AlterDatabaseStmt *) stmt)->dbname;
			break;
		case T_CreatedbStmt:
			dbname = DatabaseOption(((CreatedbStmt *) stmt)->options, "template");
			break;
		case T_TransactionStmt:
			/* a prepared append becomes visible: wake the worker */
			if (((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
				OcxWakeWorkerAtCommit();
			break;
		case T_DropStmt:
			/* DROP EXTENSION ocx: see PrepareDropExtension */
			if (((DropStmt *) stmt)->removeType == OBJECT_EXTENSION)
			{
				ListCell   *lc;

				foreach(lc, ((DropStmt *) stmt)->objects)
					if (strcmp(strVal(lfirst(lc)), "ocx") == 0)
						PrepareDropExtension((DropStmt *) stmt);
			}
			break;
		default:
			break;
	}
	if (dbname != NULL)
		StopDatabaseWorker(get_database_oid(dbname, true), OCX_STOP_HOLD_MS);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

/* Forget the launcher's latch before its process goes away. */
static void
LauncherDetach(int code, Datum arg)
{
	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (OcxShmem->launcher_pid == MyProcPid)
	{
		OcxShmem->launcher_pid = 0;
		OcxShmem->launcher_latch = NULL;
	}
	LWLockRelease(OcxShmem->lock);
}

/*
 * The databases in pg_database (a shared catalog: the launcher needs no
 * database connection to read it), allocated in the caller's context.
 */
static OcxDatabase *
ScanDatabases(int *count)
{
	MemoryContext cxt = CurrentMemoryContext;
	OcxDatabase *dbs = NULL;
	int			n = 0;
	int			cap = 16;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	dbs = palloc(sizeof(OcxDatabase) * cap);
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		if (n == cap)
		{
			cap *= 2;
			dbs = repalloc(dbs, sizeof(OcxDatabase) * cap);
		}
		dbs[n].oid = db->oid;
		dbs[n].connectable = db->datallowconn && !db->datistemplate &&
			!database_is_invalid_form(db);
		n++;
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	*count = n;
	return dbs;
}

/* Whether oid is in the scanned list and accepts a worker. */
static bool
DatabaseConnectable(OcxDatabase *dbs, int n, Oid oid)
{
	int			i;

	for (i = 0; i < n; i++)
		if (dbs[i].oid == oid)
			return dbs[i].connectable;
	return false;
}

/* Ask for a worker in dboid unless a slot already covers it (lock held). */
static void
RequestSlotLocked(Oid dboid)
{
	int			i;
	int			free_slot = -1;

	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
	{
		OcxDbSlot  *slot = &OcxShmem->slots[i];

		if (slot->state == OCX_SLOT_FREE)
		{
			if (free_slot < 0)
				free_slot = i;
		}
		else if (slot->dboid == dboid)
			return;
	}
	if (free_slot >= 0)
	{
		OcxRequestSlot(&OcxShmem->slots[free_slot], dboid, false);
	}
}

/* Register a dynamic worker for slot i (lock held); false when none is free. */
static bool
StartWorkerLocked(int i)
{
	OcxDbSlot  *slot = &OcxShmem->slots[i];
	char		name[BGW_MAXLEN];

	slot->generation++;
	snprintf(name, BGW_MAXLEN, "ocx worker for database %u", slot->dboid);
	if (!OcxRegisterDatabaseProcess("OcxDatabaseWorkerMain", name, "ocx worker", i,
									&slot->generation, sizeof(uint32), &handles[i]))
		return false;
	slot->state = OCX_SLOT_STARTING;
	slot->exit_reason = OCX_EXIT_UNKNOWN;
	return true;
}

/*
 * One pass over the slots: start what is requested, notice what ended,
 * release holds that expired.  Returns how long the launcher may sleep.
 */
static long
ManageSlots(bool *rescan)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = OCX_RESCAN_MS;
	bool		need_dbs = false;
	bool		no_slot = false;
	OcxDatabase *dbs = NULL;
	int			ndbs = 0;
	int			i;

	/* does any request need the database list? */
	LWLockAcquire(OcxShmem->lock, LW_SHARED);
	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
	{
		OcxDbSlot  *slot = &OcxShmem->slots[i];

		if (slot->state == OCX_SLOT_REQUESTED ||
			(slot->state == OCX_SLOT_HOLD && slot->restart_at <= now))
			need_dbs = true;
	}
	LWLockRelease(OcxShmem->lock);
	if (need_dbs || *rescan)
		dbs = ScanDatabases(&ndbs);

	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (*rescan)
	{
		for (i = 0; i < ndbs; i++)
		{
			int			j;
			bool		skip = !dbs[i].connectable;

			for (j = 0; j < n_no_ocx && !skip; j++)
				skip = (no_ocx[j] == dbs[i].oid);
			if (!skip)
				RequestSlotLocked(dbs[i].oid);
		}
		*rescan = false;
	}
	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
	{
		OcxDbSlot  *slot = &OcxShmem->slots[i];
		pid_t		pid;

		switch (slot->state)
		{
			case OCX_SLOT_FREE:
			case OCX_SLOT_RUNNING:
				break;

			case OCX_SLOT_HOLD:
				if (slot->restart_at > now)
				{
					sleep_ms = Min(sleep_ms,
								   TimestampDifferenceMilliseconds(now, slot->restart_at) + 1);
					break;
				}
				slot->state = OCX_SLOT_REQUESTED;
				slot->stop_requested = false;
				/* FALLTHROUGH */

			case OCX_SLOT_REQUESTED:
				if (dbs == NULL)
				{
					/* requested since we looked: next pass, with the list */
					sleep_ms = 0;
					break;
				}
				if (!DatabaseConnectable(dbs, ndbs, slot->dboid))
				{
					slot->state = OCX_SLOT_FREE;
					break;
				}
				if (!StartWorkerLocked(i))
				{
					no_slot = true;
					slot->state = OCX_SLOT_HOLD;
					slot->restart_at = TimestampTzPlusMilliseconds(now, OCX_NO_SLOT_RETRY_MS);
					sleep_ms = Min(sleep_ms, OCX_NO_SLOT_RETRY_MS);
				}
				break;

			case OCX_SLOT_STARTING:
				/* a worker that died before attaching (e.g. its database went away) */
				if (handles[i] != NULL &&
					GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
				{
					slot->failures++;
					slot->state = OCX_SLOT_HOLD;
					slot->restart_at = RestartAt(now, slot->failures);
					sleep_ms = Min(sleep_ms, 1000);
				}
				break;

			case OCX_SLOT_EXITED:
				switch (slot->exit_reason)
				{
					case OCX_EXIT_NO_EXTENSION:
					case OCX_EXIT_NOT_SERVED:
						/* CREATE EXTENSION may have committed while it left */
						if (slot->wake_pending)
							slot->state = OCX_SLOT_REQUESTED;
						else
						{
							slot->state = OCX_SLOT_FREE;
							if (n_no_ocx < (int) lengthof(no_ocx))
								no_ocx[n_no_ocx++] = slot->dboid;
						}
						break;
					case OCX_EXIT_STOP_REQUESTED:
						slot->state = OCX_SLOT_HOLD;
						slot->restart_at = TimestampTzPlusMilliseconds(now, slot->stop_hold_ms);
						break;
					case OCX_EXIT_UNKNOWN:
						slot->failures++;
						OcxShmem->worker_restarts++;
						OcxCount(OCX_COUNT_WORKER_RESTARTS, 1);
						slot->state = OCX_SLOT_HOLD;
						slot->restart_at = RestartAt(now, slot->failures);
						break;
				}
				sleep_ms = 0;	/* look again at once */
				break;
		}
	}
	LWLockRelease(OcxShmem->lock);

	if (no_slot)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("ocx: no background worker slot available for a database worker"),
				 errhint("Raise max_worker_processes; ocx retries in %d seconds.",
						 OCX_NO_SLOT_RETRY_MS / 1000)));
	if (dbs)
		pfree(dbs);
	return sleep_ms;
}

/* The launcher's main loop. */
void
OcxLauncherMain(Datum arg)
{
	MemoryContext cxt;
	volatile bool rescan = true;
	TimestampTz last_scan;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("ocx launcher");

	cxt = AllocSetContextCreate(TopMemoryContext, "ocx launcher", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	/*
	 * A previous launcher may have died: workers it was starting are started
	 * again (a late one sees its generation is stale and leaves); running
	 * ones go on and report their exit through their slot.
	 */
	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	OcxShmem->launcher_pid = MyProcPid;
	OcxShmem->launcher_latch = MyLatch;
	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
		if (OcxShmem->slots[i].state == OCX_SLOT_STARTING)
			OcxShmem->slots[i].state = OCX_SLOT_REQUESTED;
	LWLockRelease(OcxShmem->lock);
	before_shmem_exit(LauncherDetach, (Datum) 0);

	ereport(LOG, (errmsg("ocx launcher started")));
	last_scan = GetCurrentTimestamp();

	for (;;)
	{
		long		sleep_ms = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			rescan = true;		/* ocx.databases may serve more now */
			n_no_ocx = 0;
		}
		ResetLatch(MyLatch);

		if (TimestampDifferenceExceeds(last_scan, GetCurrentTimestamp(), OCX_RESCAN_MS))
			rescan = true;
		if (rescan)
			last_scan = GetCurrentTimestamp();

		PG_TRY();
		{
			pgstat_report_activity(STATE_RUNNING, "ocx launcher: managing workers");
			{
				bool		r = rescan;

				sleep_ms = ManageSlots(&r);
				rescan = r;
				sleep_ms = Min(sleep_ms, OcxPoolManage());
			}
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			ereport(LOG,
					(errcode(edata->sqlerrcode),
					 errmsg("ocx launcher: %s", edata->message)));
			FreeErrorData(edata);
			sleep_ms = 1000;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
		pgstat_report_activity(STATE_IDLE, NULL);

		if (sleep_ms > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
	}
}

/* ---------------------------------------------------------------------
 * The database worker
 * ---------------------------------------------------------------------
 */

/* Report why we leave and clear our pid and latch, so nobody signals a stranger. */
static void
WorkerDetach(int code, Datum arg)
{
	OcxDbSlot  *slot = &OcxShmem->slots[my_slot];
	Latch	   *launcher = NULL;

	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (slot->generation == my_generation)
	{
		slot->state = OCX_SLOT_EXITED;
		slot->pid = 0;
		slot->latch = NULL;
		slot->exit_reason = slot->stop_requested ? OCX_EXIT_STOP_REQUESTED : my_exit_reason;
		slot->members[0].state = OCX_MEMBER_FREE;
		slot->members[0].pid = 0;
		slot->members[0].latch = NULL;
		slot->members[0].unit[0] = '\0';
		OcxPoolStopLocked(slot);
		launcher = OcxShmem->launcher_latch;
	}
	LWLockRelease(OcxShmem->lock);
	if (launcher)
		SetLatch(launcher);
}

/* Leave for a reason the launcher understands (not a failure). */
static void
WorkerExit(OcxExitReason reason)
{
	my_exit_reason = reason;
	proc_exit(0);
}

/*
 * The per-database worker's main function: attach to the slot (and to
 * member 0 of its processes), then run the database's units (pool.c) until
 * the database needs no worker or a stop is requested.
 */
void
OcxDatabaseWorkerMain(Datum arg)
{
	OcxDbSlot  *slot;
	OcxPoolMember *me;
	Oid			dboid;
	bool		pending;
	uint32		member_generation;

	my_slot = DatumGetInt32(arg);
	memcpy(&my_generation, MyBgworkerEntry->bgw_extra, sizeof(uint32));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* attach to our slot, unless the launcher has moved on */
	slot = &OcxShmem->slots[my_slot];
	me = &slot->members[0];
	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	if (slot->generation != my_generation || slot->state != OCX_SLOT_STARTING ||
		slot->stop_requested)
	{
		bool		stop = slot->stop_requested && slot->generation == my_generation;

		if (stop)
		{
			slot->state = OCX_SLOT_EXITED;
			slot->exit_reason = OCX_EXIT_STOP_REQUESTED;
		}
		LWLockRelease(OcxShmem->lock);
		proc_exit(0);
	}
	slot->state = OCX_SLOT_RUNNING;
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	me->generation++;
	member_generation = me->generation;
	me->state = OCX_MEMBER_RUNNING;
	me->pid = MyProcPid;
	me->latch = MyLatch;
	me->stop_requested = false;
	me->unit[0] = '\0';
	me->unit_since = GetCurrentTimestamp();
	me->units_run = 0;
	dboid = slot->dboid;
	pending = slot->wake_pending;
	slot->wake_pending = false;
	LWLockRelease(OcxShmem->lock);
	before_shmem_exit(WorkerDetach, (Datum) 0);
	if (pending)
		SetLatch(MyLatch);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("ocx worker");

	OcxStepContext = AllocSetContextCreate(TopMemoryContext, "ocx worker",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(OcxStepContext);

	switch (OcxPoolLoop(my_slot, 0, my_generation, member_generation))
	{
		case OCX_PASS_NO_EXTENSION:
			WorkerExit(OCX_EXIT_NO_EXTENSION);
			break;
		case OCX_PASS_NOT_SERVED:
			WorkerExit(OCX_EXIT_NOT_SERVED);
			break;
		default:
			WorkerExit(OCX_EXIT_STOP_REQUESTED);
			break;
	}
}

/* ---------------------------------------------------------------------
 * Status and registration
 * ---------------------------------------------------------------------
 */

/* How worker_status() names a slot state. */
static const char *
SlotStateName(OcxSlotState s)
{
	switch (s)
	{
		case OCX_SLOT_FREE:
			return "free";
		case OCX_SLOT_REQUESTED:
			return "requested";
		case OCX_SLOT_STARTING:
			return "starting";
		case OCX_SLOT_RUNNING:
			return "running";
		case OCX_SLOT_EXITED:
			return "exited";
		case OCX_SLOT_HOLD:
			return "waiting";
	}
	return "unknown";
}

/*
 * SQL: ocx.worker_status() -- for operators, one row per database the
 * launcher tracks (role 'worker', state as the slot's) and one row per
 * helper (role 'helper', state 'starting', 'idle' or 'busy'), each with the
 * unit it runs; raises OX210 when the workers are not loaded.
 */
Datum
ocx_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OcxDbSlot  *copy;
	pid_t		launcher_pid;
	int64		restarts;
	int			i;
	int			j;

	OcxRequireWorkers("ocx.worker_status()");
	InitMaterializedSRF(fcinfo, 0);

	copy = palloc(sizeof(OcxDbSlot) * OCX_MAX_DB_SLOTS);
	LWLockAcquire(OcxShmem->lock, LW_SHARED);
	memcpy(copy, OcxShmem->slots, sizeof(OcxDbSlot) * OCX_MAX_DB_SLOTS);
	launcher_pid = OcxShmem->launcher_pid;
	restarts = OcxShmem->worker_restarts;
	LWLockRelease(OcxShmem->lock);

	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
	{
		Datum		values[11];
		bool		nulls[11];
		char	   *name;

		if (copy[i].state == OCX_SLOT_FREE)
			continue;
		name = get_database_name(copy[i].dboid);
		for (j = -1; j < OCX_MAX_POOL; j++)
		{
			OcxPoolMember *m = j > 0 ? &copy[i].members[j] : NULL;

			if (j == 0 || (m && m->state == OCX_MEMBER_FREE))
				continue;
			memset(nulls, 0, sizeof(nulls));
			values[0] = ObjectIdGetDatum(copy[i].dboid);
			if (name)
				values[1] = CStringGetTextDatum(name);
			else
				nulls[1] = true;
			if (m == NULL)
				values[2] = CStringGetTextDatum(SlotStateName(copy[i].state));
			else
				values[2] = CStringGetTextDatum(m->state == OCX_MEMBER_STARTING ? "starting" :
												m->unit[0] != '\0' ? "busy" : "idle");
			values[3] = Int32GetDatum(m ? m->pid : copy[i].pid);
			nulls[3] = (m ? m->pid : copy[i].pid) == 0;
			values[4] = Int32GetDatum(launcher_pid);
			nulls[4] = launcher_pid == 0;
			values[5] = Int64GetDatum(restarts);
			if (m == NULL)
				m = &copy[i].members[0];	/* the database worker's unit */
			values[6] = CStringGetTextDatum(j < 0 ? "worker" : "helper");
			values[7] = Int32GetDatum(Max(j, 0));
			if (m->state == OCX_MEMBER_RUNNING && m->unit[0] != '\0')
			{
				values[8] = CStringGetTextDatum(m->unit);
				values[9] = TimestampTzGetDatum(m->unit_since);
			}
			else
				nulls[8] = nulls[9] = true;
			values[10] = Int64GetDatum(m->units_run);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}

/*
 * Settings, and with preloading the launcher and the ProcessUtility hook.
 */
void
OcxWorkerInit(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = OcxProcessUtility;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ocx");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "OcxLauncherMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ocx launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ocx launcher");
	RegisterBackgroundWorker(&worker);
}
