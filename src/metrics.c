/*
 * metrics.c
 *		Counters behind ocx.stats and ocx.metrics().
 *
 * The counters live in a small shared-memory segment of ocx's own ("ocx
 * metrics"), requested from shmem_request_hook and attached in
 * shmem_startup_hook, both chained to whatever hook was installed before.
 * They exist only when ocx is in shared_preload_libraries; without it,
 * OcxCount is a no-op and the SQL functions report zeros (and say so in the
 * shared_memory row / ocx_shared_memory gauge).
 *
 * Locking rules:
 *	- Each counter is a pg_atomic_uint64.  OcxCount adds to it with
 *	  pg_atomic_fetch_add_u64 and takes no lock: the append path pays one
 *	  atomic add per counter it touches, nothing more.
 *	- Readers (ocx._counters) read each counter with pg_atomic_read_u64,
 *	  also without a lock.  A reader may see one counter of an append
 *	  incremented and another not yet; every single value is exact, the set
 *	  is not a snapshot.  Monitoring does not need more.
 *	- ocx.reset_stats writes zero to each counter and the reset time.  It
 *	  takes no lock either: an increment racing with the reset may survive
 *	  it or not.  The reset time is written under the spinlock, because a
 *	  TimestampTz is not guaranteed to be read or written atomically.
 *	- The segment is created once, in the postmaster, under
 *	  AddinShmemInitLock (as every add-in segment is); backends inherit the
 *	  pointer (or re-attach under EXEC_BACKEND in the same hook).
 *
 * Counters are cluster-wide (every database's appends count together) and
 * start at zero when the server starts: they are Prometheus counters, and
 * Prometheus handles resets.
 *
 * Who counts: the C code of each subsystem calls OcxCount where the event
 * happens (append.c, aggregate.c, projection.c, worker.c); commands and
 * sagas, whose transitions happen in SQL functions as well as in workers,
 * are counted by the row triggers at the end of this file, installed on
 * ocx.commands and ocx.saga_instances by the observability part of the
 * install script when those tables exist.
 */
#include "ocx.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ocx_counters);
PG_FUNCTION_INFO_V1(ocx_reset_stats);

typedef struct OcxMetricsShared
{
	slock_t		mutex;			/* protects reset_time */
	TimestampTz reset_time;		/* server start or last ocx.reset_stats */
	pg_atomic_uint64 counters[OCX_NUM_COUNTERS];
} OcxMetricsShared;

/*
 * Names (as in ocx.stats; ocx.metrics() prefixes "ocx_" and appends
 * "_total") and help texts, indexed by OcxCounter.
 */
