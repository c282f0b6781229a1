/*
 * shmem.c
 *		ocx's shared memory: the launcher's and per-database workers' slots.
 *
 * The space and one named LWLock tranche ("ocx") are requested in the
 * shmem_request_hook and set up in the shmem_startup_hook, both chained to
 * any previous hook, and only when ocx is loaded through
 * shared_preload_libraries.  Loaded later (CREATE EXTENSION in a cluster that
 * does not preload ocx), OcxShmem stays NULL: everything that needs no worker
 * works, and what needs one says how to enable it (OcxRequireWorkers).
 *
 * Locking: OcxShmem->lock (exclusive to change, shared to read) protects
 * every slot field and the launcher fields.  Latches are set after the lock
 * is released when possible; setting a latch of an exited process is
 * harmless because slots clear their latch pointer under the lock before
 * the process exits.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_worker.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "access/xact.h"
#include "utils/timestamp.h"

OcxShared  *OcxShmem = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Ask the postmaster for our struct and lock before shared memory is sized. */
static void
OcxShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(OcxShared)));
	RequestNamedLWLockTranche("ocx", 1);
	OcxAppendersShmemRequest();
}

/* Attach to (or, in the postmaster, create) the shared struct. */
static void
OcxShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	OcxShmem = ShmemInitStruct("ocx", sizeof(OcxShared), &found);
	if (!found)
	{
		memset(OcxShmem, 0, sizeof(OcxShared));
		OcxShmem->lock = &(GetNamedLWLockTranche("ocx"))->lock;
	}
	OcxAppendersShmemStartup();
	LWLockRelease(AddinShmemInitLock);
}

/* Install the hooks; a no-op unless we are being preloaded. */
void
OcxShmemInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = OcxShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = OcxShmemStartup;
}

/* Whether this process can reach the workers' shared state. */
static bool
OcxWorkersLoaded(void)
{
	return OcxShmem != NULL;
}

/*
 * Refuse an operation that needs the background workers when ocx was not
 * preloaded, saying how to enable them.
 */
void
OcxRequireWorkers(const char *what)
{
	if (!OcxWorkersLoaded())
		ereport(ERROR,
				(errcode(ERRCODE_OCX_WORKERS_NOT_LOADED),
				 errmsg("%s needs the ocx background workers", what),
				 errdetail("The ocx library was not loaded through shared_preload_libraries."),
				 errhint("Add ocx to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* ---------------------------------------------------------------------
 * Waking a database's worker: the one thing appends and definitions need
 * of the workers (worker.c starts them, pool.c runs what they do)
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(ocx_wake_worker);

/* backend side: wake the worker when the current transaction commits */
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/*
 * Turn a free slot into a request for a worker in dboid (caller holds
 * OcxShmem->lock exclusively); wake: start it with work pending.
 */
void
OcxRequestSlot(OcxDbSlot *slot, Oid dboid, bool wake)
{
	slot->state = OCX_SLOT_REQUESTED;
	slot->dboid = dboid;
	slot->pid = 0;
	slot->latch = NULL;
	slot->wake_pending = wake;
	slot->stop_requested = false;
	slot->exit_reason = OCX_EXIT_UNKNOWN;
	slot->failures = 0;
}

/*
 * Wake dboid's worker, or, with none, ask the launcher for one.  Shared lock
 * on the common path (a running worker): appends commit concurrently.
 */
static void
WakeDatabaseWorker(Oid dboid)
{
	int			i;
	int			free_slot = -1;
	Latch	   *latch = NULL;

	LWLockAcquire(OcxShmem->lock, LW_SHARED);
	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
	{
		OcxDbSlot  *slot = &OcxShmem->slots[i];

		if (slot->state == OCX_SLOT_RUNNING && slot->dboid == dboid)
		{
			int			j;

			if (slot->latch)
				SetLatch(slot->latch);
			/* and its helpers, if a slow unit made the launcher start any */
			for (j = 1; j < OCX_MAX_POOL; j++)
				if (slot->members[j].state == OCX_MEMBER_RUNNING && slot->members[j].latch)
					SetLatch(slot->members[j].latch);
			LWLockRelease(OcxShmem->lock);
			return;
		}
	}
	LWLockRelease(OcxShmem->lock);

	LWLockAcquire(OcxShmem->lock, LW_EXCLUSIVE);
	for (i = 0; i < OCX_MAX_DB_SLOTS; i++)
	{
		OcxDbSlot  *slot = &OcxShmem->slots[i];

		if (slot->state == OCX_SLOT_FREE)
		{
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (slot->dboid != dboid)
			continue;
		if (slot->state == OCX_SLOT_RUNNING && slot->latch)
			SetLatch(slot->latch);
		else
			slot->wake_pending = true;
		LWLockRelease(OcxShmem->lock);
		return;
	}
	if (free_slot >= 0)
	{
		OcxRequestSlot(&OcxShmem->slots[free_slot], dboid, true);
		latch = OcxShmem->launcher_latch;
	}
	LWLockRelease(OcxShmem->lock);

	if (latch)
		SetLatch(latch);
	else if (free_slot < 0)
		ereport(LOG,
				(errmsg("ocx: no free worker slot for database %u", dboid),
				 errdetail("ocx serves at most %d databases.", OCX_MAX_DB_SLOTS)));
}

/* At commit, wake the worker that a committed append has work for. */
static void
OcxXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_at_commit && OcxShmem != NULL && OidIsValid(MyDatabaseId))
			{
				wake_at_commit = false;
				WakeDatabaseWorker(MyDatabaseId);
			}
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Called by append (and by definitions that give the worker new work): the
 * worker is woken when, and only if, this transaction commits, so it never
 * wakes to find the events still invisible.
 */
void
OcxWakeWorkerAtCommit(void)
{
	if (OcxShmem == NULL)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(OcxXactCallback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/* SQL: ocx._wake_worker(), for the install script and definitions. */
Datum
ocx_wake_worker(PG_FUNCTION_ARGS)
{
	OcxWakeWorkerAtCommit();
	PG_RETURN_BOOL(OcxShmem != NULL);
}

