/*
 * dcb.c
 *		Event tags and ocx.append_if: consistency boundaries beyond one
 *		stream (Dynamic Consistency Boundaries, dcb.events).
 *
 * An event may carry tags, a set of strings stored sorted and distinct in
 * ocx.events.tags (GIN-indexed).  ocx.append_if(events, condition) appends
 * only if no event matching the condition's query (its type is one of
 * "types", or any type when none are given, and it carries every tag of
 * "tags") was written after the condition's cursor "after".
 *
 * Race freedom without a global lock comes from tag locks: heavyweight
 * locks with an advisory lock tag (field4 OCX_TAG_LOCK, which
 * pg_advisory_lock never uses), one per (tenant, tag), keyed by a 64-bit
 * hash of both.  Every append of tagged events takes ShareLock on each of
 * its events' tags; append_if takes ExclusiveLock on each tag of its
 * condition (and ShareLock on its events' other tags), all in one pass in
 * key order, held to the end of the transaction, and only then runs the
 * check with a new snapshot (GetLatestSnapshot, under READ COMMITTED,
 * REPEATABLE READ and SERIALIZABLE alike).  An event that matches the
 * condition carries all of its tags, so its writer holds ShareLock on one of
 * them: the check waits until that writer has ended and then sees its
 * event; a writer that comes later waits until the append_if's transaction
 * has ended.  Two append_ifs on the same query serialize; writers of the
 * same tags do not block each other; disjoint tags never meet.  A hash
 * collision only makes two tags share a lock.  Locks of one call are taken
 * in key order, tag locks before the stream locks of append.c, so two calls
 * do not deadlock; a transaction that appends several times can (40P01).
 * A writer of more than OCX_TAG_LOCKS_MAX distinct tags in one call takes
 * the tenant's all-tags lock in ShareLock instead of its tag locks, and
 * every append_if takes that lock in RowExclusiveLock first (tags.c).
 *
 * "after" is a place in log order (txid, global_position).  Readers of the
 * log (ocx.read_tagged, ocx.read_all) show only events below the log
 * horizon, so every event at or before the cursor they hand out was
 * finished when it was read, and every event the reader did not see is
 * after it: the check compares in log order, never by global_position.
 * docs/consistency.md says this for users.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "nodes/tidbitmap.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_append_if);
PG_FUNCTION_INFO_V1(ocx_tags_arg);

#define OCX_MAX_CONDITION_TYPES 64
#define OCX_MAX_TYPE_LEN		256

typedef struct Condition
{
	char	  **tags;
	int			ntags;
	char	  **types;			/* NULL: any type */
	int			ntypes;
	bool		has_after;
	uint64		after_txid;
	int64		after_position;
} Condition;

static void
BadCondition(const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_INVALID_APPEND_CONDITION),
			 errmsg("%s", msg),
			 errdetail("A condition is {\"tags\": [...], \"types\": [...], \"after\": \"txid/position\"}; tags are required, types and after optional."),
			 hint ? errhint("%s", hint) : 0));
}

/* "after": a cursor's text form, txid/global_position. */
static void
ParseAfter(JsonbValue *v, Condition *c)
{
	char	   *s,
			   *p,
			   *end;
	unsigned long long txid,
				pos;

	if (v->type != jbvString)
		BadCondition("\"after\" of the condition must be a cursor string such as \"742/1051\"", NULL);
	s = OcxJsonbString(v);
	p = s;
	if (!isdigit((unsigned char) *p))
		BadCondition("\"after\" of the condition is not a valid cursor",
					 "A cursor is written txid/global_position, such as \"742/1051\".");
	errno = 0;
	txid = strtoull(p, &end, 10);
	if (errno != 0 || *end != '/' || !isdigit((unsigned char) end[1]))
		BadCondition("\"after\" of the condition is not a valid cursor",
					 "A cursor is written txid/global_position, such as \"742/1051\".");
	p = end + 1;
	pos = strtoull(p, &end, 10);
	if (errno != 0 || *end != '\0' || pos > (unsigned long long) PG_INT64_MAX)
		BadCondition("\"after\" of the condition is not a valid cursor",
					 "A cursor is written txid/global_position, such as \"742/1051\".");
	c->has_after = true;
	c->after_txid = (uint64) txid;
	c->after_position = (int64) pos;
}

