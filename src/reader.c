/*
 * reader.c
 *		The one reader of the log, for the C consumers (issue 12).
 *
 * Every consumer reads the log through one definition: ocx._read_log
 * (sql/parts/22_reader.sql), the events after a cursor in log order
 * (txid, global_position), below the horizon (ocx.log_horizon(): logspace.c,
 * appenders.c), selected by ocx._log_selects (the type and category rule),
 * upcast by ocx._upcast or as stored.  SQL consumers (read_all,
 * read_category, poll, the saga task, the lag gauges, the bus wake-up)
 * call it in their queries, where the planner inlines it; the worker's
 * projection batches read through OcxReadLog below, which runs the same
 * function, and filter with OcxLogSelects, the C form of ocx._log_selects.
 *
 * Why SQL and not a C set-returning function: a C SRF is opaque to the
 * planner, materialises its rows and cannot take the caller's LIMIT or
 * count(*); an earlier attempt measured read_all paging 2.0x and
 * count(*) over read_all 6.6x slower than the inlined SELECT.  The inlined
 * definition costs what the indexed SELECT costs (make bench, 12_reader.sh).
 *
 * No shared state: the kept plan is per backend.
 */
#include "ocx.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/xid8.h"

/*
 * The batch columns (1-based): the ocx.event as stored, then what the
 * worker needs of it without taking the composite apart.
 */
static const char read_log_sql[] =
	"SELECT e, e.global_position, e.txid, e.time, e.stream_id, e.stream_version, "
	"e.event_id, e.type, COALESCE(e.correlation_id, e.event_id)::pg_catalog.text, "
	"e.event_id::pg_catalog.text, e.metadata OPERATOR(pg_catalog.->>) 'traceparent', e.tenant_id "
	"FROM ocx._read_log(ocx.cursor($1, $2), $3, NULL, NULL, false) e";

static SPIPlanPtr read_log_plan = NULL;

/*
 * Read up to max_count events after the cursor (after_txid, after_pos) as
 * stored, into SPI_tuptable (columns: see read_log_sql), and return how
 * many.  The caller is connected to SPI and frees the tuple table; the
 * horizon is the one of the caller's snapshot, taken once for the read.
 */
uint64
OcxReadLog(Datum after_txid, int64 after_pos, int32 max_count)
{
	static const Oid argtypes[3] = {XID8OID, INT8OID, INT4OID};
	Datum		values[3];

	values[0] = after_txid;
	values[1] = Int64GetDatum(after_pos);
	values[2] = Int32GetDatum(max_count);
	return OcxRunKeptPlan(OcxKeptPlan(&read_log_plan, read_log_sql, 3, argtypes),
						  values, NULL, true);
}

/* Is s (len bytes) one of the n strings of list?  A NULL list holds everything. */
static bool
InList(char **list, int n, const char *s, size_t len)
{
	int			i;

	if (list == NULL)
		return true;
	for (i = 0; i < n; i++)
		if (list[i] != NULL && strlen(list[i]) == len && memcmp(list[i], s, len) == 0)
			return true;
	return false;
}

/*
 * ocx._log_selects in C: does a reader with these types and categories
 * (NULL lists: all) select an event of this type and stream?  The category
 * of a stream is the text before its first "-" (ocx.category).
 */
bool
OcxLogSelects(const char *type, const char *stream_id,
			  char **types, int ntypes, char **categories, int ncategories)
{
	return InList(types, ntypes, type, strlen(type)) &&
		InList(categories, ncategories, stream_id, strcspn(stream_id, "-"));
}
