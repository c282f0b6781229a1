/*
 * projection.c
 *		Projections: handlers that keep read models up to date.
 *
 * Async projections are applied by the database worker (worker.c), one
 * transaction per batch: the batch is read by the one reader (reader.c,
 * ocx._read_log) after the projection's (partition's) checkpoint, so in
 * gap-free log order (txid, global_position), with the projection's types
 * and categories, each event of the batch's partition (all, unpartitioned)
 * is passed to the handler, and the
 * new checkpoint is written in the same transaction as the handler's
 * writes.  Whatever happens, an event's effect is committed exactly once.
 * A batch that was not full moves the checkpoint on to the last event below
 * the read's horizon (BatchEnd), past the events the projection skips.
 *
 * The batch is read in its stored form and each event is upcast just
 * before its handler runs, in the same subtransaction, so an upcaster that
 * fails on an event fails that event only.
 *
 * The batch first runs in one subtransaction (cheap).  If any event fails,
 * that subtransaction is rolled back and the batch is run again one event
 * per subtransaction, so the failing event is isolated: it is retried with
 * exponential backoff per the projection's retry policy (OcxRetryDelay,
 * retry.c), then parked in ocx.dead_letters (the projection goes on) or the
 * projection is stopped.  Handlers run as the role that defined the
 * projection.
 *
 * With "on_failure": "park_stream" the dead letter holds its stream: the
 * later events of that stream are not applied but recorded in
 * ocx.dead_letters as held (the checkpoint moves past them, other streams go
 * on), in this batch and every later one (Q_HELD_STREAMS), until
 * ocx.retry_dead_letter or ocx.skip_dead_letter resolves the dead letter and
 * applies the held events in order (sql/parts/40_projections.sql).  Both take
 * the projection's row lock, as a batch does, so a batch never holds back an
 * event while they release its stream.
 *
 * Inline projections run in the appending transaction (AfterAppend, the
 * ocx_after_append_hook that OcxProjectionInit sets): an error in their
 * handler fails the append.  A new or rebuilt inline
 * projection first catches up in the worker (state "rebuilding"); the worker
 * switches it to "running" while holding a SHARE lock on ocx.streams, which
 * no append can hold concurrently, and only when no event is left beyond its
 * checkpoint, so from then on every append applies it and none is missed.
 *
 * A blue/green rebuild replays the log into shadow copies of the
 * projection's declared tables as a unit of work of its own (the shadow
 * replay, OcxProjectionShadowBatch, with its own checkpoint), beside the live
 * projection's batches, and swaps the copies in with the checkpoint in one
 * transaction once caught up (ocx._projection_swap; docs/projections.md).
 *
 * Backends cache the running inline projections; a statement trigger on
 * ocx.projections sends a relcache invalidation when what they cache
 * changes.  No shared memory here.
 */
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_errors.h"
#include "ocx_retry.h"
#include "ocx_security.h"
#include "ocx_worker.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_require_workers);
PG_FUNCTION_INFO_V1(ocx_projections_changed);

typedef enum ProjPlan
{
	Q_LIST,
	Q_PROJ,
	Q_RECHECK,
	Q_RECHECK_PART,
	Q_CKPT_PART,
	Q_PART_BEHIND,
	Q_CKPT,
	Q_STATE,
	Q_DEAD,
	Q_HELD_STREAMS,
	Q_BEYOND,
	Q_FAILED,
	Q_ERROR,
	Q_INLINE,
	Q_STREAM_EVENTS,
	Q_SHADOW,
	Q_SHADOW_CKPT,
	Q_SHADOW_CKPT_PART,
	Q_LIVE_WRITES,
	Q_SWAP,
	Q_SHADOW_FAILED,
	Q_SHADOW_OK,
	Q_SHADOW_ABANDON,
	NUM_PROJ_PLANS
} ProjPlan;

typedef struct ProjPlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[12];
} ProjPlanDef;

