/*
 * bus.c
 *		NOTIFY wake-ups for new events and commands, ocx.publish, and the
 *		ocx.notify_mode setting.
 *
 * NOTIFY is a wake-up hint, never the data.  It takes a cluster-wide lock at
 * commit and its queue can fill up when a listener idles inside a
 * transaction, and then the committing transaction fails.  So appends do not
 * notify: the per-database worker calls OcxBusWorkerTick(), which reads what
 * became readable since the cursor stored in ocx.bus_state (in gap-free log
 * order: only transactions below the snapshot's xmin), sends one NOTIFY on
 * ocx_events plus one per category on ocx_<category>, and advances the
 * cursor, all in the worker's transaction.  If that transaction fails (a full
 * queue), only the worker retries; appends go on.  When the queue is more
 * than half full the tick holds back and sends one combined wake-up later.
 *
 * Any role can LISTEN on any channel (PostgreSQL has no ACL on channels), so
 * a payload carries nothing a listener could not read anyway: the cursor of
 * the last announced event and how many there are, never stream ids, event
 * types or command types.  Clients read what is new with read_all / poll
 * under their own privileges and tenancy.
 *
 * ocx.notify_mode = immediate adds a NOTIFY from the appending transaction
 * itself (a statement trigger on ocx.events) for lower latency, at the cost
 * described above; "off" turns wake-ups off entirely.
 *
 * Shared state: the one row of ocx.bus_state.  A tick first reads it without
 * a lock to see whether anything is new (the usual answer under no load is
 * no, and then the tick wrote nothing); only then does it lock the row FOR
 * UPDATE SKIP LOCKED and re-read it, so two ticks (the worker's and a
 * superuser's ocx._bus_tick()) never send the same batch twice.
 */
#include "ocx.h"
#include "ocx_bus.h"
#include "ocx_errors.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "tcop/utility.h"
#include "miscadmin.h"
#include "catalog/pg_collation.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_publish);
PG_FUNCTION_INFO_V1(ocx_notify_immediate);
PG_FUNCTION_INFO_V1(ocx_bus_tick);
PG_FUNCTION_INFO_V1(ocx_command_sent);

/* Rows one tick announces at most; more means "call me again". */
#define BUS_BATCH			1000
/* Fraction of the notify queue in use above which the tick holds back. */
#define BUS_QUEUE_LIMIT		0.5

int			ocx_notify_mode = OCX_NOTIFY_WORKER;

static const struct config_enum_entry notify_mode_options[] = {
	{"off", OCX_NOTIFY_OFF, false},
	{"worker", OCX_NOTIFY_WORKER, false},
	{"immediate", OCX_NOTIFY_IMMEDIATE, false},
	{NULL, 0, false}
};

/* Define ocx.notify_mode (called from _PG_init). */
void
OcxBusInit(void)
{
	DefineCustomEnumVariable("ocx.notify_mode",
							 gettext_noop("How ocx sends NOTIFY wake-ups for new events and commands."),
							 gettext_noop("worker: the background worker sends batched wake-ups after commit; "
										  "immediate: the appending transaction also notifies (lower latency, "
										  "but appends then take the notify lock and fail when the queue is full); "
										  "off: no wake-ups."),
							 &ocx_notify_mode,
							 OCX_NOTIFY_WORKER,
							 notify_mode_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/*
 * Queue a NOTIFY with ocx's checks in front of PostgreSQL's, so callers get
 * an ocx SQLSTATE and never "payload string too long".
 */
static void
OcxNotify(const char *channel, const char *payload)
{
	size_t		len = strlen(payload);

	if (channel[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CHANNEL),
				 errmsg("channel name must not be empty")));
	if (strlen(channel) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CHANNEL),
				 errmsg("channel name is too long"),
				 errdetail("The channel name has %zu bytes; the limit is %d.",
						   strlen(channel), NAMEDATALEN - 1)));
	if (len > OCX_MAX_PUBLISH_PAYLOAD)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PAYLOAD_TOO_LARGE),
				 errmsg("payload is too large for NOTIFY"),
				 errdetail("The payload has %zu bytes as JSON text; the limit is %d bytes.",
						   len, OCX_MAX_PUBLISH_PAYLOAD),
				 errhint("Store the data in a table or append it as an event, and publish its key.")));
	Async_Notify(channel, payload);
}

