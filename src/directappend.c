/*
 * directappend.c
 *		The direct write of an append: the stream row and the event rows
 *		written with the table and index access methods, no SQL statement.
 *
 * append.c's single-event path runs one SPI statement (the stream row's
 * upsert or conditional UPDATE and the event's INSERT in one CTE), a batch
 * two (the stream row, then an INSERT from unnest of parameter arrays).  Most of
 * an append's time went to what that statement costs on top of the rows it
 * writes: starting an executor for two ModifyTable nodes, the ON CONFLICT
 * arbiter probe, the CHECK expressions read again, plan cache revalidation,
 * row-level security, the statement trigger's WHEN clause
 * (docs/performance.md).  This file writes the same two rows directly:
 *
 *	- the stream row is found by a probe of streams_pkey with a fresh
 *	  snapshot (taken after append.c's stream-order lock, so every earlier
 *	  append to the stream has committed or rolled back, and the row found
 *	  is its latest version), checked (tenant, tombstone, expected version)
 *	  and updated in place (a HOT update when the page has room) without a
 *	  tuple lock first, or inserted when absent; an update that meets a
 *	  concurrent change by a writer that is not an appender leaves the
 *	  append to the statement, which waits and checks again as READ
 *	  COMMITTED's UPDATE does;
 *	- the event rows are formed in C and inserted with their index entries
 *	  (a batch with table_multi_insert), hashed in C when the chain is on.
 *	  Tags go into the tags column as the statement stores them (sorted,
 *	  distinct, a one-dimensional text[]; NULL when none) and into the
 *	  partial GIN index events_tags_idx through the same index insert.  An
 *	  event id, given or generated, goes into events_source_event_id_key
 *	  with the immediate unique check the statement's INSERT makes: a
 *	  duplicate raises the same 23505 on that constraint, after waiting for
 *	  an in-flight inserter of the same key, as the statement does.  The
 *	  caller runs an append with given ids in a subtransaction and handles
 *	  that error as it does the statement's (append.c, AppendWithIds).
 *
 * It does only what the SQL statement would do, and only when it knows all
 * of it: OcxDirectAppend returns OCX_DIRECT_UNUSABLE, having written
 * nothing, unless
 *
 *	- the transaction is READ COMMITTED (the other levels keep the
 *	  statement, with its serialization-failure handling);
 *	- both tables are plain heap tables with the columns, CHECK constraints
 *	  and triggers ocx creates and nothing else that fires on an insert or
 *	  update: the immutability triggers (UPDATE, DELETE, TRUNCATE of events:
 *	  not involved), the tombstone trigger (reproduced here: append.c
 *	  raises OX641 for a deleted stream) and events_notify_immediate, whose WHEN clause is
 *	  false unless ocx.notify_mode = immediate (then the statement runs,
 *	  and the trigger with it).  A logical subscriber's local-order triggers
 *	  or any user trigger send the append down the statement path;
 *	- row-level security is on for ocx_owner with exactly the tenant
 *	  policies of a single node (named, permissive, for all commands and
 *	  roles, reading ocx.tenant through a sub-select).  The row written
 *	  carries the session's tenant, which is what their WITH CHECK accepts;
 *	  a stream row of another tenant, which the statement would not see,
 *	  raises OX012 as the statement path does.  ocx.distribute() replaces
 *	  the policies with ones without a sub-select, so a Citus coordinator's
 *	  distributed tables always take the statement path;
 *	- the current user holds SELECT, INSERT and UPDATE on both tables;
 *	- a tagged event finds the tags column (a schema before ALTER EXTENSION
 *	  UPDATE has none: the statement then raises what it raises).
 *
 * Creating a stream inserts its row without ON CONFLICT: every writer that
 * creates stream rows holds the stream-order lock first (append.c), so a
 * row absent under a snapshot taken after that lock stays absent.
 */
#include "postgres.h"

#include "ocx.h"
#include "ocx_bus.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "rewrite/rowsecurity.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_direct_appends);

/* appends this backend wrote directly (ocx._direct_appends(), for tests) */
static int64 direct_appends = 0;