static const ProjPlanDef proj_plan_defs[NUM_PROJ_PLANS] = {
	/* each projection, then the shadow replay of its blue/green rebuild */
	[Q_LIST] = {
		"SELECT n, parts FROM ("
		"SELECT name AS base, 0 AS k, name AS n, partitions AS parts FROM ocx.projections "
		"WHERE state OPERATOR(pg_catalog.=) ANY ('{running,rebuilding}'::pg_catalog.text[]) "
		"AND (mode OPERATOR(pg_catalog.=) 'async' OR state OPERATOR(pg_catalog.=) 'rebuilding') "
		"UNION ALL SELECT name, 1, '" OCX_SHADOW_PREFIX "' OPERATOR(pg_catalog.||) name, partitions FROM ocx.projections "
		"WHERE shadow_schema IS NOT NULL AND state OPERATOR(pg_catalog.=) 'running' "
		"AND mode OPERATOR(pg_catalog.=) 'async') l "
		"ORDER BY base, k",
		0, {0}
	},
	/* $2: the partition, or -1; a partition's own checkpoint and retry state */
	[Q_PROJ] = {
		"SELECT p.handler::pg_catalog.regprocedure::pg_catalog.oid, p.types, p.categories, p.mode, p.state, "
		"p.owner::pg_catalog.text, "
		"CASE WHEN $2 OPERATOR(pg_catalog.>=) 0 THEN pp.checkpoint_txid ELSE p.checkpoint_txid END, "
		"CASE WHEN $2 OPERATOR(pg_catalog.>=) 0 THEN pp.checkpoint_position ELSE p.checkpoint_position END, "
		"CASE WHEN $2 OPERATOR(pg_catalog.>=) 0 THEN pp.failing_position ELSE p.failing_position END, "
		"CASE WHEN $2 OPERATOR(pg_catalog.>=) 0 THEN pp.failing_attempts ELSE p.failing_attempts END, "
		"CASE WHEN $2 OPERATOR(pg_catalog.>=) 0 THEN pp.retry_at ELSE p.retry_at END, "
		"(p.retry OPERATOR(pg_catalog.->>) 'max_attempts')::pg_catalog.int4, "
		"(p.retry OPERATOR(pg_catalog.->>) 'base_delay')::pg_catalog.interval, "
		"(p.retry OPERATOR(pg_catalog.->>) 'max_delay')::pg_catalog.interval, "
		"p.retry OPERATOR(pg_catalog.->>) 'on_exhausted', "
		"p.partitions, pp.partition IS NOT NULL, "
		"p.retry OPERATOR(pg_catalog.->>) 'on_failure', p.updated_at "
		"FROM ocx.projections p LEFT JOIN ocx.projection_partitions pp "
		"ON pp.projection OPERATOR(pg_catalog.=) p.name AND pp.partition OPERATOR(pg_catalog.=) $2 "
		"WHERE p.name OPERATOR(pg_catalog.=) $1",
		2, {TEXTOID, INT4OID}
	},
	/*
	 * Before the checkpoint is written: the row is as the batch read it
	 * (no rebuild, pause or drop meanwhile) and no administrator holds it.
	 */
	[Q_RECHECK] = {
		"SELECT 1 FROM ocx.projections WHERE name OPERATOR(pg_catalog.=) $1 "
		"AND checkpoint_txid OPERATOR(pg_catalog.=) $2 "
		"AND checkpoint_position OPERATOR(pg_catalog.=) $3 "
		"AND state OPERATOR(pg_catalog.=) $4 AND partitions OPERATOR(pg_catalog.=) 1 "
		"AND updated_at OPERATOR(pg_catalog.=) $7 "
		"FOR NO KEY UPDATE SKIP LOCKED",
		7, {TEXTOID, XID8OID, INT8OID, TEXTOID, INT4OID, INT4OID, TIMESTAMPTZOID}
	},
	/* the same for a partition: its own row is locked, not the projection's */
	[Q_RECHECK_PART] = {
		"SELECT 1 FROM ocx.projection_partitions pp JOIN ocx.projections p "
		"ON p.name OPERATOR(pg_catalog.=) pp.projection "
		"WHERE pp.projection OPERATOR(pg_catalog.=) $1 AND pp.partition OPERATOR(pg_catalog.=) $5 "
		"AND pp.checkpoint_txid OPERATOR(pg_catalog.=) $2 "
		"AND pp.checkpoint_position OPERATOR(pg_catalog.=) $3 "
		"AND p.state OPERATOR(pg_catalog.=) $4 AND p.partitions OPERATOR(pg_catalog.=) $6 "
		"AND p.updated_at OPERATOR(pg_catalog.=) $7 "
		"FOR NO KEY UPDATE OF pp SKIP LOCKED FOR KEY SHARE OF p SKIP LOCKED",
		7, {TEXTOID, XID8OID, INT8OID, TEXTOID, INT4OID, INT4OID, TIMESTAMPTZOID}
	},
	[Q_CKPT_PART] = {
		"UPDATE ocx.projection_partitions SET checkpoint_txid = $2, checkpoint_position = $3, "
		"checkpoint_time = COALESCE($4, checkpoint_time), "
		"events_applied = events_applied OPERATOR(pg_catalog.+) $5, "
		"failing_position = $6, failing_attempts = $7, retry_at = $8, "
		"rebuild_done = rebuild_done OPERATOR(pg_catalog.+) $10, updated_at = pg_catalog.now() "
		"WHERE projection OPERATOR(pg_catalog.=) $1 AND partition OPERATOR(pg_catalog.=) $11",
		11, {TEXTOID, XID8OID, INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID, INT4OID,
		TIMESTAMPTZOID, TEXTOID, INT8OID, INT4OID}
	},
	/* a partition that caught up while another is still behind it */
	[Q_PART_BEHIND] = {
		"SELECT EXISTS (SELECT 1 FROM ocx.projection_partitions "
		"WHERE projection OPERATOR(pg_catalog.=) $1 AND partition OPERATOR(pg_catalog.<>) $2 "
		"AND (checkpoint_txid, checkpoint_position) OPERATOR(pg_catalog.<) ($3, $4))",
		4, {TEXTOID, INT4OID, XID8OID, INT8OID}
	},
	[Q_CKPT] = {
		"UPDATE ocx.projections SET checkpoint_txid = $2, checkpoint_position = $3, "
		"checkpoint_time = COALESCE($4, checkpoint_time), "
		"events_applied = events_applied OPERATOR(pg_catalog.+) $5, "
		"failing_position = $6, failing_attempts = $7, retry_at = $8, "
		"last_error = COALESCE($9, last_error), "
		"last_error_at = CASE WHEN $9 IS NULL THEN last_error_at ELSE pg_catalog.now() END, "
		"rebuild_done = rebuild_done OPERATOR(pg_catalog.+) $10, updated_at = pg_catalog.now() "
		"WHERE name OPERATOR(pg_catalog.=) $1",
		10, {TEXTOID, XID8OID, INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID, INT4OID,
		TIMESTAMPTZOID, TEXTOID, INT8OID}
	},
	[Q_STATE] = {
		"UPDATE ocx.projections SET state = $2, "
		"rebuild_finished_at = CASE WHEN state OPERATOR(pg_catalog.=) 'rebuilding' "
		"AND $2 OPERATOR(pg_catalog.=) 'running' THEN pg_catalog.now() ELSE rebuild_finished_at END, "
		"updated_at = pg_catalog.now() WHERE name OPERATOR(pg_catalog.=) $1",
		2, {TEXTOID, TEXTOID}
	},
	/* a dead letter (state parked) or an event held back behind one (held) */
	[Q_DEAD] = {
		"INSERT INTO ocx.dead_letters (projection, global_position, txid, stream_id, "
		"stream_version, event_id, type, attempts, error, sqlstate, state, holds_stream) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		12, {TEXTOID, INT8OID, XID8OID, TEXTOID, INT8OID, UUIDOID, TEXTOID, INT4OID,
		TEXTOID, TEXTOID, TEXTOID, BOOLOID}
	},
	/*
	 * Of these streams, those whose later events wait: behind a dead letter
	 * that holds its stream (on_failure park_stream), or behind held events.
	 */
	[Q_HELD_STREAMS] = {
		"SELECT DISTINCT d.stream_id FROM ocx.dead_letters d "
		"WHERE d.projection OPERATOR(pg_catalog.=) $1 "
		"AND d.state OPERATOR(pg_catalog.=) ANY ('{parked,held}'::pg_catalog.text[]) "
		"AND d.stream_id OPERATOR(pg_catalog.=) ANY ($2) "
		"AND (d.state OPERATOR(pg_catalog.=) 'held' OR d.holds_stream)",
		2, {TEXTOID, TEXTARRAYOID}
	},
	[Q_BEYOND] = {
		"SELECT EXISTS (SELECT 1 FROM ocx.events e "
		"WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) ($1, $2) "
		"AND ocx._log_selects(e.type, e.stream_id, $3, $4))",
		4, {XID8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID}
	},
	[Q_FAILED] = {
		"UPDATE ocx.projections SET last_error = $2, last_error_at = pg_catalog.now() "
		"WHERE name OPERATOR(pg_catalog.=) $1",
		2, {TEXTOID, TEXTOID}
	},
	/*
	 * A handler's error quotes what it likes of the event: it is kept where
	 * only the event's tenant reads it (row-level security), while
	 * ocx.projections.last_error, readable by every ocx_reader, says only
	 * which event failed and the SQLSTATE.
	 */
	[Q_ERROR] = {
		"INSERT INTO ocx.projection_errors AS x (projection, tenant_id, global_position, error) "
		"VALUES ($1, $2, $3, $4) ON CONFLICT (projection) DO UPDATE "
		"SET tenant_id = excluded.tenant_id, global_position = excluded.global_position, "
		"error = excluded.error, at = pg_catalog.now()",
		4, {TEXTOID, TEXTOID, INT8OID, TEXTOID}
	},
	[Q_INLINE] = {
		"SELECT name, handler, types, categories, owner::pg_catalog.text "
		"FROM ocx.projections WHERE mode OPERATOR(pg_catalog.=) 'inline' "
		"AND state OPERATOR(pg_catalog.=) 'running' ORDER BY name",
		0, {0}
	},
	[Q_STREAM_EVENTS] = {
		"SELECT e, e.type FROM ocx.read_stream($1, $2, $3) e",
		3, {TEXTOID, INT8OID, INT4OID}
	},
	/* $2: the partition, or -1; a partition's own shadow checkpoint */
	[Q_SHADOW] = {
		"SELECT p.handler::pg_catalog.regprocedure::pg_catalog.oid, p.types, p.categories, "
		"p.owner::pg_catalog.text, p.shadow_schema, "
		"CASE WHEN $2 OPERATOR(pg_catalog.>=) 0 THEN s.checkpoint_txid ELSE p.shadow_checkpoint_txid END, "
		"CASE WHEN $2 OPERATOR(pg_catalog.>=) 0 THEN s.checkpoint_position "
		"ELSE p.shadow_checkpoint_position END, "
		"p.tables, p.rebuild_started_at, p.partitions, s.partition IS NOT NULL "
		"FROM ocx.projections p LEFT JOIN ocx.projection_shadow_partitions s "
		"ON s.projection OPERATOR(pg_catalog.=) p.name AND s.partition OPERATOR(pg_catalog.=) $2 "
		"WHERE p.name OPERATOR(pg_catalog.=) $1 "
		"AND p.shadow_schema IS NOT NULL AND p.state OPERATOR(pg_catalog.=) 'running' "
		"AND p.mode OPERATOR(pg_catalog.=) 'async'",
		2, {TEXTOID, INT4OID}
	},
	/* only if the rebuild read is still the one under way (optimistic) */
	[Q_SHADOW_CKPT] = {
		"UPDATE ocx.projections SET shadow_checkpoint_txid = $2, shadow_checkpoint_position = $3, "
		"rebuild_done = rebuild_done OPERATOR(pg_catalog.+) $4, shadow_failures = 0, "
		"updated_at = pg_catalog.now() "
		"WHERE name OPERATOR(pg_catalog.=) $1 AND shadow_schema OPERATOR(pg_catalog.=) $5 "
		"AND rebuild_started_at OPERATOR(pg_catalog.=) $6 "
		"AND shadow_checkpoint_txid OPERATOR(pg_catalog.=) $7 "
		"AND shadow_checkpoint_position OPERATOR(pg_catalog.=) $8",
		8, {TEXTOID, XID8OID, INT8OID, INT8OID, TEXTOID, TIMESTAMPTZOID, XID8OID, INT8OID}
	},
	/*
	 * The same for a partition: its own row, after sharing the projection's
	 * row as a live partition's batch does (the swap holds it while it
	 * reads every partition's checkpoints); the failures in a row are reset
	 * only when there were any, so the projection's row is seldom written.
	 */
	[Q_SHADOW_CKPT_PART] = {
		"WITH p AS (SELECT shadow_failures FROM ocx.projections WHERE name OPERATOR(pg_catalog.=) $1 "
		"AND shadow_schema OPERATOR(pg_catalog.=) $5 AND rebuild_started_at OPERATOR(pg_catalog.=) $6 "
		"FOR KEY SHARE SKIP LOCKED), "
		"s AS (UPDATE ocx.projection_shadow_partitions SET checkpoint_txid = $2, checkpoint_position = $3, "
		"rebuild_done = rebuild_done OPERATOR(pg_catalog.+) $4, updated_at = pg_catalog.now() "
		"WHERE projection OPERATOR(pg_catalog.=) $1 AND partition OPERATOR(pg_catalog.=) $9 "
		"AND checkpoint_txid OPERATOR(pg_catalog.=) $7 AND checkpoint_position OPERATOR(pg_catalog.=) $8 "
		"AND EXISTS (SELECT FROM p) RETURNING 1) "
		"SELECT (SELECT pg_catalog.count(*) FROM s), (SELECT shadow_failures FROM p)",
		9, {TEXTOID, XID8OID, INT8OID, INT8OID, TEXTOID, TIMESTAMPTZOID, XID8OID, INT8OID, INT4OID}
	},
	/*
	 * The rows written to each live table by this process and not yet sent
	 * to the statistics system (PG15 keeps earlier transactions' counts
	 * pending too): read before and after the handlers, a change means the
	 * handler wrote a live table.
	 */
	[Q_LIVE_WRITES] = {
		"SELECT t, pg_catalog.pg_stat_get_xact_tuples_inserted(t::pg_catalog.regclass) "
		"OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated(t::pg_catalog.regclass) "
		"OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted(t::pg_catalog.regclass) "
		"FROM pg_catalog.unnest($1) WITH ORDINALITY u(t, i) ORDER BY i",
		1, {TEXTARRAYOID}
	},
	[Q_SWAP] = {
		"SELECT ocx._projection_swap($1)",
		1, {TEXTOID}
	},
	[Q_SHADOW_FAILED] = {
		"UPDATE ocx.projections SET shadow_failures = shadow_failures OPERATOR(pg_catalog.+) 1, "
		"last_error = $2, last_error_at = pg_catalog.now() "
		"WHERE name OPERATOR(pg_catalog.=) $1 AND shadow_schema IS NOT NULL "
		"RETURNING shadow_failures OPERATOR(pg_catalog.>=) "
		"(retry OPERATOR(pg_catalog.->>) 'max_attempts')::pg_catalog.int4",
		2, {TEXTOID, TEXTOID}
	},
	[Q_SHADOW_OK] = {
		"UPDATE ocx.projections SET shadow_failures = 0 "
		"WHERE name OPERATOR(pg_catalog.=) $1 AND shadow_failures OPERATOR(pg_catalog.>) 0",
		1, {TEXTOID}
	},
	[Q_SHADOW_ABANDON] = {
		"SELECT ocx._projection_shadow_discard($1, $2)",
		2, {TEXTOID, TEXTOID}
	},
};