/*
 * ocx.publish(channel text, payload jsonb): an ephemeral message, sent at
 * commit like NOTIFY.  Channels starting with ocx_ belong to ocx, so nobody
 * can fake a wake-up.
 */
Datum
ocx_publish(PG_FUNCTION_ARGS)
{
	char	   *channel;
	Jsonb	   *payload;

	/* NOTIFY's own refusal, rather than the internal error at commit */
	PreventCommandDuringRecovery("ocx.publish()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CHANNEL),
				 errmsg("channel must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_PAYLOAD),
				 errmsg("payload must not be null"),
				 errhint("Publish '{}' for a message without content.")));
	channel = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strncmp(channel, OCX_CHANNEL_PREFIX, strlen(OCX_CHANNEL_PREFIX)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CHANNEL),
				 errmsg("channel \"%s\" is reserved", channel),
				 errdetail("Channels whose names start with \"%s\" carry ocx's own wake-ups.",
						   OCX_CHANNEL_PREFIX),
				 errhint("Choose a channel name without that prefix.")));
	payload = PG_GETARG_JSONB_P(1);
	OcxNotify(channel, JsonbToCString(NULL, &payload->root, VARSIZE(payload)));
	PG_RETURN_VOID();
}

/* The text form of a cursor, "txid/position", as ocx.cursor reads it. */
static void
AppendCursor(StringInfo buf, uint64 txid, int64 position)
{
	appendStringInfo(buf, "\"" UINT64_FORMAT "/" INT64_FORMAT "\"", txid, position);
}

/*
 * The category channel of a stream, or NULL when the category is too long
 * for a channel name (those events are announced on ocx_events only).
 */
static char *
CategoryChannel(const char *stream_id)
{
	const char *dash = strchr(stream_id, '-');
	size_t		len = dash ? (size_t) (dash - stream_id) : strlen(stream_id);

	if (len == 0 || len + strlen(OCX_CHANNEL_PREFIX) >= NAMEDATALEN)
		return NULL;
	return psprintf("%s%.*s", OCX_CHANNEL_PREFIX, (int) len, stream_id);
}

/*
 * Trigger (AFTER INSERT FOR EACH STATEMENT on ocx.events, only queued when
 * ocx.notify_mode = immediate): notify from the appending transaction about
 * the last event it wrote.
 */