/* the columns of ocx.events and ocx.streams this file knows */
typedef enum EventCol
{
	EC_GLOBAL_POSITION,
	EC_STREAM_ID,
	EC_STREAM_VERSION,
	EC_EVENT_ID,
	EC_SOURCE,
	EC_TYPE,
	EC_SCHEMA_VERSION,
	EC_TIME,
	EC_DATA,
	EC_METADATA,
	EC_CORRELATION_ID,
	EC_CAUSATION_ID,
	EC_TENANT_ID,
	EC_TXID,
	EC_TAGS,
	EC_HASH,
	EC_COUNT
} EventCol;

static const char *const event_cols[EC_COUNT] = {
	"global_position", "stream_id", "stream_version", "event_id", "source", "type",
	"schema_version", "time", "data", "metadata", "correlation_id", "causation_id",
	"tenant_id", "txid", "tags", "hash"
};

typedef enum StreamCol
{
	SC_STREAM_ID,
	SC_VERSION,
	SC_CATEGORY,
	SC_TENANT_ID,
	SC_CREATED_AT,
	SC_UPDATED_AT,
	SC_DELETED,
	SC_HEAD,
	SC_HIDDEN_THROUGH,
	SC_COUNT
} StreamCol;

static const char *const stream_cols[SC_COUNT] = {
	"stream_id", "version", "category", "tenant_id", "created_at", "updated_at",
	"deleted", "head", "hidden_through"
};

/* the CHECK constraints of each table; their conditions hold by construction here */
static const char *const event_checks[] = {
	"events_stream_version_check", "events_schema_version_check", NULL
};
static const char *const stream_checks[] = {
	"streams_version_check", "streams_hidden_through_check", NULL
};

/*
 * Map the table's attributes to the known columns: map[col] = attnum, 0
 * when the table lacks it (tags and hash before ALTER EXTENSION UPDATE).
 * False when the table has a column this file does not know, a generated
 * column, or lacks a required one (required: the first nrequired).
 */
static bool
MapColumns(Relation rel, const char *const *names, int ncols, int nrequired,
		   AttrNumber *map)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i,
				c;

	memset(map, 0, sizeof(AttrNumber) * ncols);
	if (desc->constr && desc->constr->has_generated_stored)
		return false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		for (c = 0; c < ncols; c++)
			if (strcmp(NameStr(att->attname), names[c]) == 0)
				break;
		if (c == ncols || map[c] != 0)
			return false;
		map[c] = att->attnum;
	}
	for (c = 0; c < nrequired; c++)
		if (map[c] == 0)
			return false;
	return true;
}

/* Are the table's CHECK constraints exactly the named ones? */
static bool
ChecksAre(Relation rel, const char *const *names)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			n = 0,
				i,
				j;

	while (names[n] != NULL)
		n++;
	if (constr == NULL)
		return n == 0;
	if (constr->num_check != n)
		return false;
	for (i = 0; i < constr->num_check; i++)
	{
		for (j = 0; j < n; j++)
			if (strcmp(constr->check[i].ccname, names[j]) == 0)
				break;
		if (j == n)
			return false;
	}
	return true;
}

/* Does trigger tg fire in this session (session_replication_role)? */
static bool
TriggerFires(Trigger *tg)
{
	if (tg->tgenabled == TRIGGER_DISABLED)
		return false;
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return tg->tgenabled == TRIGGER_FIRES_ON_REPLICA ||
			tg->tgenabled == TRIGGER_FIRES_ALWAYS;
	return tg->tgenabled == TRIGGER_FIRES_ON_ORIGIN ||
		tg->tgenabled == TRIGGER_FIRES_ALWAYS;
}

/*
 * The triggers of ocx.events: none on INSERT but events_notify_immediate
 * while its WHEN clause (ocx.notify_mode = immediate) is false.
 */