static SPIPlanPtr proj_plans[NUM_PROJ_PLANS];

static bool LiveBatch(const char *name, int partition, TimestampTz *next_due);
static bool OcxProjectionShadowBatch(const char *name, int partition, TimestampTz *next_due);
static void OcxProjectionShadowFailed(const char *name, const char *message);

/*
 * The schema handlers write to while a blue/green rebuild's shadow replay
 * calls them (ocx.projection_schema), else NULL: the setting is left alone.
 */
static const char *handler_schema = NULL;

/* An event of a batch, copied out of SPI's result. */
typedef struct BatchEvent
{
	Datum		event;			/* the ocx.event composite */
	int64		position;
	Datum		txid;
	TimestampTz time;
	char	   *stream_id;
	int64		stream_version;
	pg_uuid_t	event_id;
	char	   *type;
	char	   *correlation_id; /* the event's, else its id */
	char	   *causation_id;	/* the event's id */
	char	   *traceparent;	/* from its metadata, or NULL */
	char	   *tenant_id;		/* or NULL */
	bool		mine;			/* of the batch's partition (all: unpartitioned) */
	bool		held;			/* its stream waits behind a dead letter */
} BatchEvent;

/* A running inline projection, as cached by a backend. */
typedef struct InlineProjection
{
	char	   *name;
	char	   *handler_signature;	/* as stored; looked up as owner when first needed */
	Oid			handler;		/* InvalidOid until then */
	Oid			owner;
	char	  **types;			/* NULL: every type */
	int			ntypes;
	char	  **categories;		/* NULL: every category */
	int			ncategories;
} InlineProjection;

static MemoryContext inline_context = NULL;
static InlineProjection *inline_projections = NULL;
static int	n_inline = 0;
static bool inline_valid = false;
static Oid	inline_relid = InvalidOid;

/* The kept plan for which, prepared on first use in this process. */
static SPIPlanPtr
GetProjPlan(ProjPlan which)
{
	const ProjPlanDef *def = &proj_plan_defs[which];

	return OcxKeptPlan(&proj_plans[which], def->sql, def->nargs, def->argtypes);
}

/* Execute a kept plan; returns SPI_processed. */
static uint64
RunProjPlan(ProjPlan which, Datum *values, const char *nulls)
{
	return OcxRunKeptPlan(GetProjPlan(which), values, nulls, false);
}

/* Column col of row of the last SPI result, copied into the current context. */
static Datum
GetCol(int row, int col, bool *isnull)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	Form_pg_attribute att = TupleDescAttr(desc, col - 1);
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], desc, col, isnull);

	if (*isnull)
		return (Datum) 0;
	return datumCopy(d, att->attbyval, att->attlen);
}