static void
ParseTypes(JsonbValue *v, Condition *c)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	e;
	int			count;

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerIsScalar(v->val.binary.data))
		BadCondition("\"types\" of the condition must be an array of strings", NULL);
	count = JsonContainerSize(v->val.binary.data);
	if (count > OCX_MAX_CONDITION_TYPES)
		BadCondition("the condition has too many types",
					 "A condition names at most 64 event types.");
	c->types = palloc(sizeof(char *) * Max(count, 1));
	c->ntypes = 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvString || e.val.string.len == 0 ||
			e.val.string.len > OCX_MAX_TYPE_LEN)
			BadCondition("each of \"types\" of the condition must be a non-empty string of at most 256 bytes",
						 NULL);
		c->types[c->ntypes++] = OcxJsonbString(&e);
	}
	c->ntypes = OcxSortDistinct(c->types, c->ntypes);
	if (c->ntypes == 0)
		c->types = NULL;		/* [] means any type, as an absent key */
}

static void
ParseCondition(Jsonb *cond, Condition *c)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;
	bool		has_tags = false;

	memset(c, 0, sizeof(*c));
	if (!JB_ROOT_IS_OBJECT(cond) || JB_ROOT_IS_SCALAR(cond))
		BadCondition("the condition must be a JSON object", NULL);
	it = JsonbIteratorInit(&cond->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = OcxJsonbString(&k);
		tok = JsonbIteratorNext(&it, &v, true);
		if (v.type == jbvNull)
			continue;			/* null means "not given" */
		if (strcmp(key, "tags") == 0)
		{
			OcxParseTags(&v, "condition", 0, &c->tags, &c->ntags);
			has_tags = true;
		}
		else if (strcmp(key, "types") == 0)
			ParseTypes(&v, c);
		else if (strcmp(key, "after") == 0)
			ParseAfter(&v, c);
		else
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_APPEND_CONDITION),
					 errmsg("unknown key \"%s\" in the condition", key),
					 errhint("A condition has the keys tags, types and after.")));
	}
	if (!has_tags || c->ntags == 0)
		BadCondition("the condition must name at least one tag",
					 "The tags are what ocx.append_if locks; for a condition on types alone, tag the events with what the decision is about.");
}

/* The events of the batch, each with its "stream_id". */
static OcxNewEvent *
ParseEvents(Jsonb *batch, int *nevents)
{
	OcxNewEvent *events;
	int			n,
				i;

	if (JB_ROOT_IS_SCALAR(batch))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("events must be a JSON object or an array of objects")));
	if (JB_ROOT_IS_OBJECT(batch))
	{
		n = 1;
		events = palloc(sizeof(OcxNewEvent));
		OcxParseEventObjectExt(&batch->root, 1, &events[0], true);
	}
	else
	{
		JsonbIterator *it;
		JsonbIteratorToken tok;
		JsonbValue	v;

		n = JB_ROOT_COUNT(batch);
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_EMPTY_BATCH),
					 errmsg("events must not be an empty array"),
					 errhint("Append at least one event.")));
		events = palloc(sizeof(OcxNewEvent) * n);
		it = JsonbIteratorInit(&batch->root);
		i = 0;
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_EVENT),
						 errmsg("event %d must be a JSON object, not %s", i + 1,
								OcxJsonbTypeName(&v))));
			OcxParseEventObjectExt(v.val.binary.data, i + 1, &events[i], true);
			i++;
		}
	}
	for (i = 0; i < n; i++)
	{
		if (events[i].stream_id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("event %d has no stream_id", i + 1),
					 errhint("Each event of ocx.append_if names its stream: {\"stream_id\": \"course-1\", \"type\": ..., \"tags\": [...]}.")));
		OcxFinishEvent(&events[i], i + 1);
	}
	*nevents = n;
	return events;
}