static bool
EventTriggersKnown(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;
	int			i;

	if (td == NULL)
		return true;
	for (i = 0; i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (!TRIGGER_FOR_INSERT(tg->tgtype))
			continue;
		if (strcmp(tg->tgname, "events_notify_immediate") == 0 &&
			TRIGGER_FOR_AFTER(tg->tgtype) && !TRIGGER_FOR_ROW(tg->tgtype) &&
			(ocx_notify_mode != OCX_NOTIFY_IMMEDIATE || !TriggerFires(tg)))
			continue;
		return false;
	}
	return true;
}

/*
 * The triggers of ocx.streams: only the tombstone trigger, firing, which
 * this file reproduces.  Without it (or with it disabled) the statement
 * path decides.
 */
static bool
StreamTriggersKnown(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;
	bool		tombstone = false;
	int			i;

	if (td == NULL)
		return false;
	for (i = 0; i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (!TRIGGER_FOR_INSERT(tg->tgtype) && !TRIGGER_FOR_UPDATE(tg->tgtype))
			continue;
		if (strcmp(tg->tgname, "streams_tombstone") == 0 &&
			TRIGGER_FOR_ROW(tg->tgtype) && TRIGGER_FOR_BEFORE(tg->tgtype) &&
			!TRIGGER_FOR_INSERT(tg->tgtype) && TriggerFires(tg))
		{
			tombstone = true;
			continue;
		}
		return false;
	}
	return tombstone;
}

/*
 * Row-level security as ocx sets it up on one node: enabled for the
 * current user, one permissive policy of the given name for all commands
 * and PUBLIC whose expressions have a sub-select (ocx.tenant read once).
 */
static bool
TenantPolicyOnly(Relation rel, const char *name)
{
	RowSecurityPolicy *p;
	ArrayType  *roles;

	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED ||
		rel->rd_rsdesc == NULL || list_length(rel->rd_rsdesc->policies) != 1)
		return false;
	p = (RowSecurityPolicy *) linitial(rel->rd_rsdesc->policies);
	if (strcmp(p->policy_name, name) != 0 || !p->permissive || p->polcmd != '*' ||
		!p->hassublinks || p->roles == NULL)
		return false;
	roles = p->roles;
	if (ARR_NDIM(roles) != 1 || ARR_DIMS(roles)[0] != 1 || ARR_HASNULL(roles) ||
		ARR_ELEMTYPE(roles) != OIDOID)
		return false;
	/* no nulls: the data follows the one-dimension header */
	return *(Oid *) ((char *) roles + ARR_OVERHEAD_NONULLS(1)) == ACL_ID_PUBLIC;
}

static bool
Usable(Relation events, Relation streams, AttrNumber *emap, AttrNumber *smap)
{
	AclMode		need = ACL_SELECT | ACL_INSERT | ACL_UPDATE;
	Oid			user = GetUserId();

	return events->rd_rel->relkind == RELKIND_RELATION &&
		streams->rd_rel->relkind == RELKIND_RELATION &&
		MapColumns(events, event_cols, EC_COUNT, EC_TAGS, emap) &&
		MapColumns(streams, stream_cols, SC_COUNT, SC_COUNT, smap) &&
		ChecksAre(events, event_checks) && ChecksAre(streams, stream_checks) &&
		EventTriggersKnown(events) && StreamTriggersKnown(streams) &&
		TenantPolicyOnly(events, "events_tenant") &&
		TenantPolicyOnly(streams, "streams_tenant") &&
		pg_class_aclmask(RelationGetRelid(events), user, need, ACLMASK_ALL) == need &&
		pg_class_aclmask(RelationGetRelid(streams), user, need, ACLMASK_ALL) == need;
}

/* The stream row's tenant is the session's (the policies' USING clause)? */
static bool
SameTenant(TupleTableSlot *slot, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attnum, &isnull);

	return OcxTenantIsSessions(d, isnull);
}

/* A relation and its indexes opened for inserts, for one append. */
typedef struct Target
{
	Relation	rel;
	ResultRelInfo rri;
	EState	   *estate;
	TupleTableSlot *slot;		/* virtual: the row to write */
} Target;