Datum
ocx_notify_immediate(PG_FUNCTION_ARGS)
{
	Datum		arg;
	StringInfoData buf;
	char	   *stream;
	char	   *channel;
	int64		position;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._notify_immediate() must be called as a trigger")));
	if (ocx_notify_mode != OCX_NOTIFY_IMMEDIATE)
		return PointerGetDatum(NULL);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	arg = FullTransactionIdGetDatum(FullTransactionIdFromU64(OcxLogTxid()));
	if (SPI_execute_with_args("SELECT e.global_position, e.stream_id FROM ocx.events e "
							  "WHERE e.txid OPERATOR(pg_catalog.=) $1 "
							  "ORDER BY e.txid DESC, e.global_position DESC LIMIT 1",
							  1, (Oid[]) {XID8OID}, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "ocx: could not read the appended event");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		position = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		stream = SPI_getvalue(tup, desc, 2);

		/* the cursor only: stream ids and types are not for every listener */
		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"cursor\": ");
		AppendCursor(&buf, OcxLogTxid(), position);
		appendStringInfo(&buf, ", \"global_position\": " INT64_FORMAT ", \"immediate\": true}",
						 position);
		OcxNotify(OCX_EVENTS_CHANNEL, buf.data);
		channel = CategoryChannel(stream);
		if (channel)
			OcxNotify(channel, buf.data);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * ocx._command_sent(): called by send_command and friends.  Wakes the worker
 * at commit so an in-server handler runs promptly, and in immediate mode
 * notifies command claimers from this transaction.
 */
Datum
ocx_command_sent(PG_FUNCTION_ARGS)
{
	OcxWakeWorkerAtCommit();
	if (ocx_notify_mode == OCX_NOTIFY_IMMEDIATE)
		OcxNotify(OCX_COMMANDS_CHANNEL, "{\"immediate\": true}");
	PG_RETURN_VOID();
}

/* Per-category tally of one batch. */
typedef struct CategoryTally
{
	char	   *channel;
	int			count;
	uint64		txid;
	int64		position;
} CategoryTally;

typedef enum BusPlan
{
	BUS_PLAN_PEEK,
	BUS_PLAN_STATE,
	BUS_PLAN_EVENTS,
	BUS_PLAN_COMMANDS,
	BUS_PLAN_SAVE,
	BUS_NUM_PLANS
} BusPlan;

static const char *const bus_plan_sql[BUS_NUM_PLANS] = {
	/*
	 * Is the first event (command) after the cursor, in log order, readable?
	 * Later ones have larger txids, so if it is not, none is.  Written as
	 * ORDER BY ... LIMIT 1 (for events: the one reader, ocx._read_log, with
	 * max_count 1) so that it is always one step of the log-order index: an
	 * EXISTS would let the planner pick a sequential scan that reads the
	 * whole log when nothing is new.
	 */
	[BUS_PLAN_PEEK] =
	"SELECT pg_catalog.pg_notification_queue_usage(), "
	"COALESCE((SELECT true FROM ocx._read_log(ocx.cursor(b.events_txid, b.events_position), 1, "
	"NULL, NULL, false) e), false), "
	"COALESCE((SELECT c.txid FROM ocx.commands c "
	"WHERE (c.txid, c.seq) OPERATOR(pg_catalog.>) (b.commands_txid, b.commands_seq) "
	"ORDER BY c.txid, c.seq LIMIT 1) "
	"OPERATOR(pg_catalog.<) ocx.log_horizon(), false) "
	"FROM ocx.bus_state b",
	[BUS_PLAN_STATE] =
	"SELECT events_txid, events_position, commands_txid, commands_seq "
	"FROM ocx.bus_state FOR UPDATE SKIP LOCKED",
	[BUS_PLAN_EVENTS] =
	"SELECT e.txid, e.global_position, e.stream_id "
	"FROM ocx._read_log(ocx.cursor($1, $2), 1000, NULL, NULL, false) e "
	"ORDER BY e.txid, e.global_position",
	[BUS_PLAN_COMMANDS] =
	"SELECT c.txid, c.seq FROM ocx.commands c "
	"WHERE c.txid OPERATOR(pg_catalog.<) ocx.log_horizon() "
	"AND (c.txid, c.seq) OPERATOR(pg_catalog.>) ($1, $2) "
	"ORDER BY c.txid, c.seq LIMIT 1000",
	[BUS_PLAN_SAVE] =
	"UPDATE ocx.bus_state SET events_txid = $1, events_position = $2, "
	"commands_txid = $3, commands_seq = $4, notified_at = pg_catalog.now()",
};

static const int bus_plan_nargs[BUS_NUM_PLANS] = {0, 0, 2, 2, 4};
static const Oid bus_plan_args[BUS_NUM_PLANS][4] = {
	{0}, {0}, {XID8OID, INT8OID}, {XID8OID, INT8OID},
	{XID8OID, INT8OID, XID8OID, INT8OID}
};
static SPIPlanPtr bus_plans[BUS_NUM_PLANS];

/*
 * Run a kept plan of the bus tick, preparing it on first use; in log (queue)
 * order whatever the tables' sizes when it was planned (spiutil.c).
 */
static uint64
RunBusPlan(BusPlan which, Datum *values)
{
	return OcxRunKeptOrderedPlan(OcxKeptPlan(&bus_plans[which], bus_plan_sql[which],
											 bus_plan_nargs[which], bus_plan_args[which]),
								 values, NULL, false);
}

/* An xid8 column of an SPI result row, as a plain 64-bit number. */
static uint64
GetXid8(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;

	return U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, col, &isnull)));
}