/* Raise OX014 for the matching event (stream sid, type, cursor txid/pos). */
static void
RaiseConditionFailed(Condition *c, const char *sid, const char *type, uint64 txid, int64 pos)
{
	OcxCount(OCX_COUNT_CONFLICTS, 1);
	ereport(ERROR,
			(errcode(ERRCODE_OCX_APPEND_CONDITION_FAILED),
			 errmsg("append condition failed"),
			 c->has_after ?
			 errdetail("Event " UINT64_FORMAT "/" INT64_FORMAT " (type \"%s\", stream \"%s\") matches the condition and is after its cursor " UINT64_FORMAT "/" INT64_FORMAT ".",
					   txid, pos, type, sid, c->after_txid, c->after_position) :
			 errdetail("Event " UINT64_FORMAT "/" INT64_FORMAT " (type \"%s\", stream \"%s\") matches the condition, which has no cursor: no matching event may exist.",
					   txid, pos, type, sid),
			 errhint("Read the matching events again (ocx.read_tagged), decide again, and retry with the cursor of that read. Nothing was written.")));
}

/* the columns of ocx.events the direct check reads */
typedef enum CheckCol
{
	CC_TAGS,
	CC_TYPE,
	CC_TXID,
	CC_POSITION,
	CC_TENANT,
	CC_STREAM,
	CC_COUNT
} CheckCol;

static const char *const check_cols[CC_COUNT] = {
	"tags", "type", "txid", "global_position", "tenant_id", "stream_id"
};

/*
 * Does the event in slot match the condition (cond_tags: its tags as text[];
 * contains: arraycontains, with an FmgrInfo for its type cache)?
 */
static bool
EventMatches(Condition *c, TupleTableSlot *slot, AttrNumber *att, Datum cond_tags,
			 FmgrInfo *contains)
{
	bool		isnull;
	Datum		d;
	uint64		txid;

	d = slot_getattr(slot, att[CC_TAGS], &isnull);
	if (isnull ||
		!DatumGetBool(FunctionCall2Coll(contains, DEFAULT_COLLATION_OID, d, cond_tags)))
		return false;
	d = slot_getattr(slot, att[CC_TENANT], &isnull);
	if (!OcxTenantIsSessions(d, isnull))
		return false;
	if (c->has_after)
	{
		txid = U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(slot, att[CC_TXID], &isnull)));
		if (txid < c->after_txid ||
			(txid == c->after_txid &&
			 DatumGetInt64(slot_getattr(slot, att[CC_POSITION], &isnull)) <= c->after_position))
			return false;
	}
	if (c->types)
	{
		text	   *t = DatumGetTextPP(slot_getattr(slot, att[CC_TYPE], &isnull));
		size_t		len = VARSIZE_ANY_EXHDR(t);
		int			i;

		for (i = 0; i < c->ntypes; i++)
			if (strlen(c->types[i]) == len && memcmp(c->types[i], VARDATA_ANY(t), len) == 0)
				break;
		if (i == c->ntypes)
			return false;
	}
	return true;
}

/*
 * Does the index hold every row with tags (no predicate, or "tags IS NOT
 * NULL" as ocx creates it)?  Every row a condition matches has tags.
 */
static bool
PredicateIsTagsNotNull(Relation index, AttrNumber tags)
{
	List	   *pred = RelationGetIndexPredicate(index);
	NullTest   *nt;

	if (pred == NIL)
		return true;
	if (list_length(pred) != 1 || !IsA(linitial(pred), NullTest))
		return false;
	nt = (NullTest *) linitial(pred);
	return nt->nulltesttype == IS_NOT_NULL && IsA(nt->arg, Var) &&
		((Var *) nt->arg)->varattno == tags;
}

