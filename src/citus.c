/*
 * citus.c
 *		The log distributed with Citus (ocx.distribute(), docs/scaling.md):
 *		whether it is, and the one wait that keeps log order exact on it.
 *
 * On a Citus coordinator every append runs in a coordinator transaction: the
 * event's log txid is the coordinator's, its global position comes from the
 * coordinator's sequence, and the row is written on the stream's worker.  So
 * the coordinator's horizon (logspace.c) is the log-order cut for the whole
 * distributed log, with one hole.  Citus commits a transaction that wrote one
 * worker with one-phase commit in PRE_COMMIT, before the coordinator's own
 * commit: once its xid leaves the coordinator's running set, its rows are
 * visible on the worker.  A transaction that wrote two or more nodes (a
 * batch over streams on two workers, an append beside a write to another
 * distributed table) commits with two-phase commit, and Citus sends COMMIT
 * PREPARED to the workers in the COMMIT callback, after the coordinator's
 * xid has left the running set (ProcArrayEndTransaction) and before the
 * transaction releases its locks.  A reader whose horizon passed such a
 * transaction could miss its events for good.
 *
 * OcxWaitForCommittingAppenders() closes it: the reader, after it took the
 * snapshot its horizon comes from, waits for every transaction of the
 * database that has ended on the coordinator and is still in its commit
 * callbacks.  A transaction still running at the snapshot has an xid at or
 * above the horizon, so the reader does not wait for it.
 *
 * No shared state: whether the log is distributed is cached per backend until
 * a relcache invalidation of ocx.events (ocx.distribute() alters the table).
 */
#include "ocx.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

static bool distributed_valid = false;
static bool distributed = false;
static Oid	events_relid = InvalidOid;

void
OcxCitusRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == events_relid)
		distributed_valid = false;
}

/* Does Citus's pg_dist_partition hold a row for relid? */
static bool
CitusDistributes(Oid relid)
{
	Oid			dist_relid = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	bool		found;

	if (!OidIsValid(dist_relid))
		return false;
	rel = table_open(dist_relid, AccessShareLock);
	/* column 1 is logicalrelid (regclass) */
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* Is ocx.events a Citus distributed table in this database? */
bool
OcxLogDistributed(void)
{
	Oid			nsp;

	if (distributed_valid)
		return distributed;
	nsp = get_namespace_oid(OCX_SCHEMA, true);
	events_relid = OidIsValid(nsp) ? get_relname_relid("events", nsp) : InvalidOid;
	distributed = OidIsValid(events_relid) &&
		OidIsValid(get_extension_oid("citus", true)) &&
		CitusDistributes(events_relid);
	distributed_valid = true;
	return distributed;
}

/*
 * Is ocx.events partitioned (ocx.partition_log)?  Beside the question
 * above: the shape of the log, asked by code at every layer.  The C side of
 * ocx._log_partitioned(), for the code that reads or writes the log below
 * SQL and must take the archive, or the partitions, into account.
 */
bool
OcxLogPartitioned(void)
{
	Oid			nsp = get_namespace_oid(OCX_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("events", nsp) : InvalidOid;

	return OidIsValid(relid) && get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE;
}

/*
 * Wait for the transactions of this database that have ended on this node
 * and are still in their commit (or abort) callbacks: those whose lxid the
 * proc array has cleared (ProcArrayEndTransaction) while they still hold
 * their virtual transaction lock (released with their locks, after the
 * callbacks, where Citus sends COMMIT PREPARED).  GetLockConflicts() cannot
 * find them: it skips a holder whose lxid is cleared, as finished.  Call
 * after the snapshot of the horizon was taken: a transaction that ended
 * before it is found here or is done; one still running then has an xid at
 * or above the horizon, so its events are not read now anyway.  Every
 * ending transaction passes through this state for a moment: waiting for
 * one that wrote no event costs that moment only.
 */
void
OcxWaitForCommittingAppenders(void)
{
	VirtualTransactionId *ending;
	uint32		n = 0;
	uint32		i;

	if (!OcxLogDistributed())
		return;
	ending = palloc(sizeof(VirtualTransactionId) * ProcGlobal->allProcCount);
	for (i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		LocalTransactionId lxid = InvalidLocalTransactionId;

		if (proc == MyProc || proc->databaseId != MyDatabaseId)
			continue;
		LWLockAcquire(&proc->fpInfoLock, LW_SHARED);
		if (LocalTransactionIdIsValid(proc->fpLocalTransactionId) &&
			!LocalTransactionIdIsValid(proc->lxid))
			lxid = proc->fpLocalTransactionId;
		LWLockRelease(&proc->fpInfoLock);
		/*
		 * A transaction that is starting holds its lock a moment before it
		 * sets its lxid (StartTransaction): not one to wait for.
		 */
		if (LocalTransactionIdIsValid(lxid) && proc->lxid != lxid)
		{
			ending[n].backendId = proc->backendId;
			ending[n].localTransactionId = lxid;
			n++;
		}
	}
	for (i = 0; i < n; i++)
		VirtualXactLock(ending[i], true);
	pfree(ending);
}
