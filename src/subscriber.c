/*
 * subscriber.c
 *		Log order on a logical-replication subscriber of ocx.events.
 *
 * A subscriber receives the publisher's rows, and with them the publisher's
 * log txids.  Those mean nothing against the subscriber's own snapshots, so
 * the readers' horizon (logspace.c) could pass an event the apply worker has
 * not committed yet, or never pass one.  The subscriber has an order of its
 * own instead: its apply worker applies the publisher's transactions one at
 * a time, in commit order, each in a local transaction.  Giving every applied
 * event the log txid of that local transaction makes the subscriber's log
 * order the apply order, and every reader's horizon rule holds unchanged:
 * an applied event becomes visible when its apply transaction commits, and
 * nothing can commit below a horizon once it is passed.
 *
 * ocx._local_log_order() is that trigger, BEFORE INSERT on ocx.events (it
 * sets txid) and BEFORE INSERT OR UPDATE on ocx.streams (an append's first
 * write on the publisher, so the apply transaction registers as an appender
 * before it takes its xid, for ocx.horizon = 'appenders').  The install
 * script creates both disabled; ocx.set_logical_subscriber() enables them
 * as REPLICA triggers, which fire only under session_replication_role =
 * replica.  Of the sessions that run in that role, only a logical
 * replication worker is changed: a pg_restore --disable-triggers, which also
 * runs as replica, keeps the txids it restores (logspace.c's offset is what
 * makes those safe).  The txid is not hashed (docs/integrity.md), so the hash
 * chain and ocx.verify() hold on the subscriber.
 *
 * Who runs it: the apply worker, as the subscription's owner.  It reads
 * nothing and writes only the row it is given.
 */
#include "ocx.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "replication/logicalworker.h"
#include "utils/rel.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_local_log_order);

Datum
ocx_local_log_order(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	int			attnum;
	Datum		value;
	bool		isnull = false;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._local_log_order() must be a BEFORE INSERT or UPDATE row trigger")));

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	/* a restore (or anything else) run as replica keeps what it writes */
	if (!IsLogicalWorker())
		return PointerGetDatum(tuple);

	tupdesc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(tupdesc, "txid");
	if (attnum <= 0 || TupleDescAttr(tupdesc, attnum - 1)->atttypid != XID8OID)
	{
		/* ocx.streams: only register as an appender before the xid */
		OcxAppenderEnter();
		return PointerGetDatum(tuple);
	}

	/* the local apply transaction's log txid (registers it as an appender) */
	value = FullTransactionIdGetDatum(FullTransactionIdFromU64(OcxLogTxid()));
	OcxWakeWorkerAtCommit();
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, tupdesc, 1, &attnum,
													 &value, &isnull));
}
