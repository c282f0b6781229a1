/*
 * aggregate.c
 *		ocx.load and ocx.snapshot: aggregate state rebuilt by replay, from
 *		the newest usable snapshot, optionally as of a version or a time.
 *
 * A load finds the stream's version (the ocx.streams row), the target
 * version (as_of_version, and the last event at or before as_of_time), the
 * newest snapshot at or below the target taken under the aggregate's current
 * definition (definition_version and a fingerprint of the apply function's
 * body and of the upcasters), and replays the rest with an SPI cursor over
 * the (stream_id, stream_version) index, 1000 rows per fetch.  Each event is
 * upcast in the query (ocx._upcast) and folded either by the apply function,
 * called through the FmgrInfo cached in the definition cache, or by the
 * declarative reducer (reducer.c).
 *
 * Memory stays flat: each apply call runs in a per-event context that is
 * reset every event, and the state alternates between two contexts (the new
 * state is copied into one as the other is reset).  The reducer compacts its
 * own state tree.
 *
 * Snapshots: a load whose replay crosses a multiple of snapshot_every stores
 * the state it reached, unless the server is a hot standby
 * (RecoveryInProgress), the transaction is read-only, or the user may not
 * write ocx.snapshots; ocx.snapshot stores one on request.
 *
 * No shared state; the last load's statistics are per backend.
 */
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_errors.h"
#include "ocx_security.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(ocx_load);
PG_FUNCTION_INFO_V1(ocx_snapshot);
PG_FUNCTION_INFO_V1(ocx_last_load);

#define FETCH_BATCH 1000

typedef enum LoadPlan
{
	LP_VERSION,
	LP_AS_OF_TIME,
	LP_SNAPSHOT,
	LP_EVENTS_APPLY,
	LP_EVENTS_REDUCER,
	LP_SAVE_SNAPSHOT,
	LP_REMOVED,
	NUM_LOAD_PLANS
} LoadPlan;

/* $4: include_archived, the archived partitions too (ocx._log_events) */
#define EVENT_RANGE \
	" FROM ocx._log_events($4) e WHERE e.stream_id OPERATOR(pg_catalog.=) $1" \
	" AND e.stream_version OPERATOR(pg_catalog.>) $2" \
	" AND e.stream_version OPERATOR(pg_catalog.<=) $3" \
	" ORDER BY e.stream_version"

static const struct
{
	const char *sql;
	int			nargs;
	Oid			argtypes[6];
}			load_plan_defs[NUM_LOAD_PLANS] = {
	[LP_VERSION] = {
		"SELECT s.version, s.hidden_through, s.deleted FROM ocx.streams s "
		"WHERE s.stream_id OPERATOR(pg_catalog.=) $1",
		1, {TEXTOID}
	},
	[LP_AS_OF_TIME] = {
		"SELECT pg_catalog.max(e.stream_version) FROM ocx._log_events($4) e "
		"WHERE e.stream_id OPERATOR(pg_catalog.=) $1 AND e.stream_version OPERATOR(pg_catalog.<=) $2 "
		"AND e.time OPERATOR(pg_catalog.<=) $3",
		4, {TEXTOID, INT8OID, TIMESTAMPTZOID, BOOLOID}
	},
	[LP_SNAPSHOT] = {
		"SELECT s.version, s.state FROM ocx.snapshots s "
		"WHERE s.aggregate_type OPERATOR(pg_catalog.=) $1 AND s.stream_id OPERATOR(pg_catalog.=) $2 "
		"AND s.version OPERATOR(pg_catalog.<=) $3 AND s.definition_version OPERATOR(pg_catalog.=) $4 "
		"AND s.fingerprint OPERATOR(pg_catalog.=) $5 "
		"ORDER BY s.version DESC LIMIT 1",
		5, {TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID}
	},
	[LP_EVENTS_APPLY] = {
		"SELECT e.stream_version, ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, "
		"e.source, e.type, ocx._upcast_version(e.type, e.schema_version), e.time, "
		"ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)), "
		"ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id, "
		"e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position))::ocx.event"
		EVENT_RANGE,
		4, {TEXTOID, INT8OID, INT8OID, BOOLOID}
	},
	[LP_EVENTS_REDUCER] = {
		"SELECT e.stream_version, e.type, "
		"ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)), e.time"
		EVENT_RANGE,
		4, {TEXTOID, INT8OID, INT8OID, BOOLOID}
	},
	[LP_SAVE_SNAPSHOT] = {
		"INSERT INTO ocx.snapshots AS s (aggregate_type, stream_id, version, state, "
		"definition_version, fingerprint) VALUES ($1, $2, $3, $4, $5, $6) "
		"ON CONFLICT (aggregate_type, stream_id, version) DO UPDATE "
		"SET state = excluded.state, definition_version = excluded.definition_version, "
		"fingerprint = excluded.fingerprint, taken_at = excluded.taken_at",
		6, {TEXTOID, TEXTOID, INT8OID, JSONBOID, INT8OID, INT8OID}
	},
	/* the last version retention removed (it removes prefixes): removal.c */
	[LP_REMOVED] = {
		"SELECT pg_catalog.max(r.last_version) FROM ocx.removals r "
		"WHERE r.stream_id OPERATOR(pg_catalog.=) $1 AND r.kind OPERATOR(pg_catalog.=) 'retention'",
		1, {TEXTOID}
	},
};