/* A text column of the last SPI result as a C string (NULL for NULL). */
static char *
GetText(int row, int col)
{
	bool		isnull;
	Datum		d = GetCol(row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* A text[] as C strings (NULL for a NULL array). */
static char **
TextArrayStrings(Datum arr, bool isnull, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;
	int			i;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		out[i] = nulls[i] ? "" : TextDatumGetCString(elems[i]);
	return out;
}

/*
 * Set one ocx.* setting for the handler from an event attribute (NULL or an
 * invalid value leaves it empty: the check hooks report at DEBUG1 only).
 */
static void
SetHandlerSetting(const char *name, const char *value)
{
	(void) set_config_option(name, value ? value : "", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, DEBUG1, false);
}

/* The text of a uuid attribute of event, or NULL. */
static char *
EventUuidAttr(HeapTupleHeader event, const char *attr)
{
	bool		isnull;
	Datum		d = GetAttributeByName(event, attr, &isnull);

	return isnull ? NULL : DatumGetCString(DirectFunctionCall1(uuid_out, d));
}

/*
 * Read the next batch (OcxReadLog, the one reader: reader.c) as ocx_worker, not as the bootstrap
 * superuser the worker connects as: a role that may read every tenant's
 * events and nothing else.  Upcasters the read needs run as their authors.
 */
static uint64
RunAsWorkerReader(OcxLogRead *read)
{
	Oid			reader = OcxWorkerRole();
	Oid			save_user;
	int			save_sec;
	volatile uint64 n = 0;

	GetUserIdAndSecContext(&save_user, &save_sec);
	if (OidIsValid(reader))
		SetUserIdAndSecContext(reader, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		n = OcxReadLog(read);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	return n;
}

/* The partition (0 .. partitions - 1) of a stream, as ocx.stream_partition. */
static int
StreamPartition(const char *stream_id, int partitions)
{
	text	   *sid = cstring_to_text(stream_id);
	int32		h = DatumGetInt32(DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID,
														  PointerGetDatum(sid)));

	pfree(sid);
	return (int) ((h & PG_INT32_MAX) % partitions);
}

/*
 * The next batch after read->after: the events the projection's types and
 * categories select (read by the one reader, which leaves the others out),
 * in log order, in their stored form, in the current memory context, each
 * marked with whether it is of the batch's partition (*nmine of them);
 * read->tail is where a batch that was not full may move its checkpoint to
 * (BatchEnd).  The partition is told here, not in the read: the read's
 * LIMIT must stay inside _read_log, where the planner sees it and walks the
 * log-order index from the checkpoint, stopping at the batch's last event
 * (with the LIMIT above a filter of its own, its generic plan sorted every
 * event after the checkpoint, 2.7 s a batch at 1M events).
 */
static BatchEvent *
ReadBatch(OcxLogRead *read, int partition, int partitions, uint64 *nev, uint64 *nmine)
{
	BatchEvent *events;
	bool		isnull;
	uint64		i;

	read->max_count = ocx_batch_size;
	OcxReadLogTail(read);
	*nev = RunAsWorkerReader(read);
	OcxCount(OCX_COUNT_PROJECTION_EVENTS_READ, (int64) *nev);
	*nmine = 0;
	events = palloc0(sizeof(BatchEvent) * Max(*nev, 1));
	for (i = 0; i < *nev; i++)
	{
		events[i].event = GetCol(i, 1, &isnull);
		events[i].position = DatumGetInt64(GetCol(i, 2, &isnull));
		events[i].txid = GetCol(i, 3, &isnull);
		events[i].time = DatumGetTimestampTz(GetCol(i, 4, &isnull));
		events[i].stream_id = GetText(i, 5);
		events[i].stream_version = DatumGetInt64(GetCol(i, 6, &isnull));
		memcpy(&events[i].event_id, DatumGetUUIDP(GetCol(i, 7, &isnull)), sizeof(pg_uuid_t));
		events[i].type = GetText(i, 8);
		events[i].correlation_id = GetText(i, 9);
		events[i].causation_id = GetText(i, 10);
		events[i].traceparent = GetText(i, 11);
		events[i].tenant_id = GetText(i, 12);
		events[i].mine = partition < 0 ||
			StreamPartition(events[i].stream_id, partitions) == partition;
		if (events[i].mine)
			(*nmine)++;
	}
	SPI_freetuptable(SPI_tuptable);
	return events;
}

/*
 * Where a batch that read nev events and applied them all ends: after its
 * last event, or, when it was not full, at the read's tail (the events it
 * left out up to there are not the projection's).  False when that is the
 * checkpoint it started from.  The tail is never before the last event
 * read (OcxReadLogTail: the same horizon and snapshot); a checkpoint moved
 * back would apply events twice, so that is an error, never a checkpoint.
 */
static bool
BatchEnd(OcxLogRead *read, BatchEvent *events, uint64 nev,
		 Datum *txid, int64 *pos, TimestampTz *time, bool *have_time)
{
	if (nev > 0)
	{
		uint64		last = U64FromFullTransactionId(DatumGetFullTransactionId(events[nev - 1].txid));
		uint64		tail = read->have_tail ?
			U64FromFullTransactionId(DatumGetFullTransactionId(read->tail_txid)) : 0;

		if (!read->have_tail || tail < last ||
			(tail == last && read->tail_pos < events[nev - 1].position))
			elog(ERROR, "ocx: the tail of the read is before its last event %lld",
				 (long long) events[nev - 1].position);
	}
	if (nev < (uint64) ocx_batch_size && read->have_tail)
	{
		*txid = read->tail_txid;
		*pos = read->tail_pos;
		*time = read->tail_time;
		*have_time = read->have_tail_time;
		return true;
	}
	if (nev == 0)
		return false;
	*txid = events[nev - 1].txid;
	*pos = events[nev - 1].position;
	*time = events[nev - 1].time;
	*have_time = true;
	return true;
}

/*
 * Call handler(event) as role owner (src/security.c: a settings level of its
 * own, ocx's search_path, a security-restricted operation), with the event's
 * tenant, correlation id and traceparent as ocx.tenant, ocx.correlation_id
 * and ocx.traceparent and the event itself as ocx.causation_id: row-level
 * security then shows the handler its tenant's rows, and what it appends
 * continues the event's trace.  Every setting, those the handler changes
 * included, is undone when the call returns (and by the (sub)transaction
 * abort when it throws), so nothing leaks into the next handler.
 */
static void
CallHandler(FmgrInfo *flinfo, Oid owner, Datum event)
{
	LOCAL_FCINFO(fcinfo, 1);
	OcxUserCall call;
	HeapTupleHeader ev = DatumGetHeapTupleHeader(event);
	bool		isnull;
	Datum		d;
	char	   *traceparent = NULL;

	OcxUserCodeBegin(owner, &call);
	if (handler_schema)
		SetHandlerSetting("ocx.projection_schema", handler_schema);
	d = GetAttributeByName(ev, "tenant_id", &isnull);
	SetHandlerSetting("ocx.tenant", isnull ? NULL : TextDatumGetCString(d));
	SetHandlerSetting("ocx.correlation_id", EventUuidAttr(ev, "correlation_id"));
	SetHandlerSetting("ocx.causation_id", EventUuidAttr(ev, "event_id"));
	d = GetAttributeByName(ev, "metadata", &isnull);
	if (!isnull)
	{
		JsonbValue	v;

		if (OcxJsonbGet(&DatumGetJsonbP(d)->root, "traceparent", &v) && v.type == jbvString)
			traceparent = OcxJsonbString(&v);
	}
	SetHandlerSetting("ocx.traceparent", traceparent);

	InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = event;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
	OcxUserCodeEnd(&call);
}

/*
 * What a handler appends is caused by the event it handles and shares its
 * correlation id (and trace): set the settings append reads, as SET LOCAL
 * does, so they end with the batch's transaction (or with the subtransaction
 * that fails).  Only changed values are set: PG15's GUC stack is not cheap.
 * set_correlation etc. remember what is set; NULL means "unknown, set it".
 */
static const char *set_correlation = NULL;
static const char *set_causation = NULL;
static const char *set_traceparent = NULL;

/* After a rollback or at a new batch nothing is known to be set. */
static void
ForgetEventSettings(void)
{
	set_correlation = set_causation = set_traceparent = NULL;
}

static void
SetEventSettings(BatchEvent *ev)
{
	const char *trace = ev->traceparent ? ev->traceparent : "";

	if (set_correlation == NULL || strcmp(set_correlation, ev->correlation_id) != 0)
	{
		set_config_option("ocx.correlation_id", ev->correlation_id, PGC_USERSET,
						  PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		set_correlation = ev->correlation_id;
	}
	if (set_causation == NULL || strcmp(set_causation, ev->causation_id) != 0)
	{
		set_config_option("ocx.causation_id", ev->causation_id, PGC_USERSET,
						  PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		set_causation = ev->causation_id;
	}
	if (set_traceparent == NULL || strcmp(set_traceparent, trace) != 0)
	{
		if (set_config_option("ocx.traceparent", trace, PGC_USERSET,
							  PGC_S_SESSION, GUC_ACTION_LOCAL, true, WARNING, false) > 0)
			set_traceparent = trace;
	}
}

/*
 * Apply the matching events of events[from..to) in one subtransaction.  On error the subtransaction
 * is rolled back, *edata (in the caller's context) says why, and false is
 * returned; the caller's transaction goes on.
 */
typedef struct ApplyRun
{
	FmgrInfo   *flinfo;
	Oid			owner;
	BatchEvent *events;
	int			from;
	int			to;
} ApplyRun;

/* The body of ApplyInSubtransaction: the handler over the matching events. */
static void
ApplyEvents(void *arg)
{
	ApplyRun   *run = (ApplyRun *) arg;
	int			i;
	int			scope;

	/* may the owner still run it?  If not, this fails like the handler would */
	OcxUserCodeCheck(run->owner, run->flinfo->fn_oid, "projection handler");
	scope = OcxUserCodeScopeBegin();
	for (i = run->from; i < run->to; i++)
	{
		if (!run->events[i].mine || run->events[i].held)
			continue;
		CHECK_FOR_INTERRUPTS();
		SetEventSettings(&run->events[i]);
		/* upcast here: an event that cannot be upcast fails like its handler */
		CallHandler(run->flinfo, run->owner, OcxUpcastEvent(run->events[i].event));
	}
	/* the scope's end also undoes the event settings: set them anew next time */
	OcxUserCodeScopeEnd(scope);
	ForgetEventSettings();
}

static bool
ApplyInSubtransaction(FmgrInfo *flinfo, Oid owner, BatchEvent *events,
					  int from, int to, ErrorData **edata)
{
	ApplyRun	run = {flinfo, owner, events, from, to};

	*edata = OcxInSubtransaction(ApplyEvents, &run);
	if (*edata == NULL)
		return true;
	ForgetEventSettings();		/* the rollback undid them */
	return false;
}

/* SQL: ocx._require_workers(what) raises OX210 without preloading. */
Datum
ocx_require_workers(PG_FUNCTION_ARGS)
{
	OcxRequireWorkers(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

/* Trigger on ocx.projections: every backend reloads its inline cache. */
Datum
ocx_projections_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "ocx_projections_changed: not called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/*
 * The names of the projections the worker has work for, in cxt, and in
 * *partitions the number of partitions of each.
 */
List *
OcxProjectionsToRun(MemoryContext cxt, List **partitions)
{
	List	   *names = NIL;
	uint64		n;
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	n = RunProjPlan(Q_LIST, NULL, NULL);
	for (i = 0; i < n; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		isnull;
		int			np = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);

		names = lappend(names, pstrdup(name));
		*partitions = lappend_int(*partitions, np);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return names;
}

/* Record an error that stopped a batch before any handler ran. */
void
OcxProjectionFailed(const char *name, const char *message)
{
	Datum		values[2];

	if (strncmp(name, OCX_SHADOW_PREFIX, strlen(OCX_SHADOW_PREFIX)) == 0)
	{
		OcxProjectionShadowFailed(name + strlen(OCX_SHADOW_PREFIX), message);
		return;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(message ? message : "unknown error");
	RunProjPlan(Q_FAILED, values, NULL);
	SPI_finish();
}

/*
 * Keep a handler's error for its event's tenant (ocx.projection_errors, under
 * row-level security): the message may quote the event's data.
 */
static char *
RecordError(const char *name, BatchEvent *ev, ErrorData *edata)
{
	char	   *message = psprintf("event %lld (%s, %s): %s",
								   (long long) ev->position, ev->stream_id,
								   ev->type, edata->message);
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(name);
	values[1] = ev->tenant_id ? CStringGetTextDatum(ev->tenant_id) : (Datum) 0;
	nulls[1] = ev->tenant_id ? ' ' : 'n';
	values[2] = Int64GetDatum(ev->position);
	values[3] = CStringGetTextDatum(message);
	RunProjPlan(Q_ERROR, values, nulls);
	return message;
}

/* Change a projection's state (the trigger invalidates inline caches). */
static void
SetState(const char *name, const char *state)
{
	Datum		values[2];

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(state);
	RunProjPlan(Q_STATE, values, NULL);
}

/*
 * A rebuilding projection has read everything it can see.  An async one is
 * simply running again; an inline one becomes running only when no append is
 * in flight (SHARE lock on ocx.streams, not waited for) and nothing is left
 * beyond its checkpoint.  Returns true when the worker should try again soon.
 */
static bool
FinishRebuild(const char *name, bool inline_mode, Datum ckpt_txid, int64 ckpt_pos,
			  Datum types, bool types_null, Datum categories, bool categories_null)
{
	Oid			streams;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;

	if (!inline_mode)
	{
		SetState(name, "running");
		return false;
	}
	streams = get_relname_relid("streams", get_namespace_oid(OCX_SCHEMA, false));
	if (!OidIsValid(streams) || !ConditionalLockRelationOid(streams, ShareLock))
		return true;
	values[0] = ckpt_txid;
	values[1] = Int64GetDatum(ckpt_pos);
	values[2] = types;
	nulls[2] = types_null ? 'n' : ' ';
	values[3] = categories;
	nulls[3] = categories_null ? 'n' : ' ';
	/* on the log-order index whatever the log's size when it was planned */
	OcxRunKeptOrderedPlan(GetProjPlan(Q_BEYOND), values, nulls, false);
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return true;
	SetState(name, "running");
	return false;
}

/* Whether another partition of the projection is behind this one's checkpoint. */
static bool
PartitionBehind(const char *name, int partition, Datum ckpt_txid, int64 ckpt_pos)
{
	Datum		values[4];
	bool		isnull;

	if (partition < 0)
		return false;
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(partition);
	values[2] = ckpt_txid;
	values[3] = Int64GetDatum(ckpt_pos);
	RunProjPlan(Q_PART_BEHIND, values, NULL);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Record events[i] in ocx.dead_letters: a dead letter after its attempts
 * (edata says why), or, with edata NULL, an event held back behind its
 * stream's dead letter (on_failure park_stream).
 */
static void
InsertDeadLetter(const char *name, BatchEvent *ev, int32 attempts, ErrorData *edata,
				 bool holds_stream)
{
	Datum		values[12];
	char		nulls[12];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(ev->position);
	values[2] = ev->txid;
	values[3] = CStringGetTextDatum(ev->stream_id);
	values[4] = Int64GetDatum(ev->stream_version);
	values[5] = UUIDPGetDatum(&ev->event_id);
	values[6] = CStringGetTextDatum(ev->type);
	values[7] = Int32GetDatum(attempts);
	values[8] = CStringGetTextDatum(edata ? edata->message :
									"held back: an earlier event of its stream is a dead letter");
	values[9] = edata ? CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode)) : (Datum) 0;
	nulls[9] = edata ? ' ' : 'n';
	values[10] = CStringGetTextDatum(edata ? "parked" : "held");
	values[11] = BoolGetDatum(holds_stream);
	RunProjPlan(Q_DEAD, values, nulls);
}

/*
 * Mark the matching events of the batch whose stream waits behind a dead
 * letter (Q_HELD_STREAMS): they are held back, not applied.  Returns how
 * many were marked.  One query per batch, over the batch's streams only.
 */
static uint64
MarkHeldEvents(const char *name, BatchEvent *events, uint64 nev)
{
	Datum	   *streams = palloc(sizeof(Datum) * Max(nev, 1));
	int			nstreams = 0;
	Datum		values[2];
	uint64		nrows;
	uint64		r;
	uint64		i;
	uint64		nheld = 0;

	for (i = 0; i < nev; i++)
		if (events[i].mine)
			streams[nstreams++] = CStringGetTextDatum(events[i].stream_id);
	if (nstreams == 0)
		return 0;
	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(construct_array(streams, nstreams, TEXTOID, -1, false,
												TYPALIGN_INT));
	nrows = RunProjPlan(Q_HELD_STREAMS, values, NULL);
	for (r = 0; r < nrows; r++)
	{
		char	   *stream = GetText(r, 1);

		for (i = 0; i < nev; i++)
			if (events[i].mine && !events[i].held &&
				strcmp(events[i].stream_id, stream) == 0)
			{
				events[i].held = true;
				nheld++;
			}
	}
	SPI_freetuptable(SPI_tuptable);
	return nheld;
}

/* events[from] was parked with park_stream: the rest of its stream waits. */
static void
HoldRestOfStream(BatchEvent *events, uint64 from, uint64 nev)
{
	uint64		i;

	for (i = from + 1; i < nev; i++)
		if (events[i].mine && strcmp(events[i].stream_id, events[from].stream_id) == 0)
			events[i].held = true;
}

/* Record the held events of events[0..nev) (the batch applied the others). */
static uint64
InsertHeldEvents(const char *name, BatchEvent *events, uint64 nev)
{
	uint64		i;
	uint64		n = 0;

	for (i = 0; i < nev; i++)
		if (events[i].mine && events[i].held)
		{
			InsertDeadLetter(name, &events[i], 0, NULL, false);
			n++;
		}
	return n;
}

/*
 * One batch of projection name (of one of its partitions, or -1), in the
 * caller's transaction.  Returns true
 * when there is probably more to do at once; lowers *next_due to the time a
 * retry is due.  A name OcxProjectionsToRun gave with OCX_SHADOW_PREFIX is
 * the shadow replay of that projection's blue/green rebuild.
 */
bool
OcxProjectionBatch(const char *name, int partition, TimestampTz *next_due)
{
	if (strncmp(name, OCX_SHADOW_PREFIX, strlen(OCX_SHADOW_PREFIX)) == 0)
		return OcxProjectionShadowBatch(name + strlen(OCX_SHADOW_PREFIX), partition, next_due);
	return LiveBatch(name, partition, next_due);
}

/*
 * A live batch, split by job: read the projection's row (ReadLiveRow) and
 * whether a batch is due (LiveBatchDue), read the events (ReadBatch,
 * MarkHeldEvents), apply them (ApplyBatch, with the retry policy per failed
 * event in EventFailed), record the held events (InsertHeldEvents), write
 * the checkpoint after rechecking the row (WriteCheckpoint), then stop the
 * projection or finish its rebuild (FinishBatch).
 */

/* The projection's row as the batch read it (Q_PROJ). */
typedef struct LiveRow
{
	const char *name;
	int			partition;		/* or -1 */
	Oid			handler;
	OcxLogRead	read;			/* after the checkpoint, its types, categories, partition */
	char	   *mode;
	char	   *state;
	Oid			owner;			/* InvalidOid: dropped (OX502) */
	int32		max_attempts;
	Interval   *base_delay;
	Interval   *max_delay;
	char	   *on_exhausted;
	bool		park_stream;	/* on_failure park_stream */
	int32		partitions;
	bool		have_partition; /* the partition's row exists */
	Datum		row_updated_at; /* the recheck compares it */
	bool		rebuilding;
} LiveRow;

/* What the batch did: written with the checkpoint. */
typedef struct LiveProgress
{
	Datum		ckpt_txid;
	int64		ckpt_pos;
	TimestampTz ckpt_time;
	bool		have_time;
	int64		failing_pos;
	bool		failing_null;
	int32		failing_attempts;
	TimestampTz retry_at;
	bool		retry_null;
	int64		applied;
	int64		parked;
	uint64		held;			/* held events recorded */
	bool		stopped;
	bool		waiting;
	char	   *last_error;		/* for every reader: position, SQLSTATE */
	char	   *full_error;		/* for the event's tenant and the log */
} LiveProgress;

/* Lower *next_due to at. */
static void
LowerDue(TimestampTz *next_due, TimestampTz at)
{
	if (at < *next_due)
		*next_due = at;
}

/*
 * Read the row of projection name (of its partition, or -1) into *row and
 * its checkpoint and retry state into *progress.  False when there is none
 * (dropped, or an administrator holds its row: next time).
 */
static bool
ReadLiveRow(const char *name, int partition, LiveRow *row, LiveProgress *progress)
{
	Datum		values[2];
	bool		isnull;
	bool		policy_null;
	char	   *on_failure;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(partition);
	if (RunProjPlan(Q_PROJ, values, NULL) == 0)
		return false;

	memset(row, 0, sizeof(*row));
	memset(progress, 0, sizeof(*progress));
	row->name = name;
	row->partition = partition;
	row->handler = DatumGetObjectId(GetCol(0, 1, &isnull));
	row->read.types = GetCol(0, 2, &row->read.types_null);
	row->read.categories = GetCol(0, 3, &row->read.categories_null);
	row->mode = GetText(0, 4);
	row->state = GetText(0, 5);
	row->owner = get_role_oid(GetText(0, 6), true);
	row->read.after_txid = GetCol(0, 7, &isnull);
	row->read.after_pos = DatumGetInt64(GetCol(0, 8, &isnull));
	progress->ckpt_txid = row->read.after_txid;
	progress->ckpt_pos = row->read.after_pos;
	progress->failing_pos = DatumGetInt64(GetCol(0, 9, &progress->failing_null));
	progress->failing_attempts = DatumGetInt32(GetCol(0, 10, &isnull));
	progress->retry_at = DatumGetTimestampTz(GetCol(0, 11, &progress->retry_null));
	row->max_attempts = DatumGetInt32(GetCol(0, 12, &policy_null));
	row->base_delay = DatumGetIntervalP(GetCol(0, 13, &isnull));
	policy_null |= isnull;
	row->max_delay = DatumGetIntervalP(GetCol(0, 14, &isnull));
	policy_null |= isnull;
	row->on_exhausted = GetText(0, 15);
	row->partitions = DatumGetInt32(GetCol(0, 16, &isnull));
	row->have_partition = DatumGetBool(GetCol(0, 17, &isnull));
	on_failure = GetText(0, 18);
	row->park_stream = on_failure != NULL && strcmp(on_failure, "park_stream") == 0;
	row->row_updated_at = GetCol(0, 19, &isnull);
	if (policy_null || row->on_exhausted == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_PROJECTION),
				 errmsg("projection \"%s\" has a retry policy without max_attempts, base_delay, max_delay or on_exhausted", name),
				 errhint("Define the projection again (ocx.define_projection) to store its policy in the current shape.")));
	row->rebuilding = strcmp(row->state, "rebuilding") == 0;
	return true;
}

/*
 * Whether a batch of the row is due now: it is still the unit that was
 * listed, runs here and waits for no retry (then *next_due is lowered to it).
 */
static bool
LiveBatchDue(LiveRow *row, LiveProgress *progress, TimestampTz now, TimestampTz *next_due)
{
	/* partitioned or not since the unit was listed: the next pass lists it anew */
	if (row->partition >= 0 ?
		(!row->have_partition || row->partitions <= 1 || row->partition >= row->partitions) :
		row->partitions > 1)
		return false;

	if ((strcmp(row->state, "running") != 0 && !row->rebuilding) ||
		(strcmp(row->mode, "async") != 0 && !row->rebuilding))
		return false;
	if (!progress->retry_null && progress->retry_at > now)
	{
		LowerDue(next_due, progress->retry_at);
		return false;
	}
	return true;
}

/*
 * A rebuilding projection (partition) that read everything up to (txid,
 * pos), with no other partition behind it, finishes its rebuild; when that
 * must be tried again, *next_due is lowered to soon.
 */
static void
MaybeFinishRebuild(LiveRow *row, Datum txid, int64 pos, TimestampTz now,
				   TimestampTz *next_due)
{
	if (row->rebuilding && !PartitionBehind(row->name, row->partition, txid, pos) &&
		FinishRebuild(row->name, strcmp(row->mode, "inline") == 0, txid, pos,
					  row->read.types, row->read.types_null, row->read.categories, row->read.categories_null))
		LowerDue(next_due, TimestampTzPlusMilliseconds(now, 100));
}

/*
 * events[i] failed (edata says why): count the attempt and apply the retry
 * policy.  Returns true when the batch goes on (the event was parked), false
 * when it stops here: the event waits for its retry (progress->waiting,
 * *next_due lowered to it) or the projection stops (progress->stopped).
 */
static bool
EventFailed(LiveRow *row, BatchEvent *events, uint64 i, uint64 nev, ErrorData *edata,
			LiveProgress *progress, TimestampTz *next_due)
{
	BatchEvent *ev = &events[i];
	int32		attempts;

	attempts = (!progress->failing_null && progress->failing_pos == ev->position) ?
		progress->failing_attempts + 1 : 1;
	OcxCount(OCX_COUNT_PROJECTION_ERRORS, 1);
	progress->last_error = psprintf("event %lld failed with SQLSTATE %s",
									(long long) ev->position,
									unpack_sql_state(edata->sqlerrcode));
	progress->full_error = RecordError(row->name, ev, edata);
	if (attempts < row->max_attempts)
	{
		Interval   *delay = OcxRetryDelay(row->base_delay, row->max_delay, attempts);

		progress->failing_null = false;
		progress->failing_pos = ev->position;
		progress->failing_attempts = attempts;
		progress->retry_null = false;
		progress->retry_at =
			DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													TimestampTzGetDatum(GetCurrentTimestamp()),
													IntervalPGetDatum(delay)));
		LowerDue(next_due, progress->retry_at);
		progress->waiting = true;
		return false;
	}
	if (strcmp(row->on_exhausted, "stop") == 0)
	{
		progress->failing_null = false;
		progress->failing_pos = ev->position;
		progress->failing_attempts = attempts;
		progress->stopped = true;
		return false;
	}

	/* park it and go on (with park_stream, without the rest of its stream) */
	InsertDeadLetter(row->name, ev, attempts, edata, row->park_stream);
	if (row->park_stream)
		HoldRestOfStream(events, i, nev);
	ereport(LOG,
			(errmsg("ocx: projection \"%s\" parked event %lld in ocx.dead_letters after %d attempts",
					row->name, (long long) ev->position, attempts),
			 errdetail("%s", edata->message)));
	progress->parked++;
	OcxCount(OCX_COUNT_PROJECTION_DEAD_LETTERS, 1);
	progress->failing_null = true;
	progress->failing_attempts = 0;
	progress->retry_null = true;
	FreeErrorData(edata);
	return true;
}

/*
 * Call the handler on the events of the batch (all selected by the
 * projection) that are of its partition (nmine) and not held back.
 * Returns how many events of the batch are done: nev, or the index of the
 * event that waits for a retry or stopped the projection.
 */
static uint64
ApplyBatch(LiveRow *row, FmgrInfo *flinfo, BatchEvent *events, uint64 nev,
		   uint64 nmine, uint64 nheld, LiveProgress *progress, TimestampTz *next_due)
{
	uint64		i;

	if (nmine == nheld)
		return nev;				/* nothing for this partition to apply */

	/* fast path: the whole batch in one subtransaction (held events apart) */
	if (progress->failing_null)
	{
		ErrorData  *edata = NULL;

		if (ApplyInSubtransaction(flinfo, row->owner, events, 0, nev, &edata))
		{
			progress->applied = nmine - nheld;
			return nev;
		}
		FreeErrorData(edata);
	}

	/* slow path: one subtransaction per event, to isolate the failing one */
	for (i = 0; i < nev; i++)
	{
		ErrorData  *edata = NULL;

		if (!events[i].mine || events[i].held)
			continue;			/* another partition's, or recorded by InsertHeldEvents */
		if (ApplyInSubtransaction(flinfo, row->owner, events, i, i + 1, &edata))
		{
			progress->applied++;
			progress->failing_null = true;
			progress->failing_attempts = 0;
			continue;
		}
		if (!EventFailed(row, events, i, nev, edata, progress, next_due))
			break;
	}
	return i;
}

/*
 * The batch read the row without locking it, so that its transaction
 * takes no xid before its handlers write (an xid would hold the log
 * horizon of every other consumer while a slow handler runs).  Pool
 * workers never run one projection twice at once (pool.c); whatever else
 * changed the row meanwhile wins, and this batch is tried again (OX203).
 * retry_dead_letter and skip_dead_letter move updated_at when they
 * release a stream, holding the row (FOR UPDATE) until they commit: a
 * batch that read the stream as held back before that starts again, and
 * one that got here first (a partition's batch shares the row with KEY
 * SHARE) commits before they read the held events.
 */
static void
RecheckLiveRow(LiveRow *row)
{
	Datum		values[7];

	values[0] = CStringGetTextDatum(row->name);
	values[1] = row->read.after_txid;
	values[2] = Int64GetDatum(row->read.after_pos);
	values[3] = CStringGetTextDatum(row->state);
	values[4] = Int32GetDatum(row->partition);
	values[5] = Int32GetDatum(row->partitions);
	values[6] = row->row_updated_at;
	if (RunProjPlan(row->partition >= 0 ? Q_RECHECK_PART : Q_RECHECK, values, NULL) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PROJECTION_CHANGED),
				 errmsg("projection \"%s\" changed while its batch ran", row->name),
				 errdetail("The batch is rolled back and tried again.")));
}