/*
 * The check of CheckCondition without an SQL statement: the bitmap scan the
 * kept plan runs (events_tags_idx for tags @> the condition's tags, then the
 * heap pages in order, every row checked again), done with the index and
 * table access methods under the same new snapshot, below row-level
 * security with the tenant condition written out, as the plan is.  It finds
 * the event the statement would (the first match in the bitmap's page
 * order) and raises the same OX014.  Returns false, having read nothing,
 * when events_tags_idx is not the GIN index on tags that ocx creates, or
 * when the log is partitioned (the statement then scans each partition's
 * index; reading the partitioned index itself failed with "could not open
 * file", t/204_direct_differential.pl).
 */
static bool
DirectCheck(Condition *c, Datum cond_tags)
{
	Oid			nsp = get_namespace_oid("ocx", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("events", nsp) : InvalidOid;
	Oid			indexid = OidIsValid(nsp) ? get_relname_relid("events_tags_idx", nsp) : InvalidOid;
	AttrNumber	att[CC_COUNT];
	Relation	rel,
				index;
	Snapshot	snap;
	IndexScanDesc iscan;
	TableScanDesc scan;
	TupleTableSlot *slot;
	TIDBitmap  *tbm;
	TBMIterator *it;
	TBMIterateResult *res;
	ScanKeyData key;
	FmgrInfo	contains;
	int			strategy = 0;
	int			i;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		return false;
	for (i = 0; i < CC_COUNT; i++)
		if ((att[i] = get_attnum(relid, check_cols[i])) == InvalidAttrNumber)
			return false;
	rel = table_open(relid, AccessShareLock);
	/* a partitioned log (ocx.partition_log): its index has no storage of its own */
	if (rel->rd_rel->relkind != RELKIND_RELATION || get_rel_relkind(indexid) != RELKIND_INDEX)
	{
		table_close(rel, AccessShareLock);
		return false;
	}
	index = index_open(indexid, AccessShareLock);
	if (index->rd_rel->relam == GIN_AM_OID && index->rd_index->indnatts == 1 &&
		index->rd_index->indkey.values[0] == att[CC_TAGS] &&
		index->rd_index->indrelid == relid && index->rd_index->indisvalid &&
		PredicateIsTagsNotNull(index, att[CC_TAGS]))
		strategy = get_op_opfamily_strategy(OID_ARRAY_CONTAINS_OP, index->rd_opfamily[0]);
	if (strategy == 0)
	{
		index_close(index, AccessShareLock);
		table_close(rel, AccessShareLock);
		return false;
	}

	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyInit(&key, 1, (StrategyNumber) strategy, F_ARRAYCONTAINS, cond_tags);
	key.sk_collation = index->rd_indcollation[0];
	tbm = tbm_create(work_mem * 1024L, NULL);
	iscan = index_beginscan_bitmap(index, snap, 1);
	index_rescan(iscan, &key, 1, NULL, 0);
	(void) index_getbitmap(iscan, tbm);
	index_endscan(iscan);
	index_close(index, AccessShareLock);

	/* the common case: no event carries all the tags */
	if (tbm_is_empty(tbm))
	{
		tbm_free(tbm);
		UnregisterSnapshot(snap);
		table_close(rel, AccessShareLock);
		return true;
	}

	fmgr_info(F_ARRAYCONTAINS, &contains);
	scan = table_beginscan_bm(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	it = tbm_begin_iterate(tbm);
	while ((res = tbm_iterate(it)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		if (!table_scan_bitmap_next_block(scan, res))
			continue;
		while (table_scan_bitmap_next_tuple(scan, res, slot))
		{
			bool		isnull;

			if (!EventMatches(c, slot, att, cond_tags, &contains))
				continue;
			RaiseConditionFailed(c,
								 TextDatumGetCString(slot_getattr(slot, att[CC_STREAM], &isnull)),
								 TextDatumGetCString(slot_getattr(slot, att[CC_TYPE], &isnull)),
								 U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(slot, att[CC_TXID], &isnull))),
								 DatumGetInt64(slot_getattr(slot, att[CC_POSITION], &isnull)));
		}
	}
	tbm_end_iterate(it);
	tbm_free(tbm);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return true;
}

static SPIPlanPtr check_plan = NULL;

/*
 * Raise OX014 if an event matching the condition is after its cursor.  Runs
 * with a new snapshot after the tag locks are held, so it sees every event
 * committed until now, whatever the caller's isolation level; row-level
 * security keeps it to the session's tenant.  The cursor comparison is
 * written as a CASE so that no index matches it: the (kept, generic) plan
 * must find the events through the tags' GIN index, never by scanning the
 * log order index from the cursor (from the start when there is none).
 * Row-level security would keep the GIN index out too (arraycontains is not
 * leakproof, so it may not run before the policy's qual): the fixed,
 * parameterized query runs as the bootstrap superuser, as the worker's
 * queries do, with the tenant policy's condition written out ($5).
 *
 * The plan is generic by force (CURSOR_OPT_GENERIC_PLAN).  The generic plan
 * is the GIN bitmap scan, but with the default selectivity of @> for an
 * unknown array its cost is far above a custom plan's, so the plan cache
 * would plan the statement anew on every call: a tenth of an append_if's
 * time (docs/performance.md, "Issue 13 reads and append_if").  A generic
 * plan made while the log is small may be a sequential scan; the plan cache
 * plans again when the table's statistics change (ANALYZE, autovacuum).
 *
 * That plan's work is done without it first (DirectCheck): the statement
 * cost an executor start and SPI on every append_if, about a third of the
 * check (docs/performance.md); it runs only where the direct check does not
 * apply.
 */
static void
CheckCondition(Condition *c)
{
	static const Oid argtypes[5] = {TEXTARRAYOID, TEXTARRAYOID, XID8OID, INT8OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Oid			save_userid;
	int			save_sec_context;
	Datum	   *d;
	SPIPlanPtr	plan;
	volatile int rc = 0;
	int			i;

	d = palloc(sizeof(Datum) * c->ntags);
	for (i = 0; i < c->ntags; i++)
		d[i] = CStringGetTextDatum(c->tags[i]);
	values[0] = PointerGetDatum(construct_array(d, c->ntags, TEXTOID, -1, false, TYPALIGN_INT));
	if (DirectCheck(c, values[0]))
		return;
	if (c->types)
	{
		d = palloc(sizeof(Datum) * c->ntypes);
		for (i = 0; i < c->ntypes; i++)
			d[i] = CStringGetTextDatum(c->types[i]);
		values[1] = PointerGetDatum(construct_array(d, c->ntypes, TEXTOID, -1, false, TYPALIGN_INT));
	}
	else
	{
		values[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	values[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(c->has_after ? c->after_txid : 0));
	values[3] = Int64GetDatum(c->has_after ? c->after_position : 0);
	values[4] = CStringGetTextDatum(ocx_tenant ? ocx_tenant : "");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	plan = OcxKeptPlanExt(&check_plan,
						  "SELECT e.stream_id, e.type, e.txid, e.global_position FROM ocx.events e "
						  "WHERE e.tags OPERATOR(pg_catalog.@>) $1 "
						  "AND ($2 IS NULL OR e.type OPERATOR(pg_catalog.=) ANY ($2)) "
						  "AND CASE WHEN e.txid OPERATOR(pg_catalog.>) $3 THEN true "
						  "WHEN e.txid OPERATOR(pg_catalog.=) $3 THEN e.global_position OPERATOR(pg_catalog.>) $4 "
						  "ELSE false END "
						  "AND COALESCE(e.tenant_id, '') OPERATOR(pg_catalog.=) $5",
						  5, argtypes, CURSOR_OPT_GENERIC_PLAN);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(), InvalidSnapshot,
								  true, false, 1);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ocx: the append condition check failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		RaiseConditionFailed(c, TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull)),
							 TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull)),
							 U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, 3, &isnull))),
							 DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull)));
	}
	SPI_finish();
}

