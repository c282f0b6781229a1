/*
 * logparts.c
 *		A partitioned log (docs/scaling.md, "A partitioned log"): the
 *		uniqueness the partitions cannot enforce, and the worker's partitions
 *		ahead.
 *
 * ocx.partition_log() (88p_partitioned_log.sql) makes ocx.events a table
 * partitioned by ranges of global_position.  PostgreSQL's unique indexes on
 * a partitioned table must contain the partition key, so the log's keys
 * (stream_id, stream_version) and (source, event_id) become plain indexes
 * there, and ocx._log_unique(), a BEFORE INSERT row trigger on every
 * partition, enforces them as the unique indexes did:
 *
 *   - it takes the stream's append lock (OcxLockStreamOrder, which every
 *     append already holds) and a transaction lock on the (source, event_id)
 *     pair (an advisory lock tag, field4 OCX_EVENT_ID_LOCK, that
 *     pg_advisory_lock never uses; past OCX_EVENT_ID_LOCKS_MAX of them in one
 *     transaction, the lock of every id), so that two writers of one stream
 *     or of one id are serialised: the second waits until the first ends, as
 *     it would wait on the unique index;
 *   - then it looks the pair and the version up in every partition of the
 *     live log and of the archive (ocx_archive.events) under SnapshotSelf:
 *     committed rows and this transaction's own, whatever the isolation
 *     level, as a unique index check sees them;
 *   - a hit raises the unique index's own error (23505 with the constraint
 *     name events_source_event_id_key or events_stream_version_key), so the
 *     append path (append.c) tells an idempotent retry from a reused id
 *     exactly as on an unpartitioned log.
 *
 * The lookups cost one index probe per partition and key; partitions are
 * large (ocx.partition_log's partition_size), so there are few.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "partitioning/partdesc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(ocx_log_unique);

/* locktag field4 of the (source, event_id) locks ("oi") */
#define OCX_EVENT_ID_LOCK 0x6f69

/*
 * A transaction takes at most this many (source, event_id) locks; past them
 * it takes the lock of every id (OCX_EVENT_ID_LOCK with keys 0, 0) in
 * EXCLUSIVE mode instead, which every id lock taker holds in SHARE mode
 * first: a batch of 100,000 events does not fill the lock table, and waits
 * for (and then holds off) the other writers of ids until it ends.
 */
#define OCX_EVENT_ID_LOCKS_MAX 128

#define ARCHIVE_SCHEMA "ocx_archive"

/* One key of the log: its constraint's name and its two columns. */
typedef struct LogKey
{
	const char *conname;
	const char *col1;
	const char *col2;
	Oid			eq1;			/* equality of the first column */
	Oid			eq2;
	Datum		v1;
	Datum		v2;
} LogKey;

/* Does a partition's index lead with exactly these two columns? */
static bool
IndexIsKey(Relation idx, AttrNumber a1, AttrNumber a2)
{
	return idx->rd_rel->relam == BTREE_AM_OID &&
		IndexRelationGetNumberOfKeyAttributes(idx) == 2 &&
		idx->rd_index->indkey.values[0] == a1 &&
		idx->rd_index->indkey.values[1] == a2;
}

/*
 * Is the key stored in this partition (committed, or written by this
 * transaction)?  Through the partition's index on the key's columns.
 */
static bool
KeyInPartition(Oid partid, LogKey *key)
{
	Relation	rel = table_open(partid, AccessShareLock);
	AttrNumber	a1 = get_attnum(partid, key->col1);
	AttrNumber	a2 = get_attnum(partid, key->col2);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;
	bool		probed = false;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);

		if (IndexIsKey(idx, a1, a2))
		{
			ScanKeyData keys[2];
			IndexScanDesc scan;
			TupleTableSlot *slot = table_slot_create(rel, NULL);

			ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, key->eq1, key->v1);
			keys[0].sk_collation = idx->rd_indcollation[0];
			ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, key->eq2, key->v2);
			keys[1].sk_collation = idx->rd_indcollation[1];
			scan = index_beginscan(rel, idx, SnapshotSelf, 2, 0);
			index_rescan(scan, keys, 2, NULL, 0);
			found = index_getnext_slot(scan, ForwardScanDirection, slot);
			index_endscan(scan);
			ExecDropSingleTupleTableSlot(slot);
			probed = true;
		}
		index_close(idx, AccessShareLock);
		if (probed)
			break;
	}
	list_free(indexes);
	table_close(rel, AccessShareLock);
	if (!probed)
		elog(ERROR, "ocx: partition \"%s\" of the log has no index on (%s, %s)",
			 get_rel_name(partid), key->col1, key->col2);
	return found;
}

/* Is the key stored in any partition of the partitioned table relid? */
static bool
KeyInLog(Oid relid, LogKey *key)
{
	Relation	parent;
	PartitionDesc pd;
	int			i;
	bool		found = false;

	if (!OidIsValid(relid))
		return false;
	parent = table_open(relid, AccessShareLock);
	if (parent->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		pd = RelationGetPartitionDesc(parent, true);
		for (i = 0; i < pd->nparts && !found; i++)
			found = KeyInPartition(pd->oids[i], key);
	}
	table_close(parent, AccessShareLock);
	return found;
}

/* the id locks taken in this top-level transaction (an upper bound) */
static LocalTransactionId id_locks_lxid = InvalidLocalTransactionId;
static int	id_locks_taken = 0;