/*
 * The checkpoint: the last event done (events[0..done)), before the one that
 * waits, if any, or the read's tail when all nev were done (BatchEnd); with
 * the retry state and the counts, in the projection's row or its partition's.
 */
static void
WriteCheckpoint(LiveRow *row, BatchEvent *events, uint64 nev, uint64 done,
				LiveProgress *progress)
{
	Datum		values[11];
	char		nulls[11];

	if (done == nev)
		(void) BatchEnd(&row->read, events, nev, &progress->ckpt_txid, &progress->ckpt_pos,
						&progress->ckpt_time, &progress->have_time);
	else if (done > 0)
	{
		progress->ckpt_txid = events[done - 1].txid;
		progress->ckpt_pos = events[done - 1].position;
		progress->ckpt_time = events[done - 1].time;
		progress->have_time = true;
	}
	if (!progress->waiting && !progress->stopped)
	{
		/* past every event read: nothing is pending a retry */
		progress->retry_null = true;
		progress->failing_null = true;
	}

	RecheckLiveRow(row);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(row->name);
	values[1] = progress->ckpt_txid;
	values[2] = Int64GetDatum(progress->ckpt_pos);
	values[3] = TimestampTzGetDatum(progress->ckpt_time);
	nulls[3] = progress->have_time ? ' ' : 'n';
	values[4] = Int64GetDatum(progress->applied);
	values[5] = Int64GetDatum(progress->failing_pos);
	nulls[5] = progress->failing_null ? 'n' : ' ';
	values[6] = Int32GetDatum(progress->failing_null ? 0 : progress->failing_attempts);
	values[7] = TimestampTzGetDatum(progress->retry_at);
	nulls[7] = progress->retry_null ? 'n' : ' ';
	values[8] = progress->last_error ? CStringGetTextDatum(progress->last_error) : (Datum) 0;
	nulls[8] = progress->last_error ? ' ' : 'n';
	values[9] = Int64GetDatum(row->rebuilding ?
							  progress->applied + progress->parked + (int64) progress->held : 0);
	if (row->partition < 0)
		RunProjPlan(Q_CKPT, values, nulls);
	else
	{
		/* a partition's state in its row; the projection's last error in its own */
		values[10] = Int32GetDatum(row->partition);
		nulls[10] = ' ';
		RunProjPlan(Q_CKPT_PART, values, nulls);
		if (progress->last_error)
		{
			Datum		fvalues[2] = {values[0], values[8]};

			RunProjPlan(Q_FAILED, fvalues, NULL);
		}
	}
	OcxCount(OCX_COUNT_PROJECTION_EVENTS, progress->applied);
}

