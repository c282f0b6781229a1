/*
 * spiutil.c
 *		Kept SPI plans, shared by every subsystem that runs fixed queries.
 *
 * Each subsystem keeps an array (or a few variables) of SPIPlanPtr, one per
 * fixed statement; OcxKeptPlan prepares a statement on first use in this
 * backend and keeps it.  The plan cache replans kept plans when the objects
 * they name change (DROP/CREATE EXTENSION included), so they never go stale.
 * Every name in those statements is schema-qualified.
 */
#include "ocx.h"

#include "executor/spi.h"

/* The kept plan in *slot, prepared from sql on first use. */
SPIPlanPtr
OcxKeptPlan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, (Oid *) argtypes);

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
