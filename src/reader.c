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
 * function with the projection's types and categories, so only the events
 * the projection selects leave the executor (a partition's batch tells its
 * own in C); OcxReadLogStored reads the stored rows (cursor and hash, never
 * revealed or upcast) for the sealing task, through ocx._read_log_stored
 * under the same range rule (ocx._log_bounds: the horizon and the start
 * after a cursor); OcxLogSelects, the C form of ocx._log_selects, serves
 * the inline projections in the append.
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
 * worker needs of it without taking the composite apart.  The read selects
 * with _read_log's types and categories ($4, $5: the one category rule)
 * under the horizon $6, and its LIMIT ($3) is _read_log's own: the planner
 * sees it and walks the log-order index from the cursor, stopping at the
 * last event of the batch.  (A LIMIT above another filter here, such as a
 * partition's, left _read_log to be planned for every event after the
 * cursor: its generic plan sorted them all, 2.7 s a batch at 1M events.)
 */
static const char read_log_sql[] =
	"SELECT e, e.global_position, e.txid, e.time, e.stream_id, e.stream_version, "
	"e.event_id, e.type, COALESCE(e.correlation_id, e.event_id)::pg_catalog.text, "
	"e.event_id::pg_catalog.text, e.metadata OPERATOR(pg_catalog.->>) 'traceparent', e.tenant_id "
	"FROM ocx._read_log(ocx.cursor($1, $2), $3, $4, $5, false, $6) e";

/*
 * The last event below the horizon $3 after the cursor ($1, $2)
 * (ocx._log_tail), with its time: where a read that was not full moves to.
 * The horizon is a parameter, taken once in C (OcxReadLogTail), and the
 * tail is one row of a function in FROM, whose columns all come from the
 * same call.  (A first version took the horizon with ocx.log_horizon() and
 * the tail in scalar subqueries; the planner pulled them up and evaluated
 * the horizon and the tail once per output column, and with a horizon that
 * moved between two evaluations the txid of one tail came with the
 * position of another, or with none: a checkpoint before events already
 * applied, applied twice by the next batch.)
 */
static const char read_tail_sql[] =
	"SELECT ocx.txid(t.c), ocx.global_position(t.c), e.time "
	"FROM ocx._log_tail(ocx.cursor($1, $2), $3) t(c) "
	"LEFT JOIN ocx.events e ON e.global_position OPERATOR(pg_catalog.=) ocx.global_position(t.c)";

/*
 * The stored rows after the cursor ($1, $2), at most $3, below the horizon
 * ocx._read_log_stored takes once (OcxReadLogStored).
 */
static const char read_stored_sql[] =
	"SELECT s.txid, s.global_position, s.hash "
	"FROM ocx._read_log_stored(ocx.cursor($1, $2), $3, $4) s";

static SPIPlanPtr read_log_plan = NULL;
static SPIPlanPtr read_stored_plan = NULL;
static SPIPlanPtr read_tail_plan = NULL;

/*
 * Take the horizon of a read after the cursor r->after (into r->horizon),
 * once, from the active snapshot, and the last event below it after the
 * cursor (r->tail; r->have_tail false when there is none).  A read under
 * this horizon in the same snapshot (OcxReadLog) returns only events up to
 * the tail; when it was not full, every event up to the tail that it left
 * out is one its reader does not want, so the reader's position may move
 * there.  Positions only: the worker runs this as itself, the read as
 * ocx_worker.  The caller is connected to SPI.
 */
void
OcxReadLogTail(OcxLogRead *r)
{
	static const Oid argtypes[3] = {XID8OID, INT8OID, XID8OID};
	Datum		values[3];
	bool		txid_null;
	bool		pos_null;
	bool		time_null;
	Datum		t;

	r->horizon = FullTransactionIdGetDatum(FullTransactionIdFromU64(OcxLogHorizon()));
	values[0] = r->after_txid;
	values[1] = Int64GetDatum(r->after_pos);
	values[2] = r->horizon;
	if (OcxRunKeptOrderedPlan(OcxKeptPlan(&read_tail_plan, read_tail_sql, 3, argtypes),
							  values, NULL, true) != 1)
		elog(ERROR, "ocx: the tail of the log after a cursor is not one row");
	/* xid8, bigint and timestamptz are passed by value: nothing to copy out of SPI */
	r->tail_txid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &txid_null);
	r->tail_pos = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
											  &pos_null));
	t = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &time_null);
	SPI_freetuptable(SPI_tuptable);
	if (txid_null != pos_null)
		elog(ERROR, "ocx: the tail of the log after a cursor has half a cursor");
	r->have_tail = !txid_null;
	r->have_tail_time = r->have_tail && !time_null;
	r->tail_time = r->have_tail_time ? DatumGetTimestampTz(t) : 0;
}

/*
 * Read up to r->max_count events after the cursor r->after, below the
 * horizon r->horizon (OcxReadLogTail), that the reader selects (r->types,
 * r->categories: NULL for all), as stored, into SPI_tuptable (columns: see
 * read_log_sql), and return how many.  The caller is connected to SPI and
 * frees the tuple table.
 */
uint64
OcxReadLog(OcxLogRead *r)
{
	static const Oid argtypes[6] = {XID8OID, INT8OID, INT4OID, TEXTARRAYOID, TEXTARRAYOID, XID8OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = r->after_txid;
	values[1] = Int64GetDatum(r->after_pos);
	values[2] = Int32GetDatum(r->max_count);
	values[3] = r->types;
	nulls[3] = r->types_null ? 'n' : ' ';
	values[4] = r->categories;
	nulls[4] = r->categories_null ? 'n' : ' ';
	values[5] = r->horizon;
	/*
	 * Always the generic plan: the custom plans the plan cache tries first
	 * estimate the projection's filter at a guess, and when that guess puts
	 * fewer than max_count events after the cursor they read and sort all of
	 * them; the generic plan walks the log-order index and stops at the
	 * batch's last event, for any cursor.
	 */
	return OcxRunKeptOrderedPlan(OcxKeptPlanExt(&read_log_plan, read_log_sql, 6, argtypes,
												CURSOR_OPT_GENERIC_PLAN),
								 values, nulls, true);
}

/*
 * The reader over the stored rows: up to max_count events after the cursor
 * (after_txid, after_pos) in log order, below the horizon the caller took
 * (ocx.log_horizon(), a value: on Citus a call inside the read would run on
 * the workers), as stored, into SPI_tuptable as (txid,
 * global_position, hash); returns how many.  ocx._read_log_stored, under the
 * same range rule as ocx._read_log (ocx._log_bounds): what the sealing task
 * reads (integrity.c), whose seal covers the stored rows, so nothing is
 * revealed or upcast.  The caller is connected to SPI and frees the tuple
 * table.
 */
uint64
OcxReadLogStored(uint64 after_txid, int64 after_pos, int32 max_count, uint64 horizon)
{
	static const Oid argtypes[4] = {XID8OID, INT8OID, INT4OID, XID8OID};
	Datum		values[4];

	values[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(after_txid));
	values[1] = Int64GetDatum(after_pos);
	values[2] = Int32GetDatum(max_count);
	values[3] = FullTransactionIdGetDatum(FullTransactionIdFromU64(horizon));
	return OcxRunKeptOrderedPlan(OcxKeptPlan(&read_stored_plan, read_stored_sql, 4, argtypes),
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