/*
 * After the checkpoint: stop the projection when its policy says so, else
 * finish its rebuild when it caught up.  Returns whether there is probably
 * more to do at once.
 */
static bool
FinishBatch(LiveRow *row, uint64 nev, LiveProgress *progress, TimestampTz now,
			TimestampTz *next_due)
{
	bool		more;

	if (progress->stopped)
	{
		SetState(row->name, "stopped");
		ereport(WARNING,
				(errcode(ERRCODE_OCX_PROJECTION_STOPPED),
				 errmsg("ocx: projection \"%s\" stopped at event %lld", row->name,
						(long long) progress->failing_pos),
				 errdetail("%s", progress->full_error ? progress->full_error : progress->last_error),
				 errhint("Fix the handler, then call ocx.resume_projection('%s').", row->name)));
		return false;
	}
	if (progress->waiting)
		return false;
	more = (nev == (uint64) ocx_batch_size);
	if (!more)
		MaybeFinishRebuild(row, progress->ckpt_txid, progress->ckpt_pos, now, next_due);
	return more;
}

/* LiveBatch in its memory context cxt, connected to SPI. */
static bool
LiveBatchRun(const char *name, int partition, MemoryContext cxt, TimestampTz *next_due)
{
	TimestampTz now = GetCurrentTimestamp();
	LiveRow		row;
	LiveProgress progress;
	BatchEvent *events;
	uint64		nev;
	uint64		nmine;
	uint64		done;

	if (!ReadLiveRow(name, partition, &row, &progress) ||
		!LiveBatchDue(&row, &progress, now, next_due))
		return false;

	/*
	 * The next batch, in log order, in its stored form: the events the
	 * projection's types and categories select, filtered by the one reader;
	 * those of other partitions are skipped here (ReadBatch marks the
	 * partition's own).  A batch that was not full moves the checkpoint to the
	 * last event below the read's horizon (BatchEnd), past the events the
	 * projection does not want, so a batch never rescans a long run of
	 * them.  The events are upcast one by one in ApplyEvents: an event whose
	 * upcaster fails (a poison event) is that projection's failing event,
	 * retried and dead-lettered per its retry policy, and is never upcast for
	 * a projection that filters it out.
	 */
	events = ReadBatch(&row.read, partition, row.partitions, &nev, &nmine);
	if (nev == 0 && !row.read.have_tail)
	{
		MaybeFinishRebuild(&row, row.read.after_txid, row.read.after_pos, now, next_due);
		return false;
	}
	done = nev;
	if (nmine > 0)
	{
		FmgrInfo	flinfo;
		uint64		nheld = MarkHeldEvents(name, events, nev);

		fmgr_info_cxt(row.handler, &flinfo, cxt);
		ForgetEventSettings();
		done = ApplyBatch(&row, &flinfo, events, nev, nmine, nheld, &progress, next_due);
	}

	/* the held events up to the checkpoint, once every handler has run */
	progress.held = InsertHeldEvents(name, events, done);
	WriteCheckpoint(&row, events, nev, done, &progress);
	return FinishBatch(&row, nev, &progress, now, next_due);
}

