/*
 * reads.c
 *		The reads of issue 13 that need C: read_stream's direction argument,
 *		the soft-deleted versions a stream read skips (ocx._hidden_through),
 *		and read_all / read_category from a time (after_time).
 *
 * after_time: event time is set at append (or given by the caller), and the
 * log order is the order of writer transactions, so times are not monotonic
 * in log order: a transaction that took its xid early and appends late puts
 * a late time before earlier times, and a caller may write any time.  A read
 * from time T must start at a cursor before every event whose time is >= T,
 * without scanning the log to find it.
 *
 * The time map (ocx.time_map, 21_reads.sql) answers that.  For each minute
 * B that some event's time falls in, its row holds the lowest cursor (in log
 * order) of the events whose time is >= B: a suffix minimum, so the values
 * never decrease as B grows.  ocx.time_map_state holds the cursor up to which
 * the map is complete: every event at or below it is in the map.  Only
 * events below the log horizon are mapped (their transactions have ended, so
 * no event can join them), in log order, by the database worker
 * (OcxTimeMapTick, once per pass with the bus unit).
 *
 * The start of a read from T (ocx._read_start) is the lower of
 *	- the cursor just before the map's value at the first row with bucket >=
 *	  the minute of T (every mapped event with time >= T is at or after it);
 *	- the state cursor (every event after it is unmapped, and read anyway).
 * So no event with time >= T is ever skipped, whether the worker is behind,
 * stopped or not loaded at all (then the read starts at the state cursor and
 * the filter time >= T does all the work).  The price of the minute buckets
 * is at most the events of one minute read and filtered out.
 *
 * Shared state: the two tables only; the worker's tick locks the state row
 * (FOR UPDATE SKIP LOCKED), so two ticks never merge the same batch.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_security.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_direction_arg);
PG_FUNCTION_INFO_V1(ocx_time_bucket);
PG_FUNCTION_INFO_V1(ocx_read_start);
PG_FUNCTION_INFO_V1(ocx_hidden_through);

/* the width of a time map bucket: one minute */
#define OCX_TIME_BUCKET_USECS	INT64CONST(60000000)
/* the worker maps at most this often while it keeps up */
#define OCX_TIME_MAP_TICK_MS	1000

/*
 * ocx._direction_arg(text) -> boolean: true for 'backward', false for
 * 'forward' (and NULL), OX010 for anything else.  IMMUTABLE, so a constant
 * direction folds at plan time and read_stream keeps one branch only.
 */
Datum
ocx_direction_arg(PG_FUNCTION_ARGS)
{
	char	   *d;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	d = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strcmp(d, "forward") == 0)
		PG_RETURN_BOOL(false);
	if (strcmp(d, "backward") == 0)
		PG_RETURN_BOOL(true);
	ereport(ERROR,
			(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
			 errmsg("invalid read direction \"%s\"", d),
			 errdetail("A direction is 'forward' or 'backward'.")));
	PG_RETURN_BOOL(false);		/* keep the compiler quiet */
}

/*
 * ocx._hidden_through(stream_id text) -> bigint: the last soft-deleted
 * version of the stream (ocx.delete_stream), 0 when none or no such stream.
 * read_stream and last_event return only the versions after it; the call
 * sits in their index condition, so it runs once per read.
 *
 * One probe of ocx.streams' primary key with the read's snapshot.  A SQL
 * function with a subquery is never inlined and runs through the SQL
 * function executor, which parses and plans it on every call (half the time
 * of last_event); a scalar subquery in the reads' bodies costs an InitPlan,
 * an executor node set up and torn down on every read (a tenth of a 10-event
 * backward read): docs/performance.md.  The probe applies the rule of the
 * streams_tenant policy itself when row-level security applies to the caller
 * (a stream of another tenant is no stream: 0), so that a reader, who may
 * call this function, learns nothing of another tenant's streams.
 */
/* Whether a stream row is the session's tenant's (the streams_tenant rule). */
static bool
TenantOf(HeapTuple tup, Relation rel, AttrNumber tenant_att)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, tenant_att, RelationGetDescr(rel), &isnull);

	return OcxTenantIsSessions(d, isnull);
}

Datum
ocx_hidden_through(PG_FUNCTION_ARGS)
{
	text	   *sid;
	Oid			nsp = get_namespace_oid(OCX_SCHEMA, false);
	Oid			relid = get_relname_relid("streams", nsp);
	AttrNumber	sid_att,
				hidden_att,
				tenant_att;
	bool		rls;
	Relation	rel;
	Oid			pkey;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	int64		hidden = 0;

	/* no stream: nothing hidden (the read refuses a NULL stream id itself) */
	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(0);
	sid = PG_GETARG_TEXT_PP(0);
	if (!OidIsValid(relid))
		elog(ERROR, "ocx: table ocx.streams is missing");
	sid_att = get_attnum(relid, "stream_id");
	hidden_att = get_attnum(relid, "hidden_through");
	tenant_att = get_attnum(relid, "tenant_id");
	if (sid_att == InvalidAttrNumber || hidden_att == InvalidAttrNumber ||
		tenant_att == InvalidAttrNumber)
		elog(ERROR, "ocx: ocx.streams lacks stream_id, hidden_through or tenant_id");
	rls = check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED;
	rel = table_open(relid, AccessShareLock);
	pkey = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(pkey))
		elog(ERROR, "ocx: ocx.streams has no primary key");
	/* the key's collation is the column's, as the index is ordered by it */
	ScanKeyEntryInitialize(&key, 0, sid_att, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(RelationGetDescr(rel), sid_att - 1)->attcollation,
						   F_TEXTEQ, PointerGetDatum(sid));
	scan = systable_beginscan(rel, pkey, true, GetActiveSnapshot(), 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup) && (!rls || TenantOf(tup, rel, tenant_att)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, hidden_att, RelationGetDescr(rel), &isnull);

		if (!isnull)
			hidden = DatumGetInt64(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	PG_RETURN_INT64(hidden);
}