static SPIPlanPtr load_plans[NUM_LOAD_PLANS];

/* What the last load in this backend did (ocx.last_load()). */
static struct
{
	bool		valid;
	char		aggregate_type[OCX_AGG_KEYSIZE];
	char	   *stream_id;
	int64		version;
	int64		snapshot_version;
	int64		replayed;
	bool		snapshot_saved;
}			last_load;

/*
 * The statements of a load of the live log: ocx._log_events($4) read as
 * ocx.events ($4 then unused), so that their plans hold no archive branch
 * (src/livereads.c says why that matters for planning; here it keeps the
 * archive out of the generic plans).  Every load without include_archived
 * runs them, and on a distributed log (citus.c) every load: Citus does not
 * plan ocx._log_events($4), a SQL function over a distributed table called
 * with a parameter, and a distributed log has no archive (ocx.partition_log
 * refuses Citus).  The statements that do not read the log are the same in
 * both sets and run from this one.
 */
static SPIPlanPtr load_plans_live[NUM_LOAD_PLANS];

static SPIPlanPtr
LiveLoadPlanPtr(LoadPlan which)
{
	static const char archived[] = "ocx._log_events($4)";
	const char *sql = load_plan_defs[which].sql;
	const char *at = strstr(sql, archived);
	StringInfoData buf;
	SPIPlanPtr	plan;

	if (load_plans_live[which] != NULL || at == NULL)
		return OcxKeptPlan(&load_plans_live[which], sql,
						   load_plan_defs[which].nargs, load_plan_defs[which].argtypes);
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, sql, at - sql);
	appendStringInfoString(&buf, "ocx.events");
	appendStringInfoString(&buf, at + strlen(archived));
	plan = OcxKeptPlan(&load_plans_live[which], buf.data,
					   load_plan_defs[which].nargs, load_plan_defs[which].argtypes);
	pfree(buf.data);
	return plan;
}

/*
 * A kept plan, prepared on first use in this backend; the plan cache replans it
 * when the tables change.  archived: the load reads the archive too.
 */
static SPIPlanPtr
LoadPlanPtr(LoadPlan which, bool archived)
{
	if (!archived || OcxLogDistributed())
		return LiveLoadPlanPtr(which);
	return OcxKeptPlan(&load_plans[which], load_plan_defs[which].sql,
					   load_plan_defs[which].nargs, load_plan_defs[which].argtypes);
}

/*
 * Run a kept plan.  read_only: under the active snapshot, so that every read of
 * one load sees the same stream.
 */
static uint64
RunLoadPlan(LoadPlan which, Datum *values, bool read_only, bool archived)
{
	return OcxRunKeptPlan(LoadPlanPtr(which, archived), values, NULL, read_only);
}

/* The state of one load. */
typedef struct Load
{
	OcxAggregateDef *def;
	text	   *aggregate_type;
	text	   *stream_id;
	int64		current;		/* the stream's version */
	int64		target;
	int64		from;			/* snapshot version, 0 without one */
	Jsonb	   *state;			/* in the caller's context at the end */
	int64		replayed;
	bool		snapshot_saved;
	bool		include_archived;	/* read ocx_archive.events too */
} Load;

/*
 * May this load store a snapshot?  Never on a standby or read-only.  Any
 * caller that may load may leave a snapshot behind: ocx computes and stores
 * it with ocx_owner's rights (SaveSnapshot), nobody writes one directly.
 */
static bool
CanWriteSnapshot(void)
{
	return !(RecoveryInProgress() || XactReadOnly || IsInParallelMode());
}