/* One batch of the live projection name, or of one of its partitions. */
static bool
LiveBatch(const char *name, int partition, TimestampTz *next_due)
{
	MemoryContext cxt;
	MemoryContext old;
	bool		more;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx projection batch",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	MemoryContextSwitchTo(cxt);
	more = LiveBatchRun(name, partition, cxt, next_due);
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return more;
}

/* ApplyEvents with schema first in the handler's search_path and as ocx.projection_schema. */
static void
ApplyInSchema(ApplyRun *run, const char *schema)
{
	ForgetEventSettings();
	OcxUserCodeSchemaFirst(schema);
	handler_schema = schema;
	PG_TRY();
	{
		ApplyEvents(run);
	}
	PG_FINALLY();
	{
		OcxUserCodeSchemaFirst(NULL);
		handler_schema = NULL;
	}
	PG_END_TRY();
}

/*
 * Blue/green rebuilds.  rebuild_projection(name, shadow => true) created a
 * shadow schema holding empty copies of the projection's declared tables;
 * this is the worker's unit of work for it (for each partition of a
 * partitioned projection), one transaction per call, beside (never instead
 * of) the live projection's batches:
 *
 *	read the batch after the shadow checkpoint (the partition's); call the
 *	handler on the matching events with the shadow schema first in its
 *	search_path and ocx.projection_schema set to it; refuse (OX233) if the
 *	handler wrote a live table; move the shadow checkpoint.  When the read
 *	found less than a batch (caught up), ocx._projection_swap, in the same
 *	transaction, checks that the shadow (every partition's) has every event
 *	the live tables have, locks the live tables, drops them, moves the
 *	shadow tables in and sets the live checkpoint (every partition's) to the
 *	shadow's.
 *
 * The live projection's row is not locked while the shadow batch runs (the
 * checkpoint update checks that the rebuild it read is still the current
 * one), so a pool of workers may run the two side by side.  A partition's
 * shadow checkpoint lives in ocx.projection_shadow_partitions, not in the
 * projection's row, so the partitions' shadow batches do not queue behind
 * each other; each shares the projection's row while it writes its
 * checkpoint, as a live partition's batch does, and the swap holds that row
 * (FOR UPDATE SKIP LOCKED) while it compares the checkpoints, so no
 * partition moves meanwhile.  A batch that fails is rolled back whole; the
 * worker records the failure (OcxProjectionShadowFailed), and after the
 * retry policy's attempts in a row the rebuild is abandoned: shadow tables
 * dropped, live ones untouched.
 */

/* The shadow replay's row as its batch read it (Q_SHADOW). */
typedef struct ShadowRow
{
	const char *name;
	int			partition;		/* or -1 */
	Oid			handler;
	OcxLogRead	read;			/* after the shadow checkpoint, its selection */
	Oid			owner;			/* InvalidOid: dropped (OX502) */
	char	   *schema;
	Datum		tables;
	Datum		started_at;
	int32		partitions;
	bool		have_partition; /* the partition's shadow row exists */
} ShadowRow;

/*
 * Read the shadow replay's row; false when there is nothing to do (finished,
 * abandoned, paused, dropped, or partitioned otherwise than the unit).
 */
static bool
ReadShadowRow(const char *name, int partition, ShadowRow *row)
{
	Datum		values[2];
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(partition);
	if (RunProjPlan(Q_SHADOW, values, NULL) == 0)
		return false;
	memset(row, 0, sizeof(*row));
	row->name = name;
	row->partition = partition;
	row->handler = DatumGetObjectId(GetCol(0, 1, &isnull));
	row->read.types = GetCol(0, 2, &row->read.types_null);
	row->read.categories = GetCol(0, 3, &row->read.categories_null);
	row->owner = get_role_oid(GetText(0, 4), true);
	row->schema = GetText(0, 5);
	row->read.after_txid = GetCol(0, 6, &isnull);
	row->read.after_pos = DatumGetInt64(GetCol(0, 7, &isnull));
	row->tables = GetCol(0, 8, &isnull);
	row->started_at = GetCol(0, 9, &isnull);
	row->partitions = DatumGetInt32(GetCol(0, 10, &isnull));
	row->have_partition = DatumGetBool(GetCol(0, 11, &isnull));
	/* the unit as listed: a partition of a partitioned rebuild, or the whole one */
	if (partition >= 0)
		return row->have_partition && row->partitions > 1 && partition < row->partitions;
	return row->partitions <= 1;
}

/* The rows this process wrote to each live table so far (Q_LIVE_WRITES), in a palloc'd array. */
static int64 *
LiveWrites(Datum tables, uint64 *ntables)
{
	Datum		values[1] = {tables};
	int64	   *written;
	bool		isnull;
	uint64		t;

	*ntables = RunProjPlan(Q_LIVE_WRITES, values, NULL);
	written = palloc(sizeof(int64) * Max(*ntables, 1));
	for (t = 0; t < *ntables; t++)
		written[t] = DatumGetInt64(GetCol(t, 2, &isnull));
	return written;
}

/*
 * Apply the batch's matching events to the shadow tables; OX233 when the
 * handler wrote a live table meanwhile.
 */
static void
ApplyShadowBatch(ShadowRow *row, BatchEvent *events, uint64 nev, MemoryContext cxt)
{
	FmgrInfo	flinfo;
	ApplyRun	run;
	int64	   *before;
	int64	   *after;
	uint64		ntables;
	uint64		nafter;
	uint64		t;

	before = LiveWrites(row->tables, &ntables);
	fmgr_info_cxt(row->handler, &flinfo, cxt);
	run.flinfo = &flinfo;
	run.owner = row->owner;
	run.events = events;
	run.from = 0;
	run.to = nev;
	ApplyInSchema(&run, row->schema);

	after = LiveWrites(row->tables, &nafter);
	if (nafter != ntables)
		elog(ERROR, "ocx: the read-model tables changed during a batch");
	for (t = 0; t < ntables; t++)
		if (after[t] != before[t])
			ereport(ERROR,
					(errcode(ERRCODE_OCX_SHADOW_LIVE_WRITE),
					 errmsg("projection \"%s\" wrote to its live table %s during a blue/green rebuild",
							row->name, GetText(t, 1)),
					 errdetail("The handler must write to the tables it finds through its search_path, or in schema ocx.projection_schema."),
					 errhint("Qualify no table names in the handler, or qualify them with current_setting('ocx.projection_schema') when it is set.")));
}