/* Append events[0..n-1] stream by stream, in the order each stream first appears. */
static void
AppendByStream(OcxNewEvent *events, int n)
{
	bool	   *done = palloc0(sizeof(bool) * n);
	OcxNewEvent *group = palloc(sizeof(OcxNewEvent) * n);
	int			i,
				j;

	for (i = 0; i < n; i++)
	{
		int			k = 0;

		if (done[i])
			continue;
		for (j = i; j < n; j++)
			if (!done[j] && strcmp(events[j].stream_id, events[i].stream_id) == 0)
			{
				group[k++] = events[j];
				done[j] = true;
			}
		(void) OcxAppend(cstring_to_text(events[i].stream_id), true, 0, group, k);
	}
}

/* AppendByStream with the tag locks known to be held (OcxLockEventTags skips) */
static void
AppendLocked(OcxNewEvent *events, int n)
{
	ocx_tags_locked = true;
	PG_TRY();
	{
		AppendByStream(events, n);
	}
	PG_FINALLY();
	{
		ocx_tags_locked = false;
	}
	PG_END_TRY();
}

/*
 * ocx.append_if(events jsonb, condition jsonb) -> ocx.cursor: append the
 * events (each naming its stream) only if no event matching the condition
 * was written after its cursor; returns the cursor of the last event written.
 */