/* A bigint column of an SPI result row. */
static int64
GetInt64(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;

	return DatumGetInt64(SPI_getbinval(tup, desc, col, &isnull));
}

/*
 * Announce the events that became readable since the stored cursor: one
 * NOTIFY on ocx_events and one per category, each with the last cursor and
 * a count only.  Returns the number announced and advances *txid / *position.
 */
static int
NotifyEvents(uint64 *txid, int64 *position)
{
	Datum		args[2];
	uint64		n,
				i;
	CategoryTally *cats;
	int			ncats = 0;
	StringInfoData buf;

	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(*txid));
	args[1] = Int64GetDatum(*position);
	n = RunBusPlan(BUS_PLAN_EVENTS, args);
	if (n == 0)
		return 0;

	cats = palloc(sizeof(CategoryTally) * n);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *stream = SPI_getvalue(tup, desc, 3);
		char	   *channel = CategoryChannel(stream);
		int			c;

		*txid = GetXid8(tup, desc, 1);
		*position = GetInt64(tup, desc, 2);
		if (channel == NULL)
			continue;
		for (c = 0; c < ncats; c++)
			if (strcmp(cats[c].channel, channel) == 0)
				break;
		if (c == ncats)
		{
			cats[c].channel = channel;
			cats[c].count = 0;
			ncats++;
		}
		cats[c].count++;
		cats[c].txid = *txid;
		cats[c].position = *position;
	}

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"cursor\": ");
	AppendCursor(&buf, *txid, *position);
	appendStringInfo(&buf, ", \"global_position\": " INT64_FORMAT ", \"count\": %d}",
					 *position, (int) n);
	OcxNotify(OCX_EVENTS_CHANNEL, buf.data);

	for (i = 0; i < (uint64) ncats; i++)
	{
		resetStringInfo(&buf);
		appendStringInfoString(&buf, "{\"cursor\": ");
		AppendCursor(&buf, cats[i].txid, cats[i].position);
		appendStringInfo(&buf, ", \"global_position\": " INT64_FORMAT ", \"count\": %d}",
						 cats[i].position, cats[i].count);
		OcxNotify(cats[i].channel, buf.data);
	}
	return (int) n;
}

/*
 * Announce commands sent since the stored cursor on ocx_commands, with a
 * count only (command types are not for every listener).
 */
static int
NotifyCommands(uint64 *txid, int64 *seq)
{
	Datum		args[2];
	uint64		n,
				i;
	StringInfoData buf;

	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(*txid));
	args[1] = Int64GetDatum(*seq);
	n = RunBusPlan(BUS_PLAN_COMMANDS, args);
	if (n == 0)
		return 0;

	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		*txid = GetXid8(tup, desc, 1);
		*seq = GetInt64(tup, desc, 2);
	}
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"count\": %d}", (int) n);
	OcxNotify(OCX_COMMANDS_CHANNEL, buf.data);
	return (int) n;
}

/*
 * The worker's bus task: runs inside the worker's transaction, sends the
 * wake-ups for what became readable, and returns true when a batch was full
 * (call again soon).
 */