/* Store state as the snapshot at the target version (replacing a stale one). */
static void
SaveSnapshot(Load *ld, Jsonb *state)
{
	Datum		values[6];
	Oid			save_user;
	int			save_sec;

	values[0] = PointerGetDatum(ld->aggregate_type);
	values[1] = PointerGetDatum(ld->stream_id);
	values[2] = Int64GetDatum(ld->target);
	values[3] = JsonbPGetDatum(state);
	values[4] = Int64GetDatum(ld->def->definition_version);
	values[5] = Int64GetDatum(ld->def->fingerprint);
	/* with ocx_owner's rights: the only role that writes ocx.snapshots */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(OcxOwnerRole(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	RunLoadPlan(LP_SAVE_SNAPSHOT, values, false, false);
	SetUserIdAndSecContext(save_user, save_sec);
	ld->snapshot_saved = true;
}

/*
 * Where a replay reads its events from.  Directly from the (stream_id,
 * stream_version) index of ocx.events when row-level security does not apply
 * to the table and the user may read all of it: no executor, no tuple
 * copies, columns read in place from the buffer.  Otherwise through an SPI
 * cursor, which enforces row-level security and column privileges.  Either
 * way each event comes out upcast.
 */
typedef struct EventSource
{
	bool		direct;
	bool		composite;		/* build ocx.event rows (for apply functions) */
	text	   *stream_id;
	int64		expect;			/* the next version (none missing: removal.c) */
	bool		check_first;	/* SPI: the first event must be at expect (archive) */
	int64		target;			/* the last version */
	/* SPI */
	Portal		portal;
	SPITupleTable *tuptable;
	uint64		ntuples;
	uint64		pos;
	MemoryContext batch_cxt;
	/* direct */
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	AttrNumber	a_position,
				a_version,
				a_type,
				a_sv,
				a_time,
				a_data,
				a_txid;
	TupleDesc	event_desc;		/* ocx.event */
	AttrNumber *event_map;		/* per ocx.event column: events attnum, 0 = cursor */
	int			maxatt;			/* deform the tuple up to here */
	Datum	   *values;
	bool	   *nulls;
} EventSource;

/* One event as the fold sees it (pointers valid until the next event). */
typedef struct EventRow
{
	int64		version;
	text	   *type;
	Jsonb	   *data;			/* upcast */
	TimestampTz time;
	Datum		event;			/* ocx.event, when composite */
} EventRow;

/* ocx.cursor(txid, global_position), from cursor.c */
extern Datum ocx_cursor_make(PG_FUNCTION_ARGS);

/* Set up a direct index scan; false when it may not be used. */
static bool
OpenDirect(Load *ld, EventSource *src)
{
	Oid			nsp = get_namespace_oid(OCX_SCHEMA, false);
	Oid			relid = get_relname_relid("events", nsp);
	Oid			idxid = get_relname_relid("events_stream_version_key", nsp);
	ScanKeyData keys[3];
	int			nkeys = 0;
	int			rls;

	if (!OidIsValid(relid) || !OidIsValid(idxid) || ld->include_archived)
		return false;
	/* personal data: the kept plans reveal it (ocx._reveal, privacy.c) */
	if (OcxPrivacyInUse())
		return false;
	rls = check_enable_rls(relid, InvalidOid, true);
	if ((rls != RLS_NONE && rls != RLS_NONE_ENV) ||
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return false;

	src->a_position = get_attnum(relid, "global_position");
	src->a_version = get_attnum(relid, "stream_version");
	src->a_type = get_attnum(relid, "type");
	src->a_sv = get_attnum(relid, "schema_version");
	src->a_time = get_attnum(relid, "time");
	src->a_data = get_attnum(relid, "data");
	src->a_txid = get_attnum(relid, "txid");

	src->maxatt = Max(Max(src->a_version, src->a_type), Max(Max(src->a_sv, src->a_time), src->a_data));

	src->rel = table_open(relid, AccessShareLock);
	src->idx = index_open(idxid, AccessShareLock);
	if (IndexRelationGetNumberOfKeyAttributes(src->idx) != 2 ||
		src->idx->rd_index->indkey.values[0] != get_attnum(relid, "stream_id") ||
		src->idx->rd_index->indkey.values[1] != src->a_version)
	{
		index_close(src->idx, AccessShareLock);
		table_close(src->rel, AccessShareLock);
		return false;
	}

	if (src->composite)
	{
		Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
											CStringGetDatum("event"), ObjectIdGetDatum(nsp));
		TupleDesc	evdesc = RelationGetDescr(src->rel);
		int			i;

		src->event_desc = lookup_rowtype_tupdesc_copy(typid, -1);
		src->event_map = palloc0(sizeof(AttrNumber) * src->event_desc->natts);
		for (i = 0; i < src->event_desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(src->event_desc, i);
			int			j;

			if (att->attisdropped)
				continue;
			if (strcmp(NameStr(att->attname), "cursor") == 0)
				continue;		/* 0: computed */
			for (j = 0; j < evdesc->natts; j++)
				if (!TupleDescAttr(evdesc, j)->attisdropped &&
					strcmp(NameStr(TupleDescAttr(evdesc, j)->attname), NameStr(att->attname)) == 0)
					src->event_map[i] = j + 1;
			if (src->event_map[i] == 0)
				elog(ERROR, "ocx: column \"%s\" of ocx.event is not in ocx.events", NameStr(att->attname));
		}
		src->maxatt = RelationGetDescr(src->rel)->natts;
		src->values = palloc(sizeof(Datum) * src->event_desc->natts);
		src->nulls = palloc(sizeof(bool) * src->event_desc->natts);
	}

	/*
	 * Bounds only where they cut something: versions start at 1, and under
	 * our snapshot the stream ends at the version its ocx.streams row shows
	 * (both are written by the same transactions).  Every key is checked on
	 * every index tuple.
	 */
	ScanKeyEntryInitialize(&keys[nkeys++], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   src->idx->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(ld->stream_id));
	if (ld->from > 0)
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 2, BTGreaterStrategyNumber, InvalidOid,
							   InvalidOid, F_INT8GT, Int64GetDatum(ld->from));
	if (ld->target < ld->current)
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 2, BTLessEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_INT8LE, Int64GetDatum(ld->target));
	src->slot = table_slot_create(src->rel, NULL);
	src->scan = index_beginscan(src->rel, src->idx, GetActiveSnapshot(), nkeys, 0);
	index_rescan(src->scan, keys, nkeys, NULL, 0);
	src->direct = true;
	return true;
}

