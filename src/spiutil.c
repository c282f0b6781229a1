/*
 * spiutil.c
 *		Kept SPI plans, subtransactions and the deform of a composite datum,
 *		shared by every subsystem.
 *
 * Each subsystem keeps an array (or a few variables) of SPIPlanPtr, one per
 * fixed statement; OcxKeptPlan prepares a statement on first use in this
 * backend and keeps it.  The plan cache replans kept plans when the objects
 * they name change (DROP/CREATE EXTENSION included), so they never go stale.
 * Every name in those statements is schema-qualified.
 */
#include "ocx.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "utils/guc.h"
#include "utils/resowner.h"

/* The kept plan in *slot, prepared from sql on first use. */
SPIPlanPtr
OcxKeptPlan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes)
{
	return OcxKeptPlanExt(slot, sql, nargs, argtypes, 0);
}

/*
 * OcxKeptPlan with planner options (CURSOR_OPT_*).  CURSOR_OPT_GENERIC_PLAN
 * keeps one generic plan for every execution: for a statement whose custom
 * plans look so much cheaper than the generic one that the plan cache would
 * plan it again on every call, though both find the rows the same way.
 */
SPIPlanPtr
OcxKeptPlanExt(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes,
			   int cursor_options)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes,
											  cursor_options);

		if (plan == NULL)
			elog(ERROR, "ocx: SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/* Execute a kept plan (no row limit); returns SPI_processed. */
uint64
OcxRunKeptPlan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc < 0)
		elog(ERROR, "ocx: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * OcxRunKeptPlan for a statement that reads the log (or a queue) in order
 * from a cursor: planned and run with sequential scans, bitmap scans and
 * sorts off, so that it walks the order index and stops at its LIMIT
 * whatever the table's size when it was planned.  A kept plan is planned
 * once and kept until an invalidation; planned over a nearly empty log (the
 * worker starts with the extension) it read the whole table and sorted it on
 * every call as the log grew: the bus at 100,000 events took most of a core
 * from the appenders (docs/performance.md).  The settings are restored
 * after the call, and by the transaction's abort on an error.
 */
uint64
OcxRunKeptOrderedPlan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	int			nest = NewGUCNestLevel();
	uint64		n;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	n = OcxRunKeptPlan(plan, values, nulls, read_only);
	AtEOXact_GUC(true, nest);
	return n;
}

/*
 * Run fn(arg) in an internal subtransaction, so that an error in it undoes
 * its work and leaves the caller's transaction usable.  Returns NULL when fn
 * returned, else the error (copied into the caller's memory context, error
 * state flushed, subtransaction rolled back).  Either way the caller's memory
 * context and resource owner are current again; the rollback also restores
 * the user id and the settings fn changed.
 */
ErrorData *
OcxInSubtransaction(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

/*
 * The fields of a composite datum (an ocx.event passed to a C function):
 * th deformed with desc, its row type's descriptor, into values and nulls,
 * which hold desc->natts entries.  By-reference values point into th.
 */
void
OcxDeformRow(HeapTupleHeader th, TupleDesc desc, Datum *values, bool *nulls)
{
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, desc, values, nulls);
}