/* The start of t's minute (counted from 2000-01-01 UTC); infinities stay. */
static TimestampTz
TimeBucket(TimestampTz t)
{
	int64		r;

	if (TIMESTAMP_NOT_FINITE(t))
		return t;
	r = t % OCX_TIME_BUCKET_USECS;
	if (r < 0)
		r += OCX_TIME_BUCKET_USECS;
	return t - r;
}

/* ocx._time_bucket(timestamptz) -> timestamptz: the time map's bucket of t. */
Datum
ocx_time_bucket(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(TimeBucket(PG_GETARG_TIMESTAMPTZ(0)));
}

static SPIPlanPtr start_plan = NULL;

/*
 * The cursor a read from time t may start after: every event whose time is
 * >= t is after it in log order (the argument at the top of this file).
 */
static void
TimeStart(TimestampTz t, uint64 *txid, int64 *position)
{
	static const Oid argtypes[1] = {TIMESTAMPTZOID};
	Datum		arg = TimestampTzGetDatum(TimeBucket(t));
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Oid			save_user;
	int			save_sec;
	volatile bool found = false;

	*txid = 0;
	*position = 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");

	/*
	 * As ocx_owner: the map has no tenant column, so readers may not select
	 * it (a tenant would see when others wrote); what it gives back is only
	 * where a read starts, and the read itself applies the caller's policies.
	 */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(OcxOwnerRole(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		found = OcxRunKeptPlan(OcxKeptPlan(&start_plan,
								   "SELECT s.txid, s.global_position, m.txid, m.global_position "
								   "FROM ocx.time_map_state s LEFT JOIN LATERAL "
								   "(SELECT m.txid, m.global_position FROM ocx.time_map m "
								   "WHERE m.bucket OPERATOR(pg_catalog.>=) $1 "
								   "ORDER BY m.bucket LIMIT 1) m ON true",
								   1, argtypes),
					   &arg, NULL, true) > 0;
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	if (found)
	{
		uint64		stxid,
					mtxid;
		int64		spos,
					mpos;

		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		stxid = U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, 1, &isnull)));
		spos = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		*txid = stxid;
		*position = spos;
		mtxid = U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, 3, &isnull)));
		if (!isnull)
		{
			/* just before the map's cursor: that event is read */
			mpos = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull)) - 1;
			if (mtxid < stxid || (mtxid == stxid && mpos < spos))
			{
				*txid = mtxid;
				*position = Max(mpos, 0);
			}
		}
	}
	SPI_finish();
}

/*
 * ocx._read_start(after ocx.cursor, after_time timestamptz) -> ocx.cursor:
 * where read_all and read_category start, the later of after and the time
 * map's start for after_time (which skips no event whose time is >=
 * after_time).  NULL after_time: after itself, with no query.
 */
Datum
ocx_read_start(PG_FUNCTION_ARGS)
{
	TimestampTz t;
	uint64		txid;
	int64		position;

	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	t = PG_GETARG_TIMESTAMPTZ(1);
	if (TIMESTAMP_IS_NOBEGIN(t))
		txid = 0, position = 0;
	else
		TimeStart(t, &txid, &position);
	if (!PG_ARGISNULL(0))
	{
		uint64		atxid;
		int64		apos;

		OcxCursorParts(PG_GETARG_DATUM(0), &atxid, &apos);
		if (atxid > txid || (atxid == txid && apos > position))
			PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	if (txid == 0 && position == 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(OcxCursorGetDatum(txid, position));
}

typedef struct TickRun
{
	bool		more;
} TickRun;

static void
TimeMapTickOnce(void *arg)
{
	TickRun    *run = (TickRun *) arg;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	if (SPI_execute("SELECT ocx._time_map_tick()", false, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		run->more = !isnull && DatumGetBool(d);
	}
	SPI_finish();
}

/*
 * The database worker's share of the time map: merge what passed the
 * horizon since the last tick (ocx._time_map_tick, one batch), at most once
 * every OCX_TIME_MAP_TICK_MS while it keeps up.  A tick that writes holds a
 * transaction id, and with it every reader's log horizon, for its few
 * statements; a second's delay costs a read from a time only the unmapped
 * tail, which it reads and filters.  Runs in a
 * subtransaction of the caller's (the bus unit's) transaction, so that its
 * failure is logged and costs the bus nothing; a database whose ocx is older
 * than the library (no ocx._time_map_tick yet) is left alone.  Returns
 * whether more is waiting.
 */
bool
OcxTimeMapTick(void)
{
	static TimestampTz last_tick = 0;
	TimestampTz now = GetCurrentTimestamp();
	TickRun		run = {false};
	ErrorData  *edata;
	static const Oid argtypes[1] = {INT4OID};

	if (!OidIsValid(LookupFuncName(list_make2(makeString("ocx"), makeString("_time_map_tick")),
								   1, argtypes, true)))
		return false;
	/* at most once a second unless a full batch left more (see above) */
	if (!TimestampDifferenceExceeds(last_tick, now, OCX_TIME_MAP_TICK_MS))
		return false;
	last_tick = now;
	edata = OcxInSubtransaction(TimeMapTickOnce, &run);
	if (run.more)
		last_tick = 0;
	if (edata != NULL)
	{
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("ocx worker: time map failed: %s", edata->message)));
		FreeErrorData(edata);
		return false;
	}
	return run.more;
}