/* OX642: the load needs events from version "from" on that were removed. */
static void
RaiseEventsRemoved(text *stream_id, int64 from)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_EVENTS_REMOVED),
			 errmsg("events of stream \"%s\" from version " INT64_FORMAT " on were removed",
					text_to_cstring(stream_id), from),
			 errdetail("Retention removed them, and no snapshot of this aggregate covers them."),
			 errhint("Take ocx.snapshot() of the aggregate before retention reaches a stream's early events (docs/retention.md).")));
}

/* Open the events (from, target] of the stream: directly if allowed, else SPI. */
static void
OpenSource(Load *ld, EventSource *src, bool composite)
{
	memset(src, 0, sizeof(*src));
	src->composite = composite;
	src->stream_id = ld->stream_id;
	src->expect = ld->from + 1;
	src->target = ld->target;
	if (!OpenDirect(ld, src))
	{
		Datum		args[4];
		Oid			save_user;
		int			save_sec;
		bool		isnull;
		int64		removed;

		/* what retention removed, read as ocx_owner (the caller may not see ocx.removals) */
		args[0] = PointerGetDatum(ld->stream_id);
		GetUserIdAndSecContext(&save_user, &save_sec);
		SetUserIdAndSecContext(OcxOwnerRole(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
		RunLoadPlan(LP_REMOVED, args, true, false);
		SetUserIdAndSecContext(save_user, save_sec);
		removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (!isnull && removed > ld->from)
			RaiseEventsRemoved(ld->stream_id, ld->from + 1);

		args[1] = Int64GetDatum(ld->from);
		args[2] = Int64GetDatum(ld->target);
		args[3] = BoolGetDatum(ld->include_archived);
		src->check_first = !ld->include_archived;
		src->portal = SPI_cursor_open(NULL, LoadPlanPtr(composite ? LP_EVENTS_APPLY : LP_EVENTS_REDUCER,
													  ld->include_archived),
									  args, NULL, true);
		src->batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx load batch",
											   ALLOCSET_DEFAULT_SIZES);
	}
}

/*
 * The data of an event at schema version *sv, upcast (in the current
 * context); *sv becomes the version it was brought to.
 */
static Jsonb *
UpcastRow(text *type, int32 *sv, Jsonb *data)
{
	OcxEventTypeDef *def;
	int32		target;

	if (!OcxAnyUpcasting())
		return data;
	def = OcxLookupEventType(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (def == NULL || *sv >= def->schema_version)
		return data;
	target = OcxUpcastTarget(def, *sv);
	if (target == *sv)
		return data;
	data = OcxUpcastData(def, *sv, data);
	*sv = target;
	return data;
}

/*
 * OX683: the load needs events from version "from" on that ocx.archive()
 * moved out of the live log.
 */
static void
RaiseEventsArchived(text *stream_id, int64 from)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_EVENTS_ARCHIVED),
			 errmsg("events of stream \"%s\" from version " INT64_FORMAT " on are archived",
					text_to_cstring(stream_id), from),
			 errdetail("ocx.archive() moved them to ocx_archive.events, and no snapshot of this aggregate covers them."),
			 errhint("Load with include_archived => true, or take ocx.snapshot() of the aggregate before archiving (docs/scaling.md).")));
}