bool
OcxBusWorkerTick(void)
{
	MemoryContext ctx,
				old;
	uint64		etxid,
				ctxid;
	int64		epos,
				cseq;
	int			nev = 0,
				ncmd = 0;
	bool		isnull;
	bool		new_events,
				new_commands;
	HeapTuple	tup;
	TupleDesc	desc;

	if (ocx_notify_mode == OCX_NOTIFY_OFF)
		return false;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "ocx bus tick", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(ctx);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");

	/*
	 * A look without a lock first: most calls find nothing new, and then the
	 * tick costs one query and neither a transaction id nor WAL.
	 */
	if (RunBusPlan(BUS_PLAN_PEEK, NULL) == 0)
		goto done;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	new_events = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	new_commands = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	if (!new_events && !new_commands)
		goto done;

	/* a listener is stuck: hold back rather than fill the queue */
	if (DatumGetFloat8(SPI_getbinval(tup, desc, 1, &isnull)) > BUS_QUEUE_LIMIT)
	{
		static TimestampTz last_logged = 0;
		TimestampTz now = GetCurrentTimestamp();

		if (TimestampDifferenceExceeds(last_logged, now, 60 * 1000))
		{
			ereport(LOG,
					(errmsg("ocx: NOTIFY queue is more than half full, holding back wake-ups"),
					 errhint("A session that LISTENs is idle inside a transaction; end it.")));
			last_logged = now;
		}
		goto done;
	}

	/* another tick holds the row: it sends these wake-ups */
	if (RunBusPlan(BUS_PLAN_STATE, NULL) == 0)
		goto done;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	etxid = GetXid8(tup, desc, 1);
	epos = GetInt64(tup, desc, 2);
	ctxid = GetXid8(tup, desc, 3);
	cseq = GetInt64(tup, desc, 4);

	if (new_events)
		nev = NotifyEvents(&etxid, &epos);
	if (new_commands)
		ncmd = NotifyCommands(&ctxid, &cseq);
	if (nev > 0 || ncmd > 0)
	{
		Datum		args[4];

		args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(etxid));
		args[1] = Int64GetDatum(epos);
		args[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(ctxid));
		args[3] = Int64GetDatum(cseq);
		RunBusPlan(BUS_PLAN_SAVE, args);

		/*
		 * The cursors are hints: losing the last update in a crash only
		 * announces a batch twice.  So the worker's commit (its transaction
		 * holds nothing else) need not wait for its WAL flush, which keeps
		 * the bus off the fsync path.  A caller's own transaction is left
		 * alone.
		 */
		if (IsBackgroundWorker)
			(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
	}

done:
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return nev == BUS_BATCH || ncmd == BUS_BATCH;
}

/* ocx._bus_tick(): the worker's bus task, for tests and worker-less setups. */
Datum
ocx_bus_tick(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(OcxBusWorkerTick());
}

/*
 * ocx.stream_partition(stream_id, partitions): the partition (0 ..
 * partitions - 1) a stream's events belong to.  The same hash as
 * PostgreSQL's hashtext, so partitions computed before this was written in
 * C stay where they were.
 */
PG_FUNCTION_INFO_V1(ocx_stream_partition);

#define OCX_MAX_PARTITIONS 1024	/* as ocx.define_subscription allows */

Datum
ocx_stream_partition(PG_FUNCTION_ARGS)
{
	text	   *sid = PG_GETARG_TEXT_PP(0);
	int32		partitions = PG_GETARG_INT32(1);
	int32		h;
	Oid			coll;

	if (partitions < 1 || partitions > OCX_MAX_PARTITIONS)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("partitions must be between 1 and %d", OCX_MAX_PARTITIONS),
				 errdetail("Got %d.", partitions),
				 errhint("Pass the number of partitions of the subscription.")));
	coll = OidIsValid(PG_GET_COLLATION()) ? PG_GET_COLLATION() : DEFAULT_COLLATION_OID;

	h = DatumGetInt32(DirectFunctionCall1Coll(hashtext, coll, PointerGetDatum(sid)));
	PG_RETURN_INT32((h & PG_INT32_MAX) % partitions);
}