/*
 * Move the shadow checkpoint (the partition's) past the batch, if the
 * rebuild is still the one the batch read (optimistic): otherwise the batch
 * is rolled back and the row read again (OX203).
 */
static void
WriteShadowCheckpoint(ShadowRow *row, Datum txid, int64 pos, uint64 napplied)
{
	Datum		values[9];
	bool		isnull;
	bool		written;

	values[0] = CStringGetTextDatum(row->name);
	values[1] = txid;
	values[2] = Int64GetDatum(pos);
	values[3] = Int64GetDatum(napplied);
	values[4] = CStringGetTextDatum(row->schema);
	values[5] = row->started_at;
	values[6] = row->read.after_txid;
	values[7] = Int64GetDatum(row->read.after_pos);
	values[8] = Int32GetDatum(row->partition);
	if (row->partition < 0)
		written = RunProjPlan(Q_SHADOW_CKPT, values, NULL) == 1;
	else
	{
		Datum		failures;

		RunProjPlan(Q_SHADOW_CKPT_PART, values, NULL);
		written = DatumGetInt64(GetCol(0, 1, &isnull)) == 1;
		failures = GetCol(0, 2, &isnull);
		if (written && !isnull && DatumGetInt32(failures) > 0)
			RunProjPlan(Q_SHADOW_OK, values, NULL);
	}
	if (!written)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PROJECTION_CHANGED),
				 errmsg("the blue/green rebuild of projection \"%s\" changed while a batch ran", row->name),
				 errdetail("The batch is rolled back and tried again.")));
	OcxCount(OCX_COUNT_PROJECTION_EVENTS, napplied);
}

/* Caught up: swap now, in this transaction, or try again soon. */
static void
TrySwap(const char *name, TimestampTz *next_due)
{
	Datum		values[1];
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	RunProjPlan(Q_SWAP, values, NULL);
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(LOG,
				(errmsg("ocx: projection \"%s\" swapped in its rebuilt tables", name)));
	else
		LowerDue(next_due, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 100));
}

static bool
OcxProjectionShadowBatch(const char *name, int partition, TimestampTz *next_due)
{
	MemoryContext cxt;
	MemoryContext old;
	ShadowRow	row;
	BatchEvent *events;
	uint64		nev;
	uint64		nmine;
	bool		more = false;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx shadow batch",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	MemoryContextSwitchTo(cxt);

	if (ReadShadowRow(name, partition, &row))
	{
		Datum		txid;
		int64		pos;
		TimestampTz time;
		bool		have_time;

		events = ReadBatch(&row.read, partition, row.partitions, &nev, &nmine);
		if (nmine > 0)
			ApplyShadowBatch(&row, events, nev, cxt);
		if (BatchEnd(&row.read, events, nev, &txid, &pos, &time, &have_time))
			WriteShadowCheckpoint(&row, txid, pos, nmine);
		more = (nev == (uint64) ocx_batch_size);
		if (!more)
			TrySwap(name, next_due);
	}

	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return more;
}

/*
 * A shadow batch failed (its transaction was rolled back): count it, and
 * after the retry policy's attempts in a row abandon the blue/green rebuild.
 */
static void
OcxProjectionShadowFailed(const char *name, const char *message)
{
	Datum		values[2];
	bool		isnull;
	char	   *error = psprintf("blue/green rebuild: %s", message ? message : "unknown error");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(error);
	if (RunProjPlan(Q_SHADOW_FAILED, values, NULL) == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		values[1] = CStringGetTextDatum(psprintf("blue/green rebuild abandoned: %s",
												 message ? message : "unknown error"));
		RunProjPlan(Q_SHADOW_ABANDON, values, NULL);
		ereport(WARNING,
				(errcode(ERRCODE_OCX_PROJECTION_STOPPED),
				 errmsg("ocx: blue/green rebuild of projection \"%s\" abandoned", name),
				 errdetail("%s", message ? message : "unknown error"),
				 errhint("The live tables were left as they were. Fix the cause, then call ocx.rebuild_projection('%s', shadow => true) again.", name)));
	}
	SPI_finish();
}

/* The relcache callback: forget the inline cache when ocx.projections changes. */
void
OcxInlineRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == inline_relid)
		inline_valid = false;
}

/* Load the running inline projections (SPI connected by the caller). */
static void
LoadInlineProjections(void)
{
	Oid			nsp;
	uint64		n;
	uint64		i;
	MemoryContext old;

	if (inline_context == NULL)
		inline_context = AllocSetContextCreate(CacheMemoryContext, "ocx inline projections",
											   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(inline_context);
	inline_projections = NULL;
	n_inline = 0;

	nsp = get_namespace_oid(OCX_SCHEMA, true);
	inline_relid = OidIsValid(nsp) ? get_relname_relid("projections", nsp) : InvalidOid;
	if (!OidIsValid(inline_relid))
		return;

	/* an invalidation arriving while we load makes us load again next time */
	inline_valid = true;
	PG_TRY();
	{
		n = RunProjPlan(Q_INLINE, NULL, NULL);
	}
	PG_CATCH();
	{
		inline_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	old = MemoryContextSwitchTo(inline_context);
	inline_projections = palloc0(sizeof(InlineProjection) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		InlineProjection *p = &inline_projections[i];
		bool		isnull;
		Datum		d;

		p->name = GetText(i, 1);
		d = GetCol(i, 3, &isnull);
		p->types = TextArrayStrings(d, isnull, &p->ntypes);
		d = GetCol(i, 4, &isnull);
		p->categories = TextArrayStrings(d, isnull, &p->ncategories);
		p->owner = get_role_oid(GetText(i, 5), true);	/* InvalidOid: dropped (OX502) */
		p->handler_signature = GetText(i, 2);
		p->handler = InvalidOid;
	}
	n_inline = n;
	MemoryContextSwitchTo(old);
}

static OcxAfterAppendHook prev_after_append_hook = NULL;

/*
 * ocx_after_append_hook: after append stored a batch, in the appending
 * transaction, run the inline projections on the new events and wake the
 * worker at commit.
 */
static void
AfterAppend(const char *stream_id, int64 first_version, int nevents)
{
	MemoryContext cxt;
	MemoryContext old;
	Datum		values[3];
	uint64		n;
	uint64		i;
	int			j;

	if (prev_after_append_hook)
		prev_after_append_hook(stream_id, first_version, nevents);
	OcxWakeWorkerAtCommit();
	if (inline_valid && n_inline == 0)
		return;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx inline projections",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	if (!inline_valid)
		LoadInlineProjections();
	if (n_inline > 0)
	{
		InlineProjection *projs = inline_projections;
		int			nprojs = n_inline;
		Datum	   *events;
		char	  **types;

		MemoryContextSwitchTo(cxt);
		values[0] = CStringGetTextDatum(stream_id);
		values[1] = Int64GetDatum(first_version);
		values[2] = Int32GetDatum(nevents);
		n = RunProjPlan(Q_STREAM_EVENTS, values, NULL);
		events = palloc(sizeof(Datum) * Max(n, 1));
		types = palloc(sizeof(char *) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			bool		isnull;

			events[i] = GetCol(i, 1, &isnull);
			types[i] = GetText(i, 2);
		}
		for (j = 0; j < nprojs; j++)
		{
			InlineProjection *p = &projs[j];
			FmgrInfo	flinfo;

			for (i = 0; i < n; i++)
				if (OcxLogSelects(types[i], stream_id, p->types, p->ntypes,
								  p->categories, p->ncategories))
					break;
			if (i == n)
				continue;		/* none of its events: its author is not asked */
			/*
			 * Looked up as its owner (ocx_owner, running the append, may not
			 * see the schema), and checked: a handler that may no longer run
			 * refuses the append (OX502) rather than skipping its events.
			 */
			if (!OidIsValid(p->handler))
				p->handler = OcxResolveFunctionAs(p->handler_signature, p->owner);
			OcxUserCodeCheck(p->owner, p->handler, "inline projection handler");
			fmgr_info_cxt(p->handler, &flinfo, cxt);
			for (i = 0; i < n; i++)
				if (OcxLogSelects(types[i], stream_id, p->types, p->ntypes,
								  p->categories, p->ncategories))
				{
					CallHandler(&flinfo, p->owner, events[i]);
					OcxCount(OCX_COUNT_PROJECTION_EVENTS, 1);
				}
		}
	}
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* _PG_init: inline projections run in the append. */
void
OcxProjectionInit(void)
{
	prev_after_append_hook = ocx_after_append_hook;
	ocx_after_append_hook = AfterAppend;
}