/* The next event, or false at the end; allocates in the current context. */
static bool
NextEventRow(EventSource *src, EventRow *row)
{
	if (src->direct)
	{
		TupleTableSlot *slot = src->slot;
		int32		sv;

		if (!index_getnext_slot(src->scan, ForwardScanDirection, slot))
			return false;
		slot_getsomeattrs(slot, src->maxatt);
		row->version = DatumGetInt64(slot->tts_values[src->a_version - 1]);
		row->type = DatumGetTextPP(slot->tts_values[src->a_type - 1]);
		row->time = DatumGetTimestampTz(slot->tts_values[src->a_time - 1]);
		sv = DatumGetInt32(slot->tts_values[src->a_sv - 1]);
		row->data = UpcastRow(row->type, &sv, DatumGetJsonbP(slot->tts_values[src->a_data - 1]));
		if (src->composite)
		{
			TupleDesc	desc = src->event_desc;
			int			i;

			for (i = 0; i < desc->natts; i++)
			{
				AttrNumber	a = src->event_map[i];

				if (TupleDescAttr(desc, i)->attisdropped)
				{
					src->nulls[i] = true;
					continue;
				}
				src->nulls[i] = false;
				if (a == 0)
					src->values[i] = DirectFunctionCall2(ocx_cursor_make,
														 slot->tts_values[src->a_txid - 1],
														 slot->tts_values[src->a_position - 1]);
				else if (a == src->a_data)
					src->values[i] = JsonbPGetDatum(row->data);
				else if (a == src->a_sv)
					src->values[i] = Int32GetDatum(sv);
				else
				{
					src->values[i] = slot->tts_values[a - 1];
					src->nulls[i] = slot->tts_isnull[a - 1];
				}
			}
			/* heap_form_tuple stamps the row type; toasted values are flattened */
			row->event = HeapTupleGetDatum(heap_form_tuple(desc, src->values, src->nulls));
		}
		return true;
	}
	else
	{
		HeapTuple	tup;
		TupleDesc	desc;
		bool		isnull;

		if (src->tuptable == NULL || src->pos >= src->ntuples)
		{
			MemoryContext old;

			if (src->tuptable)
				SPI_freetuptable(src->tuptable);
			/* what a fetch allocates in the current context goes with the batch */
			MemoryContextReset(src->batch_cxt);
			old = MemoryContextSwitchTo(src->batch_cxt);
			SPI_cursor_fetch(src->portal, true, FETCH_BATCH);
			MemoryContextSwitchTo(old);
			/* an apply function may run SPI too: keep our own pointers */
			src->tuptable = SPI_tuptable;
			src->ntuples = SPI_processed;
			src->pos = 0;
			if (src->ntuples == 0)
				return false;
		}
		tup = src->tuptable->vals[src->pos];
		desc = src->tuptable->tupdesc;
		src->pos++;
		row->version = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		if (src->composite)
			row->event = SPI_getbinval(tup, desc, 2, &isnull);
		else
		{
			row->type = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));
			row->data = DatumGetJsonbP(SPI_getbinval(tup, desc, 3, &isnull));
			row->time = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		}
		return true;
	}
}

/*
 * The next event, or false at the end.  On the direct path (no row-level
 * security, the whole stream is visible) a version missing between the
 * snapshot (or the start) and the target was removed by retention: the load
 * cannot be right, OX642.  Through SPI, where row-level security may hide
 * events on purpose, OpenSource asked ocx.removals instead.
 */
static bool
NextEvent(EventSource *src, EventRow *row)
{
	bool		found = NextEventRow(src, row);

	if (src->direct && (found ? row->version != src->expect : src->expect <= src->target))
		RaiseEventsRemoved(src->stream_id, src->expect);
	/* through SPI a stream is visible whole or not at all: a gap at its start is the archive */
	if (src->check_first && (found ? row->version != src->expect : src->expect <= src->target))
		RaiseEventsArchived(src->stream_id, src->expect);
	src->check_first = false;
	if (found)
		src->expect = row->version + 1;
	return found;
}

/* Release what OpenSource took (locks, pins, the cursor). */
static void
CloseSource(EventSource *src)
{
	if (src->direct)
	{
		index_endscan(src->scan);
		ExecDropSingleTupleTableSlot(src->slot);
		index_close(src->idx, AccessShareLock);
		table_close(src->rel, AccessShareLock);
		if (src->event_desc)
			FreeTupleDesc(src->event_desc);
	}
	else
	{
		if (src->tuptable)
			SPI_freetuptable(src->tuptable);
		SPI_cursor_close(src->portal);
		MemoryContextDelete(src->batch_cxt);
	}
}