static void
OpenTarget(Target *t, Relation rel, EState *estate)
{
	t->rel = rel;
	t->estate = estate;
	InitResultRelInfo(&t->rri, rel, 1, NULL, 0);
	ExecOpenIndices(&t->rri, false);
	t->slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
}

static void
CloseTarget(Target *t)
{
	ExecDropSingleTupleTableSlot(t->slot);
	ExecCloseIndices(&t->rri);
}

/* The NOT NULL columns of rel have a value in slot (values set, not stored). */
static void
NotNullChecked(Relation rel, TupleTableSlot *slot)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attnotnull && slot->tts_isnull[i] && !att->attisdropped)
			elog(ERROR, "ocx: direct append left column \"%s\" of \"%s\" null",
				 NameStr(att->attname), RelationGetRelationName(rel));
	}
}

/* Store t's slot (its values and nulls set by the caller) as a tuple of its own memory. */
static void
StoreRow(Target *t)
{
	NotNullChecked(t->rel, t->slot);
	ExecStoreVirtualTuple(t->slot);
	ExecMaterializeSlot(t->slot);
}

/* An empty row in t's slot: every column null. */
static void
EmptyRow(Target *t)
{
	int			natts = RelationGetDescr(t->rel)->natts;

	ExecClearTuple(t->slot);
	memset(t->slot->tts_values, 0, sizeof(Datum) * natts);
	memset(t->slot->tts_isnull, true, sizeof(bool) * natts);
}

static void
SetCol(Target *t, AttrNumber attnum, Datum value)
{
	t->slot->tts_values[attnum - 1] = value;
	t->slot->tts_isnull[attnum - 1] = false;
}

/* the hashes of the events at first .. first + n - 1 after prev, when chaining */
static Datum *
EventHashes(bool chain, bytea *prev, const char *sid, int64 first, OcxNewEvent *events,
			int n, TimestampTz now)
{
	Datum	   *h = NULL;

	if (chain)
	{
		h = palloc(sizeof(Datum) * n);
		OcxChainBatch(prev, sid, first, events, n, now, h);
	}
	return h;
}

/*
 * Event rows written with one table_multi_insert at most.  No
 * BulkInsertState: its ring of buffers made 100-event appends slower than
 * the statement (measured), where the shared buffers serve the next call.
 */
#define DIRECT_CHUNK 100

/*
 * Insert the events at versions first .. first + n - 1 with their index
 * entries; returns the global position of the last.
 */