static const struct
{
	const char *name;
	const char *help;
}			counter_info[OCX_NUM_COUNTERS] = {
	[OCX_COUNT_APPENDS] = {"appends", "Append calls that wrote events."},
	[OCX_COUNT_EVENTS] = {"events", "Events written to the log."},
	[OCX_COUNT_BYTES] = {"bytes", "Bytes of event data and metadata written."},
	[OCX_COUNT_CONFLICTS] = {"conflicts", "Appends refused for a wrong expected version."},
	[OCX_COUNT_IDEMPOTENT] = {"idempotent_retries", "Appends that repeated stored events and wrote nothing."},
	[OCX_COUNT_REPLAYS] = {"replays", "Aggregate loads (ocx.load)."},
	[OCX_COUNT_REPLAY_EVENTS] = {"replay_events", "Events folded by aggregate loads."},
	[OCX_COUNT_SNAPSHOT_HITS] = {"snapshot_hits", "Aggregate loads that started from a snapshot."},
	[OCX_COUNT_SNAPSHOTS_WRITTEN] = {"snapshots_written", "Aggregate snapshots stored."},
	[OCX_COUNT_PROJECTION_EVENTS] = {"projection_events", "Events applied by projections."},
	[OCX_COUNT_PROJECTION_ERRORS] = {"projection_errors", "Projection handler calls that failed."},
	[OCX_COUNT_PROJECTION_DEAD_LETTERS] = {"projection_dead_letters", "Events parked as projection dead letters."},
	[OCX_COUNT_COMMANDS_SENT] = {"commands_sent", "Commands sent (ocx.send_command)."},
	[OCX_COUNT_COMMANDS_SUCCEEDED] = {"commands_succeeded", "Commands completed."},
	[OCX_COUNT_COMMANDS_FAILED] = {"commands_failed", "Command attempts that failed."},
	[OCX_COUNT_COMMANDS_DEAD_LETTERS] = {"commands_dead_letters", "Commands given up on after their retries."},
	[OCX_COUNT_SAGAS_STARTED] = {"sagas_started", "Sagas started."},
	[OCX_COUNT_SAGAS_COMPLETED] = {"sagas_completed", "Sagas that completed."},
	[OCX_COUNT_SAGAS_COMPENSATED] = {"sagas_compensated", "Sagas that were compensated."},
	[OCX_COUNT_SAGAS_FAILED] = {"sagas_failed", "Sagas that failed."},
	[OCX_COUNT_WORKER_RESTARTS] = {"worker_restarts", "Database workers restarted after they failed."},
	[OCX_COUNT_STREAMS_SOFT_DELETED] = {"streams_soft_deleted", "Streams soft-deleted (ocx.delete_stream)."},
	[OCX_COUNT_STREAMS_HARD_DELETED] = {"streams_hard_deleted", "Streams hard-deleted (ocx.delete_stream with hard => true)."},
	[OCX_COUNT_DELETED_EVENTS] = {"deleted_events", "Events removed by hard deletes of streams."},
	[OCX_COUNT_RETENTION_BATCHES] = {"retention_batches", "Retention batches run by the worker (one stream each)."},
	[OCX_COUNT_RETENTION_EVENTS] = {"retention_events", "Events removed by retention."},
	[OCX_COUNT_PROJECTION_EVENTS_READ] = {"projection_events_read", "Events the one reader handed to projection batches (live and blue/green shadow)."},
};

static OcxMetricsShared *metrics = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Ask for the segment while the postmaster sizes shared memory. */
static void
OcxMetricsShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(OcxMetricsShared)));
}