/* Replay with the apply function, called through the cached FmgrInfo. */
static Jsonb *
ReplayApply(Load *ld, Jsonb *initial, MemoryContext callcxt)
{
	Jsonb	   *volatile state = initial;
	OcxAggregateDef *def = ld->def;
	MemoryContext event_cxt,
				state_cxt[2],
				old;
	volatile int cur = 0;
	volatile bool in_apply = false;
	volatile int64 at_version = 0;
	EventSource src;
	int			scope;

	event_cxt = AllocSetContextCreate(callcxt, "ocx load event", ALLOCSET_DEFAULT_SIZES);
	state_cxt[0] = AllocSetContextCreate(callcxt, "ocx load state", ALLOCSET_DEFAULT_SIZES);
	state_cxt[1] = AllocSetContextCreate(callcxt, "ocx load state", ALLOCSET_DEFAULT_SIZES);
	/* the apply function runs as the aggregate's definer, if it still may */
	OcxUserCodeCheck(def->definer, def->apply, "apply function");
	scope = OcxUserCodeScopeBegin();
	OpenSource(ld, &src, true);

	PG_TRY();
	{
		for (;;)
		{
			EventRow	row;
			Datum		result;
			OcxUserCall call;
			LOCAL_FCINFO(fcinfo, 2);

			CHECK_FOR_INTERRUPTS();
			MemoryContextReset(event_cxt);
			old = MemoryContextSwitchTo(event_cxt);
			if (!NextEvent(&src, &row))
			{
				MemoryContextSwitchTo(old);
				break;
			}
			at_version = row.version;
			InitFunctionCallInfoData(*fcinfo, &def->apply_flinfo, 2, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = JsonbPGetDatum(state);
			fcinfo->args[0].isnull = false;
			fcinfo->args[1].value = row.event;
			fcinfo->args[1].isnull = false;
			in_apply = true;
			OcxUserCodeBegin(def->definer, &call);
			result = FunctionCallInvoke(fcinfo);
			OcxUserCodeEnd(&call);
			in_apply = false;
			if (fcinfo->isnull)
				ereport(ERROR,
						(errcode(ERRCODE_OCX_APPLY_FAILED),
						 errmsg("apply function %s of aggregate \"%s\" returned null at stream version " INT64_FORMAT,
								format_procedure(def->apply), def->name, at_version),
						 errhint("An apply function returns the new state, a JSON object.")));

			/* keep the new state; the previous one's context is reused */
			cur = 1 - cur;
			MemoryContextReset(state_cxt[cur]);
			MemoryContextSwitchTo(state_cxt[cur]);
			state = DatumGetJsonbPCopy(result);
			MemoryContextSwitchTo(old);
			ld->replayed++;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char		sqlstate[6];

		if (!in_apply)
			PG_RE_THROW();
		MemoryContextSwitchTo(callcxt);
		edata = CopyErrorData();
		/* cancels, shutdowns and resource errors stay what they are */
		if (edata->elevel > ERROR ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			PG_RE_THROW();
		FlushErrorState();
		strlcpy(sqlstate, unpack_sql_state(edata->sqlerrcode), sizeof(sqlstate));
		ereport(ERROR,
				(errcode(ERRCODE_OCX_APPLY_FAILED),
				 errmsg("apply function %s of aggregate \"%s\" failed at version " INT64_FORMAT " of stream \"%s\"",
						format_procedure(def->apply), def->name, at_version,
						text_to_cstring(ld->stream_id)),
				 errdetail("%s (SQLSTATE %s)", edata->message, sqlstate),
				 errhint("Fix the apply function, or the event it cannot apply.")));
	}
	PG_END_TRY();
	CloseSource(&src);
	OcxUserCodeScopeEnd(scope);
	return state;
}

/* Replay with the declarative reducer (reducer.c): no function call per event. */
static Jsonb *
ReplayReducer(Load *ld, Jsonb *state, MemoryContext callcxt)
{
	MemoryContext event_cxt = AllocSetContextCreate(callcxt, "ocx load event",
													ALLOCSET_DEFAULT_SIZES);
	OcxFold    *fold = OcxFoldBegin(ld->def->reducer, state);
	EventSource src;
	EventRow	row;
	Jsonb	   *result;

	OpenSource(ld, &src, false);
	for (;;)
	{
		MemoryContext old;
		bool		more;

		CHECK_FOR_INTERRUPTS();
		/* the fold copies what it keeps: reset now and then, not per event */
		if (MemoryContextMemAllocated(event_cxt, false) > 64 * 1024)
			MemoryContextReset(event_cxt);
		old = MemoryContextSwitchTo(event_cxt);
		more = NextEvent(&src, &row);
		MemoryContextSwitchTo(old);
		if (!more)
			break;
		OcxFoldEvent(fold, row.type, row.data, row.version, row.time, ld->stream_id);
		ld->replayed++;
	}
	CloseSource(&src);
	result = OcxFoldEnd(fold);
	MemoryContextDelete(event_cxt);
	return result;
}

/*
 * The core of load and snapshot.  Returns the state in the caller's context;
 * *version is the version it reflects.  force_snapshot stores a snapshot
 * whatever snapshot_every says (ocx.snapshot).
 */
static Jsonb *
LoadAggregate(FunctionCallInfo fcinfo, bool force_snapshot, int64 *version)
{
	text	   *agg;
	text	   *sid;
	Load		ld;
	MemoryContext callcxt,
				old,
				caller = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_UNKNOWN_AGGREGATE),
				 errmsg("aggregate type must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id must not be null")));
	agg = PG_GETARG_TEXT_PP(0);
	sid = PG_GETARG_TEXT_PP(1);
	OcxCheckStreamId(sid);
	if (!force_snapshot && !PG_ARGISNULL(2) && PG_GETARG_INT64(2) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("as_of_version must not be negative"),
				 errdetail("Got " INT64_FORMAT ".", PG_GETARG_INT64(2))));

	memset(&ld, 0, sizeof(ld));
	/* pinned from here on: the definition cannot be freed while we fold */
	OcxDefCachePin();
	ld.def = OcxLookupAggregate(VARDATA_ANY(agg), VARSIZE_ANY_EXHDR(agg));
	if (ld.def == NULL)
	{
		OcxDefCacheUnpin();
		ereport(ERROR,
				(errcode(ERRCODE_OCX_UNKNOWN_AGGREGATE),
				 errmsg("aggregate type \"%s\" is not defined", text_to_cstring(agg)),
				 errhint("Define it with ocx.define_aggregate.")));
	}
	if (OidIsValid(ld.def->apply) && !ld.def->apply_ok)
	{
		bool		exists = ld.def->apply_exists;
		char	   *name = pstrdup(ld.def->name);

		OcxDefCacheUnpin();
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_AGGREGATE),
				 exists ?
				 errmsg("the apply function of aggregate \"%s\" has the wrong signature", name) :
				 errmsg("the apply function of aggregate \"%s\" no longer exists", name),
				 exists ?
				 errdetail("It must be a plain function (jsonb, ocx.event) returning jsonb.") : 0,
				 errhint("Define the aggregate again with ocx.define_aggregate.")));
	}
	if (!OidIsValid(ld.def->apply) && ld.def->reducer == NULL)
	{
		char	   *name = pstrdup(ld.def->name);
		char	   *why = pstrdup(ld.def->reducer_error ? ld.def->reducer_error : "no rules");

		OcxDefCacheUnpin();
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_AGGREGATE),
				 errmsg("the reducer of aggregate \"%s\" in ocx.aggregates is invalid", name),
				 errdetail("%s", why),
				 errhint("Define the aggregate again with ocx.define_aggregate.")));
	}
	ld.aggregate_type = agg;
	ld.stream_id = sid;
	/* ocx.load's fifth argument; ocx.snapshot reads the live log */
	ld.include_archived = !force_snapshot && PG_NARGS() > 4 && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);

	callcxt = AllocSetContextCreate(CurrentMemoryContext, "ocx load", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(callcxt);

	PG_TRY();
	{
		Datum		args[5];
		int64		current;
		int64		hidden;
		bool		isnull;
		Jsonb	   *state;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "ocx: SPI_connect failed");

		args[0] = PointerGetDatum(sid);
		if (RunLoadPlan(LP_VERSION, args, true, false) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_STREAM_NOT_FOUND),
					 errmsg("stream \"%s\" does not exist", text_to_cstring(sid)),
					 errhint("Append to the stream first; ocx.stream_version returns 0 for a missing stream.")));
		current = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		hidden = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)))
			OcxRaiseStreamDeleted(text_to_cstring(sid));
		ld.target = ld.current = current;

		if (!force_snapshot && !PG_ARGISNULL(2))
		{
			int64		asof = PG_GETARG_INT64(2);

			if (asof > current)
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
						 errmsg("as_of_version " INT64_FORMAT " is beyond the end of stream \"%s\"",
								asof, text_to_cstring(sid)),
						 errdetail("The stream is at version " INT64_FORMAT ".", current)));
			ld.target = asof;
		}
		if (!force_snapshot && !PG_ARGISNULL(3))
		{
			args[1] = Int64GetDatum(ld.target);
			args[2] = PG_GETARG_DATUM(3);
			args[3] = BoolGetDatum(ld.include_archived);
			RunLoadPlan(LP_AS_OF_TIME, args, true, ld.include_archived);
			args[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			ld.target = isnull ? 0 : DatumGetInt64(args[0]);
			args[0] = PointerGetDatum(sid);
		}

		/* the newest snapshot at or below the target, under this definition */
		state = ld.def->initial_state;
		if (ld.target > 0)
		{
			args[0] = PointerGetDatum(agg);
			args[1] = PointerGetDatum(sid);
			args[2] = Int64GetDatum(ld.target);
			args[3] = Int64GetDatum(ld.def->definition_version);
			args[4] = Int64GetDatum(ld.def->fingerprint);
			if (RunLoadPlan(LP_SNAPSHOT, args, true, false) > 0)
			{
				HeapTuple	tup = SPI_tuptable->vals[0];

				ld.from = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
				state = DatumGetJsonbPCopy(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
			}
		}
		/* a soft-deleted stream starts again after its hidden versions (a snapshot at or below them is of the old stream) */
		if (hidden > 0 && ld.from <= hidden)
		{
			state = ld.def->initial_state;
			ld.from = Min(hidden, ld.target);
		}

		if (ld.target > ld.from)
		{
			if (OidIsValid(ld.def->apply))
				state = ReplayApply(&ld, state, callcxt);
			else
				state = ReplayReducer(&ld, state, callcxt);
		}

		if (ld.target > 0 && ld.target > ld.from &&
			(force_snapshot ||
			 (ld.def->snapshot_every > 0 &&
			  ld.target / ld.def->snapshot_every > ld.from / ld.def->snapshot_every &&
			  CanWriteSnapshot())))
			SaveSnapshot(&ld, state);

		MemoryContextSwitchTo(caller);
		result = DatumGetJsonbPCopy(JsonbPGetDatum(state));
		MemoryContextSwitchTo(callcxt);

		SPI_finish();
	}
	PG_CATCH();
	{
		OcxDefCacheUnpin();
		PG_RE_THROW();
	}
	PG_END_TRY();
	OcxDefCacheUnpin();

	/* statistics of the last load, for ocx.last_load() */
	last_load.valid = true;
	strlcpy(last_load.aggregate_type, text_to_cstring(agg), sizeof(last_load.aggregate_type));
	if (last_load.stream_id)
		pfree(last_load.stream_id);
	last_load.stream_id = MemoryContextStrdup(TopMemoryContext, text_to_cstring(sid));
	last_load.version = ld.target;
	last_load.snapshot_version = ld.from;
	last_load.replayed = ld.replayed;
	last_load.snapshot_saved = ld.snapshot_saved;
	OcxCount(OCX_COUNT_REPLAYS, 1);
	OcxCount(OCX_COUNT_REPLAY_EVENTS, ld.replayed);
	if (ld.from > 0)
		OcxCount(OCX_COUNT_SNAPSHOT_HITS, 1);
	if (ld.snapshot_saved)
		OcxCount(OCX_COUNT_SNAPSHOTS_WRITTEN, 1);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(callcxt);
	*version = ld.target;
	return result;
}