static int64
InsertEventRows(Target *et, AttrNumber *emap, Oid seqid, text *stream_id, int64 first,
				OcxNewEvent *events, int n, Datum *hashes, TimestampTz now)
{
	const char *tenant = OcxSessionTenant();
	Datum		txid = FullTransactionIdGetDatum(FullTransactionIdFromU64(OcxLogTxid()));
	Datum		tenant_d = tenant ? CStringGetTextDatum(tenant) : (Datum) 0;
	TupleDesc	desc = RelationGetDescr(et->rel);
	TupleTableSlot **slots;
	CommandId	cid = GetCurrentCommandId(true);
	int64		position = 0;
	int			done,
				i;

	if (hashes != NULL && emap[EC_HASH] == 0)
		elog(ERROR, "ocx: the hash chain is on but ocx.events has no hash column");
	/* (a tagged event without a tags column does not get here: Tagged) */
	slots = palloc(sizeof(TupleTableSlot *) * Min(n, DIRECT_CHUNK));
	for (i = 0; i < Min(n, DIRECT_CHUNK); i++)
		slots[i] = i == 0 ? et->slot : MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	for (done = 0; done < n; done += DIRECT_CHUNK)
	{
		int			m = Min(n - done, DIRECT_CHUNK);

		for (i = 0; i < m; i++)
		{
			OcxNewEvent *ev = &events[done + i];
			int64		version = first + done + i;
			TupleTableSlot *slot = slots[i];

			/* the CHECKs (ChecksAre): stream_version > 0, schema_version > 0 */
			if (version <= 0 || ev->schema_version <= 0)
				elog(ERROR, "ocx: direct append of version " INT64_FORMAT ", schema version %d",
					 version, ev->schema_version);
			position = nextval_internal(seqid, true);
			ExecClearTuple(slot);
			memset(slot->tts_values, 0, sizeof(Datum) * desc->natts);
			memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
#define SETE(col, val) (slot->tts_values[emap[col] - 1] = (val), slot->tts_isnull[emap[col] - 1] = false)
			SETE(EC_GLOBAL_POSITION, Int64GetDatum(position));
			SETE(EC_STREAM_ID, PointerGetDatum(stream_id));
			SETE(EC_STREAM_VERSION, Int64GetDatum(version));
			SETE(EC_EVENT_ID, UUIDPGetDatum(&ev->id));
			SETE(EC_SOURCE, CStringGetTextDatum(ev->source));
			SETE(EC_TYPE, CStringGetTextDatum(ev->type));
			SETE(EC_SCHEMA_VERSION, Int32GetDatum(ev->schema_version));
			SETE(EC_TIME, TimestampTzGetDatum(ev->has_time ? ev->time : now));
			SETE(EC_DATA, JsonbPGetDatum(ev->data));
			SETE(EC_METADATA, JsonbPGetDatum(ev->metadata));
			if (ev->has_correlation_id)
				SETE(EC_CORRELATION_ID, UUIDPGetDatum(&ev->correlation_id));
			if (ev->has_causation_id)
				SETE(EC_CAUSATION_ID, UUIDPGetDatum(&ev->causation_id));
			if (tenant != NULL)
				SETE(EC_TENANT_ID, tenant_d);
			SETE(EC_TXID, txid);
			if (hashes != NULL)
				SETE(EC_HASH, hashes[done + i]);
			if (ev->ntags > 0)
				SETE(EC_TAGS, OcxTagsDatum(ev));
#undef SETE
			NotNullChecked(et->rel, slot);
			ExecStoreVirtualTuple(slot);
		}
		if (m == 1)
			simple_table_tuple_insert(et->rel, slots[0]);
		else
			table_multi_insert(et->rel, slots, m, cid, 0, NULL);
		for (i = 0; i < m; i++)
			(void) ExecInsertIndexTuples(&et->rri, slots[i], et->estate,
										 false, false, NULL, NIL);
	}
	for (i = 1; i < Min(n, DIRECT_CHUNK); i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	return position;
}

/* Does any of the n events carry tags? */
static bool
Tagged(OcxNewEvent *events, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (events[i].ntags > 0)
			return true;
	return false;
}

/* Close what OcxDirectAppend opened. */
static void
Finish(Target *st, Target *et, EState *estate, TupleTableSlot *found, Snapshot snap)
{
	Relation	events = et->rel;
	Relation	streams = st->rel;

	ExecDropSingleTupleTableSlot(found);
	CloseTarget(et);
	CloseTarget(st);
	FreeExecutorState(estate);
	UnregisterSnapshot(snap);
	table_close(events, NoLock);
	table_close(streams, NoLock);
}

/*
 * Append the n events to the stream stream_id (sid, its category) under the
 * expected version rule of OcxAppend, with the row writes of the statement
 * path.  DONE: *version is the stream's new version, *position the last
 * event's;
 * CONFLICT: the expected version did not match, *version is the stream's;
 * OTHER_TENANT: the stream id is another tenant's; DELETED: the stream is a
 * tombstone (the caller raises OX641), *version is its version; UNUSABLE:
 * this path does not apply.  Nothing is written unless DONE.  Errors raised
 * by the writes themselves (a unique violation of a given event id) are
 * raised as the statement's are.
 */
OcxDirectResult
OcxDirectAppend(text *stream_id, const char *sid, const char *category,
				bool expected_isnull, int64 expected, OcxNewEvent *evs, int n,
				TimestampTz now, bool chain, int64 *version, int64 *position)
{
	Oid			nsp;
	Oid			events_id,
				streams_id,
				seqid;
	Relation	events,
				streams,
				pkey;
	AttrNumber	emap[EC_COUNT],
				smap[SC_COUNT];
	Target		st,
				et;
	EState	   *estate;
	Snapshot	snap;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *cur;
	bool		found;
	Datum	   *hashes = NULL;
	const char *tenant = OcxSessionTenant();
	TimestampTz xact_start = GetCurrentTransactionStartTimestamp();

	if (IsolationUsesXactSnapshot())
		return OCX_DIRECT_UNUSABLE;
	nsp = get_namespace_oid("ocx", true);
	events_id = OidIsValid(nsp) ? get_relname_relid("events", nsp) : InvalidOid;
	streams_id = OidIsValid(nsp) ? get_relname_relid("streams", nsp) : InvalidOid;
	if (!OidIsValid(events_id) || !OidIsValid(streams_id))
		return OCX_DIRECT_UNUSABLE;

	/* the locks the statement would take, in its order */
	streams = table_open(streams_id, RowExclusiveLock);
	events = table_open(events_id, RowExclusiveLock);
	seqid = get_relname_relid("events_global_position_seq", nsp);
	if (!OidIsValid(seqid) || !Usable(events, streams, emap, smap) ||
		!OidIsValid(RelationGetPrimaryKeyIndex(streams)) ||
		(emap[EC_TAGS] == 0 && Tagged(evs, n)))
	{
		table_close(events, NoLock);
		table_close(streams, NoLock);
		return OCX_DIRECT_UNUSABLE;
	}

	estate = CreateExecutorState();
	OpenTarget(&st, streams, estate);
	OpenTarget(&et, events, estate);
	cur = table_slot_create(streams, NULL);
	/* after the stream-order lock: every earlier append to the stream is over */
	snap = RegisterSnapshot(GetLatestSnapshot());

	/* the stream row, by its primary key, below row-level security */
	pkey = index_open(RelationGetPrimaryKeyIndex(streams), AccessShareLock);
	if (pkey->rd_rel->relam != BTREE_AM_OID || pkey->rd_index->indnatts != 1 ||
		pkey->rd_index->indkey.values[0] != smap[SC_STREAM_ID])
	{
		/* not the primary key ocx creates */
		index_close(pkey, AccessShareLock);
		Finish(&st, &et, estate, cur, snap);
		return OCX_DIRECT_UNUSABLE;
	}
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(stream_id));
	key.sk_collation = pkey->rd_indcollation[0];
	scan = index_beginscan(streams, pkey, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, cur);
	index_endscan(scan);
	index_close(pkey, AccessShareLock);

	if (found)
	{
		TM_FailureData tmfd;
		TM_Result	res;
		LockTupleMode lockmode;
		ItemPointerData tid = cur->tts_tid;
		bool		isnull;
		bool		update_indexes;
		Datum		d;
		int64		current;

		/* invisible to the statement: the stream of another tenant */
		if (!SameTenant(cur, smap[SC_TENANT_ID]))
		{
			Finish(&st, &et, estate, cur, snap);
			return OCX_DIRECT_OTHER_TENANT;
		}
		/*
		 * The row as found is its latest version: every appender of the
		 * stream holds the stream-order lock to its end, and the snapshot was
		 * taken after it.  No tuple lock first (it cost a WAL record per
		 * append): the update below waits for a writer that is not an
		 * appender and, when that one changed or deleted the row, leaves
		 * the append to the statement.
		 */

		/* the tombstone trigger's refusal, before any version check */
		current = DatumGetInt64(slot_getattr(cur, smap[SC_VERSION], &isnull));
		if (DatumGetBool(slot_getattr(cur, smap[SC_DELETED], &isnull)))
		{
			Finish(&st, &et, estate, cur, snap);
			*version = current;
			return OCX_DIRECT_DELETED;
		}
		if (!expected_isnull && expected != OCX_EXPECT_EXISTS && expected != current)
		{
			Finish(&st, &et, estate, cur, snap);
			*version = current;
			return OCX_DIRECT_CONFLICT;
		}
		if (pg_add_s64_overflow(current, n, version))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("bigint out of range")));
		d = slot_getattr(cur, smap[SC_HEAD], &isnull);
		hashes = EventHashes(chain, isnull ? NULL : DatumGetByteaPP(d), sid, current + 1,
							 evs, n, now);

		/* the new row version: version and updated_at (and head) change */
		slot_getallattrs(cur);
		ExecClearTuple(st.slot);
		memcpy(st.slot->tts_values, cur->tts_values, sizeof(Datum) * cur->tts_nvalid);
		memcpy(st.slot->tts_isnull, cur->tts_isnull, sizeof(bool) * cur->tts_nvalid);
		SetCol(&st, smap[SC_VERSION], Int64GetDatum(*version));
		SetCol(&st, smap[SC_UPDATED_AT], TimestampTzGetDatum(xact_start));
		if (chain)
			SetCol(&st, smap[SC_HEAD], hashes[n - 1]);
		StoreRow(&st);
		res = table_tuple_update(streams, &tid, st.slot, GetCurrentCommandId(true), snap,
								 InvalidSnapshot, true, &tmfd, &lockmode, &update_indexes);
		if (res == TM_Updated || res == TM_Deleted)
		{
			/*
			 * Changed or deleted meanwhile by a writer that is not an
			 * appender (nothing is written yet): the statement decides, as
			 * READ COMMITTED's UPDATE does.
			 */
			Finish(&st, &et, estate, cur, snap);
			return OCX_DIRECT_UNUSABLE;
		}
		if (res != TM_Ok)
			elog(ERROR, "ocx: could not update the row of stream \"%s\" (%d)", sid, (int) res);
		if (update_indexes)
			(void) ExecInsertIndexTuples(&st.rri, st.slot, estate, false, false, NULL, NIL);
	}
	else
	{
		if (!expected_isnull && expected != 0)
		{
			Finish(&st, &et, estate, cur, snap);
			*version = 0;
			return OCX_DIRECT_CONFLICT;
		}
		*version = n;
		hashes = EventHashes(chain, NULL, sid, 1, evs, n, now);
		EmptyRow(&st);
		SetCol(&st, smap[SC_STREAM_ID], PointerGetDatum(stream_id));
		SetCol(&st, smap[SC_VERSION], Int64GetDatum(n));
		SetCol(&st, smap[SC_CATEGORY], CStringGetTextDatum(category));
		if (tenant != NULL)
			SetCol(&st, smap[SC_TENANT_ID], CStringGetTextDatum(tenant));
		SetCol(&st, smap[SC_CREATED_AT], TimestampTzGetDatum(xact_start));
		SetCol(&st, smap[SC_UPDATED_AT], TimestampTzGetDatum(xact_start));
		SetCol(&st, smap[SC_DELETED], BoolGetDatum(false));
		if (chain)
			SetCol(&st, smap[SC_HEAD], hashes[n - 1]);
		SetCol(&st, smap[SC_HIDDEN_THROUGH], Int64GetDatum(0));
		StoreRow(&st);
		simple_table_tuple_insert(streams, st.slot);
		(void) ExecInsertIndexTuples(&st.rri, st.slot, estate, false, false, NULL, NIL);
	}

	/* the event rows */
	*position = InsertEventRows(&et, emap, seqid, stream_id, *version - n + 1, evs, n,
								hashes, now);

	Finish(&st, &et, estate, cur, snap);
	/* later statements and appends of this transaction see the rows */
	CommandCounterIncrement();
	direct_appends++;
	ereport(DEBUG1,
			(errmsg_internal("ocx: direct append to stream \"%s\" of %d event%s up to version " INT64_FORMAT,
							 sid, n, n == 1 ? "" : "s", *version)));
	return OCX_DIRECT_DONE;
}

/*
 * ocx._direct_appends() -> bigint: how many appends (calls, not events) this
 * backend has written by the direct path, so that a test can tell which path
 * an append took without reading DEBUG messages (which carry PostgreSQL's
 * own debug output too).
 */
Datum
ocx_direct_appends(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(direct_appends);
}
