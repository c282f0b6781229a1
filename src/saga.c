/*
 * saga.c
 *		The worker's saga task.
 *
 * A saga is a sequence of steps; each step sends a command through the
 * command queue (commands.c, sql/parts/50_bus.sql) with correlation id = the
 * saga id, and completes when an event of one of its success types with that
 * correlation id is appended.  A failure event, a dead-lettered command, a
 * timeout or ocx.abort_saga stop the saga, and the compensating commands of
 * its completed steps are sent one at a time in reverse order.  The state
 * machine, drawn in docs/sagas.md, is written in SQL (sql/parts/60_sagas.sql)
 * because every transition is a handful of row changes in extension tables;
 * this file drives it from the per-database worker.
 *
 * Each call of OcxSagaWorkerTick runs in its own transaction, which the
 * worker starts and commits (worker.c).  One round:
 *
 *	1. locks the one row of ocx.saga_cursor (so concurrent rounds, say a
 *	   test calling ocx._saga_tick() while the worker runs, serialize), takes
 *	   the horizon pg_snapshot_xmin(pg_current_snapshot()) and reads the
 *	   events after the cursor whose transaction is below it, in log order
 *	   (txid, global_position): an event of a transaction that commits late
 *	   is delayed, never skipped;
 *	2. applies those correlated to running sagas: the next step's command is
 *	   sent (ocx.send_command) in this same transaction, which also moves the
 *	   cursor past the events read;
 *	3. looks at the outstanding commands of compensating sagas, at passed
 *	   deadlines and, about once a second, at step commands that ended as
 *	   dead letters.
 *
 * Because the sends, the state changes and the cursor commit together, a
 * worker killed at any point either did all of a round or none of it: a step
 * is never sent twice and a success event is never lost.  Step and
 * compensation command ids are derived from (saga id, step, do/undo), so a
 * repeated send would be a no-op anyway.
 *
 * While no saga is running or compensating, the worker skips rounds, and at
 * most every SAGA_IDLE_ROUND_MS runs an idle round (ocx._saga_idle_round)
 * that only moves the cursor to the end of the readable log; it sends
 * nothing, so it runs as a bystander (appenders.c) and its xid holds back
 * no reader.
 *
 * No shared memory: all state is in tables, protected by row locks.  The
 * only process-local state is when this worker last looked for dead letters
 * and last ran a round with no saga active.
 */
#include "ocx.h"
#include "ocx_saga.h"
#include "ocx_worker.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ocx_saga_tick);

/*
 * How often the worker looks for step commands that ended as dead letters:
 * that check costs a lookup per running saga, and a dead letter comes only
 * after retries with backoff, so once a second is soon enough.
 */
#define SAGA_DEAD_LETTER_CHECK_MS	1000

/*
 * With no active saga, a full round only moves the cursor to the end of the
 * log; do that at most this often, and otherwise touch nothing but
 * ocx.saga_instances (fewer locks for DROP EXTENSION to wait for).
 */
#define SAGA_IDLE_ROUND_MS			10000

static SPIPlanPtr saga_run_plan = NULL;
static SPIPlanPtr saga_active_plan = NULL;
static SPIPlanPtr saga_idle_plan = NULL;
static TimestampTz last_dead_letter_check = 0;
static TimestampTz last_idle_round = 0;

/* Is any saga running or compensating? */
static bool
AnyActiveSaga(void)
{
	SPIPlanPtr	plan = OcxKeptPlan(&saga_active_plan,
								"SELECT 1 FROM ocx.saga_instances "
								"WHERE state OPERATOR(pg_catalog.=) ANY ('{running,compensating}'::pg_catalog.text[]) "
								"LIMIT 1", 0, NULL);
	int			rc = SPI_execute_plan(plan, NULL, NULL, true, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ocx: the saga task failed: %s", SPI_result_code_string(rc));
	return SPI_processed > 0;
}

/*
 * Run one round of the SQL state machine through a kept plan (prepared once
 * per backend: the worker calls this on every loop iteration).
 */
static int32
RunSagaRound(int32 max_events, bool check_dead_letters)
{
	Datum		args[2];
	bool		isnull;
	Datum		d;
	int			rc;

	Oid			argtypes[2] = {INT4OID, BOOLOID};
	SPIPlanPtr	plan = OcxKeptPlan(&saga_run_plan, "SELECT ocx._saga_run($1, $2)", 2, argtypes);

	args[0] = Int32GetDatum(max_events);
	args[1] = BoolGetDatum(check_dead_letters);
	rc = SPI_execute_plan(plan, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "ocx: the saga task failed: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * The idle round (ocx._saga_idle_round): only moves the cursor, sends
 * nothing.  Returns false when a saga became active meanwhile.
 */
static bool
RunIdleRound(void)
{
	SPIPlanPtr	plan = OcxKeptPlan(&saga_idle_plan, "SELECT ocx._saga_idle_round()", 0, NULL);
	bool		isnull;
	Datum		d;
	int			rc = SPI_execute_plan(plan, NULL, NULL, false, 1);

	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "ocx: the saga task failed: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * One round in the caller's transaction, in its own memory context.  With
 * idle_ok, a round is skipped when no saga is active (see
 * SAGA_IDLE_ROUND_MS); *skipped says so.  In the worker (worker), a round
 * while no saga is active only moves the cursor, as a bystander: its xid
 * holds back no reader (appenders.c).
 */
static bool
SagaRound(bool check_dead_letters, bool idle_ok, bool worker, bool *skipped)
{
	MemoryContext ctx,
				old;
	int32		done = 0;
	bool		active;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "ocx saga tick", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(ctx);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	active = AnyActiveSaga();
	*skipped = idle_ok && !active;
	if (!*skipped && !active && worker &&
		!FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()))
	{
		/* books only: the cursor moves, nothing is sent */
		OcxBystanderEnter();
		if (!RunIdleRound())
			done = 1;			/* a saga became active: a full round at once */
	}
	else if (!*skipped)
	{
		/* the round sends commands: an appender from here on (appenders.c) */
		OcxAppenderEnter();
		done = RunSagaRound(Max(ocx_batch_size, 1), check_dead_letters);
	}
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return done > 0;
}

/*
 * The worker's saga task: one round in the caller's transaction.  Returns
 * true when it made transitions or the event batch was full, so the worker
 * loops again at once (the commands it sent also wake it at commit).
 */
bool
OcxSagaWorkerTick(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		check = TimestampDifferenceExceeds(last_dead_letter_check, now,
												   SAGA_DEAD_LETTER_CHECK_MS);
	bool		idle_ok = !TimestampDifferenceExceeds(last_idle_round, now,
													  SAGA_IDLE_ROUND_MS);
	bool		skipped;
	bool		more;

	more = SagaRound(check, idle_ok, true, &skipped);

	/* reached only when the round ran without error */
	if (!skipped)
	{
		if (check)
			last_dead_letter_check = now;
		if (!idle_ok)
			last_idle_round = now;
	}
	return more;
}

/*
 * ocx._saga_tick(): one full round (dead letters included), for tests and
 * deployments without the worker.
 */
Datum
ocx_saga_tick(PG_FUNCTION_ARGS)
{
	bool		skipped;

	PG_RETURN_BOOL(SagaRound(true, false, false, &skipped));
}