/*
 * ocx.load(aggregate_type, stream_id, as_of_version, as_of_time)
 *		-> (state jsonb, version bigint)
 */
Datum
ocx_load(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		version;
	Jsonb	   *state;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ocx: return type must be a row type");
	state = LoadAggregate(fcinfo, false, &version);
	values[0] = JsonbPGetDatum(state);
	values[1] = Int64GetDatum(version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ocx.snapshot(aggregate_type, stream_id) -> bigint: store the current state. */
Datum
ocx_snapshot(PG_FUNCTION_ARGS)
{
	int64		version;

	if (RecoveryInProgress() || XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_SNAPSHOT_READ_ONLY),
				 errmsg("cannot take a snapshot in a read-only transaction"),
				 errdetail(RecoveryInProgress() ? "The server is a hot standby." :
						   "The transaction is read-only."),
				 errhint("Take snapshots on the primary; loads on a standby use the snapshots replicated from it.")));
	LoadAggregate(fcinfo, true, &version);
	PG_RETURN_INT64(version);
}

/*
 * ocx.last_load() -> (aggregate_type, stream_id, version, snapshot_version,
 * replayed, snapshot_saved): what the backend's last load did, to see that
 * snapshots are used.
 */
Datum
ocx_last_load(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ocx: return type must be a row type");
	if (!last_load.valid)
		PG_RETURN_NULL();
	values[0] = CStringGetTextDatum(last_load.aggregate_type);
	values[1] = CStringGetTextDatum(last_load.stream_id);
	values[2] = Int64GetDatum(last_load.version);
	values[3] = Int64GetDatum(last_load.snapshot_version);
	values[4] = Int64GetDatum(last_load.replayed);
	values[5] = BoolGetDatum(last_load.snapshot_saved);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