Datum
ocx_append_if(PG_FUNCTION_ARGS)
{
	MemoryContext ctx,
				old;
	OcxNewEvent *events;
	Condition	c;
	int			n;
	uint64		txid;
	int64		position;

	PreventCommandIfReadOnly("ocx.append_if()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("events must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_APPEND_CONDITION),
				 errmsg("condition must not be null"),
				 errhint("Use ocx.append for an append without a condition.")));

	ctx = AllocSetContextCreate(CurrentMemoryContext, "ocx append_if", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(ctx);

	ParseCondition(PG_GETARG_JSONB_P(1), &c);
	events = ParseEvents(PG_GETARG_JSONB_P(0), &n);

	/* the condition's tags exclusive, the events' shared, one pass in key order */
	OcxLockConditionTags(c.tags, c.ntags, events, n);

	CheckCondition(&c);

	AppendLocked(events, n);

	if (!OcxLastAppendCursor(&txid, &position))
		elog(ERROR, "ocx: append_if wrote no event");
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	PG_RETURN_DATUM(OcxCursorGetDatum(txid, position));
}

/*
 * ocx._tags_arg(text[]) -> text[]: the tags of a read (ocx.read_tagged),
 * checked as an event's are: one dimension, 1 to OCX_MAX_TAGS non-empty
 * strings of at most OCX_MAX_TAG_LEN bytes, no NULL.
 */
Datum
ocx_tags_arg(PG_FUNCTION_ARGS)
{
	ArrayType  *a;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_TAGS),
				 errmsg("tags must not be null"),
				 errhint("Name at least one tag, such as ARRAY['course:c1'].")));
	a = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_TAGS),
				 errmsg("tags must be a one-dimensional array")));
	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_TAGS),
				 errmsg("tags must name at least one tag"),
				 errhint("To read by type alone, use ocx.read_all(types => ...).")));
	if (n > OCX_MAX_TAGS)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_TAGS),
				 errmsg("too many tags"),
				 errdetail("Got %d; the limit is %d.", n, OCX_MAX_TAGS)));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_TAGS),
					 errmsg("tags must not contain NULL")));
		OcxCheckTag(VARDATA_ANY(DatumGetPointer(elems[i])),
				 VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i])), "read", 0);
	}
	PG_RETURN_ARRAYTYPE_P(a);
}
