/*
 * ocx_worker.h
 *		Shared memory and background workers: the launcher, one worker per
 *		database, and the projection work they do.
 *
 * Shared state (struct OcxShared) lives in shmem.c and is NULL unless ocx was
 * loaded through shared_preload_libraries.  OcxShared->lock protects every
 * field of every slot and the launcher fields; see src/README.md for the
 * slot state machine.
 */
#ifndef OCX_WORKER_H
#define OCX_WORKER_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* Per-database worker slots; a database holds at most one slot. */
#define OCX_MAX_DB_SLOTS	64

/* Processes per database: its worker and helpers (bound of ocx.max_workers). */
#define OCX_MAX_POOL		16
/* "projection " plus a projection name, or "bus", "commands", "sagas" */
#define OCX_UNIT_LEN		(NAMEDATALEN + 32)

typedef enum OcxSlotState
{
	OCX_SLOT_FREE = 0,
	OCX_SLOT_REQUESTED,			/* a worker is wanted; the launcher starts it */
	OCX_SLOT_STARTING,			/* registered with the postmaster */
	OCX_SLOT_RUNNING,			/* the worker attached itself */
	OCX_SLOT_EXITED,			/* the worker left; the launcher decides next */
	OCX_SLOT_HOLD				/* no worker until restart_at */
} OcxSlotState;

/* Why a worker left (set by the worker before it exits). */
typedef enum OcxExitReason
{
	OCX_EXIT_UNKNOWN = 0,		/* crash, FATAL, or never attached */
	OCX_EXIT_NO_EXTENSION,		/* ocx is not installed in the database */
	OCX_EXIT_STOP_REQUESTED,	/* DROP DATABASE and friends asked it to go */
	OCX_EXIT_NOT_SERVED			/* ocx.databases leaves the database out */
} OcxExitReason;

/* A process of a database: member 0 is its worker, the others helpers (pool.c). */
typedef enum OcxMemberState
{
	OCX_MEMBER_FREE = 0,
	OCX_MEMBER_STARTING,		/* a helper registered by the launcher */
	OCX_MEMBER_RUNNING			/* attached: pid and latch set */
} OcxMemberState;

typedef struct OcxPoolMember
{
	OcxMemberState state;
	uint32		generation;		/* bumped at each start; stale members leave */
	pid_t		pid;			/* while RUNNING */
	Latch	   *latch;			/* while RUNNING */
	bool		stop_requested; /* leave after the current unit */
	char		unit[OCX_UNIT_LEN]; /* the unit it runs now, "" when idle */
	TimestampTz unit_since;		/* when it took that unit, or went idle */
	TimestampTz busy_since;		/* working without sleeping since, or 0 */
	int64		units_run;		/* units of work it has run */
} OcxPoolMember;

typedef struct OcxDbSlot
{
	OcxSlotState state;
	Oid			dboid;
	uint32		generation;		/* bumped at each start; stale workers leave */
	pid_t		pid;			/* the worker's pid while RUNNING */
	Latch	   *latch;			/* the worker's latch while RUNNING */
	bool		wake_pending;	/* a wake-up arrived before it attached */
	bool		stop_requested; /* leave as soon as possible */
	int			stop_hold_ms;	/* then no worker for this long */
	OcxExitReason exit_reason;
	TimestampTz restart_at;		/* HOLD: when a worker may start again */
	int			failures;		/* consecutive failed starts (backoff) */
	OcxPoolMember members[OCX_MAX_POOL];	/* the database worker and its helpers */
} OcxDbSlot;

typedef struct OcxShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	int64		worker_restarts;	/* workers restarted after a failure */
	bool		launcher_watching;	/* the launcher looks at busy units often */
	OcxDbSlot	slots[OCX_MAX_DB_SLOTS];
} OcxShared;

/* shmem.c: the shared slots, and waking a database's worker at commit */
extern OcxShared *OcxShmem;
extern void OcxRequestSlot(OcxDbSlot *slot, Oid dboid, bool wake);
extern void OcxRequireWorkers(const char *what);

/* guc.c: the workers' settings */
extern int	ocx_naptime;
extern int	ocx_batch_size;
extern int	ocx_max_workers;
extern bool OcxDatabaseServed(void);

/* worker.c */
extern PGDLLEXPORT void OcxLauncherMain(Datum arg);
extern PGDLLEXPORT void OcxDatabaseWorkerMain(Datum arg);

/* pool.c: the units of work, the database worker's and helpers' loop */
typedef enum OcxPassResult
{
	OCX_PASS_OK,
	OCX_PASS_FAILED,
	OCX_PASS_RESTORING,
	OCX_PASS_NO_EXTENSION,
	OCX_PASS_NOT_SERVED,
	OCX_PASS_STOP
} OcxPassResult;

extern MemoryContext OcxStepContext;
extern OcxPassResult OcxPoolLoop(int slot_index, int member, uint32 slot_generation,
								 uint32 member_generation);
extern PGDLLEXPORT void OcxHelperMain(Datum arg);
extern long OcxPoolManage(void);
struct BackgroundWorkerHandle;
extern bool OcxRegisterDatabaseProcess(const char *function, const char *name, const char *type,
									   int32 main_arg, const void *extra, size_t extra_len,
									   struct BackgroundWorkerHandle **handle);
extern void OcxPoolStopLocked(OcxDbSlot *slot);

/* projection.c: work the database worker does, each call in its own transaction */
extern List *OcxProjectionsToRun(MemoryContext cxt, List **partitions);
extern bool OcxProjectionBatch(const char *name, int partition, TimestampTz *next_due);
extern void OcxProjectionFailed(const char *name, const char *message);

/* waitfor.c: wake the ocx.wait_for waiters of a projection the worker advanced */
extern void OcxWaitForWake(Oid dboid, const char *projection);

/*
 * Blue/green rebuilds: OcxProjectionsToRun lists the shadow replay of a
 * projection as a unit of work of its own, its name prefixed with
 * OCX_SHADOW_PREFIX (which no projection name can contain), after the
 * projection itself; OcxProjectionBatch/OcxProjectionFailed dispatch on the
 * prefix.  A worker pool may call these two directly instead.
 */
#define OCX_SHADOW_PREFIX "(shadow) "

#endif							/* OCX_WORKER_H */