/* Create (postmaster) or attach to (EXEC_BACKEND child) the segment. */
static void
OcxMetricsShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	metrics = ShmemInitStruct("ocx metrics", sizeof(OcxMetricsShared), &found);
	if (!found)
	{
		int			i;

		SpinLockInit(&metrics->mutex);
		metrics->reset_time = GetCurrentTimestamp();
		for (i = 0; i < OCX_NUM_COUNTERS; i++)
			pg_atomic_init_u64(&metrics->counters[i], 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the hooks, only while shared_preload_libraries is processed: a
 * library loaded later cannot add shared memory, and then counting is off.
 */
void
OcxMetricsInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = OcxMetricsShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = OcxMetricsShmemStartup;
}

/* The hot path: one lock-free atomic add, or nothing without the segment. */
void
OcxCount(OcxCounter counter, int64 delta)
{
	if (metrics == NULL || counter < 0 || counter >= OCX_NUM_COUNTERS || delta <= 0)
		return;
	pg_atomic_fetch_add_u64(&metrics->counters[counter], (uint64) delta);
}

/*
 * ocx._counters() -> SETOF (name text, value bigint, description text,
 * reset_time timestamptz): every counter, zeros without shared memory.
 * The view ocx.stats and ocx.metrics() are built on it.
 */
Datum
ocx_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz reset_time = 0;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	if (metrics != NULL)
	{
		SpinLockAcquire(&metrics->mutex);
		reset_time = metrics->reset_time;
		SpinLockRelease(&metrics->mutex);
	}

	for (i = 0; i < OCX_NUM_COUNTERS; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		uint64		v = 0;

		if (metrics != NULL)
			v = pg_atomic_read_u64(&metrics->counters[i]);
		values[0] = CStringGetTextDatum(counter_info[i].name);
		/* a wrap past INT64_MAX would take centuries of appends */
		values[1] = Int64GetDatum((int64) Min(v, (uint64) PG_INT64_MAX));
		values[2] = CStringGetTextDatum(counter_info[i].help);
		values[3] = TimestampTzGetDatum(reset_time);
		nulls[3] = (metrics == NULL);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * ocx.reset_stats(): zero every counter (an administrator's action; see
 * the locking rules above for what a concurrent increment sees).
 */
Datum
ocx_reset_stats(PG_FUNCTION_ARGS)
{
	int			i;

	if (metrics == NULL)
		PG_RETURN_BOOL(false);
	for (i = 0; i < OCX_NUM_COUNTERS; i++)
		pg_atomic_write_u64(&metrics->counters[i], 0);
	SpinLockAcquire(&metrics->mutex);
	metrics->reset_time = GetCurrentTimestamp();
	SpinLockRelease(&metrics->mutex);
	PG_RETURN_BOOL(true);
}

/* ocx._shared_memory(): whether the counters are live (ocx preloaded). */
PG_FUNCTION_INFO_V1(ocx_metrics_enabled);
Datum
ocx_metrics_enabled(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(metrics != NULL);
}

/*
 * Trigger on ocx.commands (installed by the observability part when the bus
 * is installed): counts commands sent, succeeded, failed attempts and dead
 * letters from the row's status transitions, so that every path that sends
 * or settles a command -- SQL functions, the worker, a claim that expired --
 * is counted in one place.  AFTER ROW: only rows actually written count.
 */
PG_FUNCTION_INFO_V1(ocx_count_commands);
Datum
ocx_count_commands(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			attnum;
	bool		isnull;
	char	   *old_status = NULL;
	char	   *new_status = NULL;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._count_commands() must be called as an AFTER ROW trigger")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		OcxCount(OCX_COUNT_COMMANDS_SENT, 1);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) || metrics == NULL)
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(desc, "status");
	if (attnum <= 0)
		return PointerGetDatum(NULL);
	{
		Datum		d = heap_getattr(trigdata->tg_trigtuple, attnum, desc, &isnull);

		if (!isnull)
			old_status = TextDatumGetCString(d);
		d = heap_getattr(trigdata->tg_newtuple, attnum, desc, &isnull);
		if (!isnull)
			new_status = TextDatumGetCString(d);
	}
	if (old_status == NULL || new_status == NULL || strcmp(old_status, new_status) == 0)
		return PointerGetDatum(NULL);

	if (strcmp(old_status, "running") == 0 && strcmp(new_status, "succeeded") == 0)
		OcxCount(OCX_COUNT_COMMANDS_SUCCEEDED, 1);
	if (strcmp(old_status, "running") == 0 &&
		(strcmp(new_status, "pending") == 0 || strcmp(new_status, "dead_letter") == 0))
		OcxCount(OCX_COUNT_COMMANDS_FAILED, 1);
	if (strcmp(new_status, "dead_letter") == 0)
		OcxCount(OCX_COUNT_COMMANDS_DEAD_LETTERS, 1);
	return PointerGetDatum(NULL);
}

/*
 * Trigger on ocx.saga_instances (installed by the observability part when
 * the sagas subsystem is installed): counts sagas started (INSERT) and
 * finished by their final state.  TG_ARGV[0] names the state column.
 */
PG_FUNCTION_INFO_V1(ocx_count_sagas);
Datum
ocx_count_sagas(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			attnum;
	bool		isnull;
	Datum		d;
	char	   *state;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._count_sagas() must be called as an AFTER ROW trigger with the state column as argument")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		OcxCount(OCX_COUNT_SAGAS_STARTED, 1);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) || metrics == NULL)
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(desc, trigdata->tg_trigger->tgargs[0]);
	if (attnum <= 0)
		return PointerGetDatum(NULL);
	d = heap_getattr(trigdata->tg_newtuple, attnum, desc, &isnull);
	if (isnull)
		return PointerGetDatum(NULL);
	state = TextDatumGetCString(d);
	if (strcmp(state, "completed") == 0)
		OcxCount(OCX_COUNT_SAGAS_COMPLETED, 1);
	else if (strcmp(state, "compensated") == 0)
		OcxCount(OCX_COUNT_SAGAS_COMPENSATED, 1);
	else if (strcmp(state, "failed") == 0)
		OcxCount(OCX_COUNT_SAGAS_FAILED, 1);
	return PointerGetDatum(NULL);
}