/*
 * Serialise the writers of one (source, event_id): its lock, held to the end
 * of the (sub)transaction as an index entry would be, or past
 * OCX_EVENT_ID_LOCKS_MAX of them the lock of every id.
 */
static void
LockEventId(const char *source, Datum event_id)
{
	LOCKTAG		all;
	LOCKTAG		one;

	SET_LOCKTAG_ADVISORY(all, MyDatabaseId, 0, 0, OCX_EVENT_ID_LOCK);
	if (LockHeldByMe(&all, ExclusiveLock))
		return;
	if (id_locks_lxid != MyProc->lxid)
	{
		id_locks_lxid = MyProc->lxid;
		id_locks_taken = 0;
	}
	(void) LockAcquire(&all, ShareLock, false, false);
	if (id_locks_taken >= OCX_EVENT_ID_LOCKS_MAX)
	{
		(void) LockAcquire(&all, ExclusiveLock, false, false);
		return;
	}
	/* keys (0, 0) are the lock of every id: a pair's keys are never both 0 */
	SET_LOCKTAG_ADVISORY(one, MyDatabaseId,
						 hash_bytes((const unsigned char *) source, strlen(source)),
						 hash_bytes((const unsigned char *) DatumGetUUIDP(event_id), UUID_LEN) | 1,
						 OCX_EVENT_ID_LOCK);
	(void) LockAcquire(&one, ExclusiveLock, false, false);
	id_locks_taken++;
}

/* Raise the unique violation the key's unique index would raise. */
static void
RaiseDuplicate(Relation rel, LogKey *key, const char *shown1, const char *shown2)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("duplicate key value violates unique constraint \"%s\"", key->conname),
			 errdetail("Key (%s, %s)=(%s, %s) already exists.", key->col1, key->col2, shown1, shown2),
			 errtableconstraint(rel, key->conname)));
}

/* Check one key across the live log and the archive. */
static void
CheckKey(Relation rel, LogKey *key, const char *shown1, const char *shown2)
{
	Oid			live = get_relname_relid("events", get_namespace_oid(OCX_SCHEMA, false));
	Oid			archive_nsp = get_namespace_oid(ARCHIVE_SCHEMA, true);
	Oid			archive = OidIsValid(archive_nsp) ? get_relname_relid("events", archive_nsp) : InvalidOid;

	if (KeyInLog(live, key) || KeyInLog(archive, key))
		RaiseDuplicate(rel, key, shown1, shown2);
}

/*
 * ocx._log_unique(): BEFORE INSERT FOR EACH ROW on a partitioned ocx.events
 * (every partition has it): the log's two keys, as the unique indexes of an
 * unpartitioned log enforce them.
 */
Datum
ocx_log_unique(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	bool		isnull;
	Datum		sid,
				version,
				source,
				event_id;
	char	   *sid_str;
	char	   *source_str;
	LogKey		id_key = {"events_source_event_id_key", "source", "event_id", F_TEXTEQ, F_UUID_EQ, 0, 0};
	LogKey		version_key = {"events_stream_version_key", "stream_id", "stream_version", F_TEXTEQ, F_INT8EQ, 0, 0};

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._log_unique() must be a BEFORE INSERT row trigger")));

	tup = td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	sid = heap_getattr(tup, SPI_fnumber(desc, "stream_id"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(tup);	/* NOT NULL refuses it */
	version = heap_getattr(tup, SPI_fnumber(desc, "stream_version"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(tup);
	source = heap_getattr(tup, SPI_fnumber(desc, "source"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(tup);
	event_id = heap_getattr(tup, SPI_fnumber(desc, "event_id"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(tup);

	sid_str = TextDatumGetCString(sid);
	source_str = TextDatumGetCString(source);

	/* the stream's versions: every append holds this lock already */
	OcxLockStreamOrder(sid_str);
	version_key.v1 = sid;
	version_key.v2 = version;
	CheckKey(td->tg_relation, &version_key, sid_str,
			 DatumGetCString(DirectFunctionCall1(int8out, version)));

	LockEventId(source_str, event_id);
	id_key.v1 = source;
	id_key.v2 = event_id;
	CheckKey(td->tg_relation, &id_key, source_str,
			 DatumGetCString(DirectFunctionCall1(uuid_out, event_id)));

	pfree(sid_str);
	pfree(source_str);
	return PointerGetDatum(tup);
}

/*
 * The worker's "partitions" unit: keep partitions ahead of the log's
 * position (ocx.partition_ahead(), 88p_partitioned_log.sql).  Does nothing
 * until ocx.events is partitioned.  Returns whether it created one.
 */
bool
OcxLogPartitionsTick(void)
{
	bool		isnull;
	int64		created;

	if (!OcxLogPartitioned() ||
		!OidIsValid(get_relname_relid("log_partitioning", get_namespace_oid(OCX_SCHEMA, false))))
		return false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	/*
	 * Attaching takes the default partition's ACCESS EXCLUSIVE lock: not
	 * behind a long reader for long, and in a wait that closes a cycle (an
	 * archive in a transaction that read the log first) the worker gives up
	 * before the deadlock check (deadlock_timeout, 1 s by default) picks a
	 * victim among the others; the next pass tries again
	 */
	if (SPI_execute("SET LOCAL lock_timeout = '500ms'", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "ocx: SET LOCAL lock_timeout failed");
	if (SPI_execute("SELECT ocx.partition_ahead()", false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "ocx: ocx.partition_ahead() failed");
	created = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return !isnull && created > 0;
}
