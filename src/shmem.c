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
bool
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
