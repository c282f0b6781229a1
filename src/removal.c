/*
 * removal.c
 *		What leaves the log (issue 14, docs/retention.md): ocx.delete_stream
 *		and retention, the worker's UNIT_RETENTION.
 *
 * Soft delete records the stream's last version in ocx.streams.hidden_through:
 * stream reads (read_stream, last_event, load) start after it, appends go on
 * at the next version, the log (read_all, projections, subscriptions) is
 * unchanged.  Hard delete removes the stream's events and marks its row
 * (ocx.streams.deleted): a tombstone, which refuses every later append
 * (OX641, append.c).  Both lock the stream's row first, as an append does, so
 * a delete and an append of the same stream are serialized.
 *
 * Retention: each policy of ocx.retention caps the streams of a category by
 * count (keep the last max_count versions) and/or age (remove events older
 * than max_age).  The worker removes, per stream, the longest prefix of its
 * oldest events that the policy condemns AND that every consumer has
 * consumed: below the log horizon and at or below the slowest checkpoint of
 * the async projections (each partition, and a blue/green shadow), the
 * acknowledged cursor of every subscription partition and, when sagas are
 * defined, the saga cursor.  So no consumer ever finds a gap.  At most
 * RETENTION_BATCH events per transaction, one ocx.removals row per stream.
 * Its transactions are bystanders (OcxBystanderEnter, called by pool.c before
 * the step takes an xid): they never write to the log and hold back no
 * reader's horizon.
 *
 * Events are deleted through OcxRemoveStreamEvents (append.c), the one
 * controlled exception to the immutability trigger.
 *
 * As whom: ocx.delete_stream is SECURITY DEFINER (ocx_owner, under the
 * caller's ocx.tenant); a hard delete needs the caller (OcxCaller) to have
 * ocx_owner's privileges or ocx_admin's (a superuser has both), else 42501.
 * Retention runs in the database worker (the bootstrap superuser, so across
 * tenants).
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_security.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_delete_stream);

/* the most events one retention transaction removes */
#define RETENTION_BATCH			500
/* the most streams one retention transaction looks at */
#define RETENTION_STREAMS		64
/* after a sweep that ended with nothing more to do at once, the rest before the next */
#define RETENTION_REST_MS		1000

/* The int8 in column col of row 0 of the last SPI result (0 when NULL). */
static int64
Int64At(int col, bool *isnull)
{
	bool		null;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &null);

	if (isnull)
		*isnull = null;
	return null ? 0 : DatumGetInt64(d);
}

/* 42501 unless the caller may remove events: ocx_owner's or ocx_admin's privileges. */
static void
RequireRemover(const char *stream_id)
{
	Oid			caller = OcxCaller();
	Oid			admin = get_role_oid(OCX_AUTHOR_ROLE, true);

	if (has_privs_of_role(caller, OcxOwnerRole()) ||
		(OidIsValid(admin) && has_privs_of_role(caller, admin)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to hard-delete stream \"%s\"", stream_id),
			 errdetail("Only ocx_owner, members of ocx_admin and superusers remove events from the log."),
			 errhint("A soft delete (hard => false) hides the stream from stream reads.")));
}

/*
 * ocx.delete_stream(stream_id text, expected_version bigint, hard boolean
 * DEFAULT false) -> bigint: the stream's last version, now deleted.
 */
Datum
ocx_delete_stream(PG_FUNCTION_ARGS)
{
	text	   *sid_text;
	char	   *sid;
	bool		hard = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[6] = {TEXTOID, INT8OID, INT8OID, INT8OID, NAMEOID, BYTEAOID};
	int64		version;
	int64		hidden;
	bool		isnull;
	Datum		head;
	bool		head_null;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id must not be null")));
	sid_text = PG_GETARG_TEXT_PP(0);
	OcxCheckStreamId(sid_text);
	sid = text_to_cstring(sid_text);
	if (!PG_ARGISNULL(1) && PG_GETARG_INT64(1) < -1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EXPECTED_VERSION),
				 errmsg("invalid expected version " INT64_FORMAT, PG_GETARG_INT64(1)),
				 errhint("Use NULL (any), ocx.stream_exists() or the version you read.")));
	if (hard)
		RequireRemover(sid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	args[0] = PointerGetDatum(sid_text);

	/* the stream's row, locked as an append locks it */
	if (SPI_execute_with_args("SELECT s.version, s.hidden_through, s.deleted, s.head FROM ocx.streams s "
							  "WHERE s.stream_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "ocx: could not lock the stream row");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_STREAM_NOT_FOUND),
				 errmsg("stream \"%s\" does not exist", sid)));
	version = Int64At(1, NULL);
	hidden = Int64At(2, NULL);
	/* the chain head: the hash of the last event, recorded with a hard delete */
	head = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &head_null);
	if (!head_null)
		head = datumCopy(head, false, -1);
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)))
		OcxRaiseStreamDeleted(sid);
	if (!PG_ARGISNULL(1) && PG_GETARG_INT64(1) != -1 && PG_GETARG_INT64(1) != version)
	{
		OcxCount(OCX_COUNT_CONFLICTS, 1);
		ereport(ERROR,
				(errcode(ERRCODE_OCX_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected version for stream \"%s\"", sid),
				 errdetail("Expected version " INT64_FORMAT ", actual version " INT64_FORMAT ".",
						   PG_GETARG_INT64(1), version),
				 errhint("Read the stream again, decide again, and retry with the version you read.")));
	}

	if (!hard)
	{
		if (hidden < version)
		{
			args[1] = Int64GetDatum(version);
			if (SPI_execute_with_args("UPDATE ocx.streams SET hidden_through = $2, updated_at = pg_catalog.now() "
									  "WHERE stream_id OPERATOR(pg_catalog.=) $1",
									  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "ocx: could not soft-delete the stream");
		}
		OcxCount(OCX_COUNT_STREAMS_SOFT_DELETED, 1);
	}
	else
	{
		int64		first;
		uint64		n;

		if (SPI_execute_with_args("SELECT pg_catalog.min(e.stream_version) FROM ocx.events e "
								  "WHERE e.stream_id OPERATOR(pg_catalog.=) $1",
								  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "ocx: could not read the stream");
		first = Int64At(1, &isnull);
		n = OcxRemoveStreamEvents(sid, version);

		args[1] = Int64GetDatum(version);
		if (SPI_execute_with_args("UPDATE ocx.streams SET deleted = true, hidden_through = $2, "
								  "updated_at = pg_catalog.now() WHERE stream_id OPERATOR(pg_catalog.=) $1",
								  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "ocx: could not leave the tombstone");

		args[1] = Int64GetDatum(first);
		nulls[1] = isnull ? 'n' : ' ';
		args[2] = Int64GetDatum(version);
		args[3] = Int64GetDatum((int64) n);
		args[4] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(OcxCaller(), false)));
		args[5] = head;
		nulls[5] = head_null ? 'n' : ' ';
		if (SPI_execute_with_args("INSERT INTO ocx.removals (stream_id, first_version, last_version, events, "
								  "kind, removed_by, last_hash) VALUES ($1, $2, $3, $4, 'hard_delete', $5, $6)",
								  6, types, args, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "ocx: could not record the deletion");
		OcxCount(OCX_COUNT_STREAMS_HARD_DELETED, 1);
		OcxCount(OCX_COUNT_DELETED_EVENTS, (int64) n);
	}
	SPI_finish();
	PG_RETURN_INT64(version);
}

/*
 * Retention.  The kept plans, in order of use.
 */
typedef enum RetentionPlan
{
	RP_FLOOR,
	RP_STREAMS,
	RP_PREFIX,
	RP_RECORD,
	RP_PROGRESS,
	NUM_RETENTION_PLANS
} RetentionPlan;

static const struct
{
	const char *sql;
	int			nargs;
	Oid			argtypes[7];
}			retention_plan_defs[NUM_RETENTION_PLANS] = {
	/*
	 * The log horizon and the slowest consumer's cursor (none: NULL).  Inline
	 * projections take their events in the append, so they hold nothing; a
	 * partitioned projection's own row is not its checkpoint, its partitions'
	 * rows are, and during its blue/green rebuild its partitions' shadow rows.
	 */
	[RP_FLOOR] = {
		"SELECT ocx.log_horizon(), f.t, f.p FROM (SELECT NULL::pg_catalog.xid8 AS t, NULL::bigint AS p) z "
		"LEFT JOIN LATERAL (SELECT c.t, c.p FROM ("
		" SELECT p.checkpoint_txid AS t, p.checkpoint_position AS p FROM ocx.projections p"
		"  WHERE p.mode OPERATOR(pg_catalog.=) 'async' AND NOT EXISTS (SELECT FROM ocx.projection_partitions pp"
		"   WHERE pp.projection OPERATOR(pg_catalog.=) p.name)"
		" UNION ALL SELECT pp.checkpoint_txid, pp.checkpoint_position FROM ocx.projection_partitions pp"
		" UNION ALL SELECT p.shadow_checkpoint_txid, p.shadow_checkpoint_position FROM ocx.projections p"
		"  WHERE p.shadow_checkpoint_txid IS NOT NULL AND p.shadow_checkpoint_position IS NOT NULL"
		" UNION ALL SELECT s.checkpoint_txid, s.checkpoint_position FROM ocx.projection_shadow_partitions s"
		" UNION ALL SELECT sp.acked_txid, sp.acked_position FROM ocx.subscription_partitions sp"
		" UNION ALL SELECT sc.txid, sc.global_position FROM ocx.saga_cursor sc"
		"  WHERE EXISTS (SELECT FROM ocx.saga_definitions)"
		") c ORDER BY ocx.cursor(c.t, c.p) LIMIT 1) f ON true",
		0, {InvalidOid}
	},

	/*
	 * Streams of a category with a policy whose oldest event the policy
	 * condemns, from the one after $1 on (each transaction goes on where the
	 * last one stopped).  Driven by the policies: the streams of each
	 * policy's category through streams_category_idx (OFFSET 0 keeps the
	 * planner from joining every stream first, which it did while
	 * ocx.retention had never been analyzed: a pass over every stream of
	 * the database on every wake of the worker, with no policy at all).
	 */
	[RP_STREAMS] = {
		"SELECT s.stream_id, s.version OPERATOR(pg_catalog.-) r.max_count, "
		"pg_catalog.now() OPERATOR(pg_catalog.-) r.max_age, r.category "
		"FROM ocx.retention r CROSS JOIN LATERAL (SELECT s.stream_id, s.version, s.deleted "
		" FROM ocx.streams s WHERE s.category OPERATOR(pg_catalog.=) r.category OFFSET 0) s "
		"CROSS JOIN LATERAL (SELECT e.stream_version AS v, e.time AS t FROM ocx.events e "
		" WHERE e.stream_id OPERATOR(pg_catalog.=) s.stream_id ORDER BY e.stream_version LIMIT 1) f "
		"WHERE NOT s.deleted AND (f.v OPERATOR(pg_catalog.<=) (s.version OPERATOR(pg_catalog.-) r.max_count) "
		" OR f.t OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) r.max_age)) "
		"ORDER BY s.stream_id OPERATOR(pg_catalog.>) $1 DESC, s.stream_id LIMIT $2",
		2, {TEXTOID, INT8OID}
	},

	/*
	 * The stream's oldest events, each with whether it may go: condemned by
	 * count ($2: the last version beyond the count) or age ($3: the cutoff),
	 * and consumed (below the horizon $4, at or below the floor $5/$6).
	 */
	[RP_PREFIX] = {
		"SELECT e.stream_version, "
		"(e.stream_version OPERATOR(pg_catalog.<=) $2 OR e.time OPERATOR(pg_catalog.<) $3) "
		"AND e.txid OPERATOR(pg_catalog.<) $4 "
		"AND ($5 IS NULL OR ocx.cursor(e.txid, e.global_position) OPERATOR(ocx.<=) ocx.cursor($5, $6)), "
		"e.hash "
		"FROM ocx.events e WHERE e.stream_id OPERATOR(pg_catalog.=) $1 "
		"ORDER BY e.stream_version LIMIT $7",
		7, {TEXTOID, INT8OID, TIMESTAMPTZOID, XID8OID, XID8OID, INT8OID, INT8OID}
	},
	[RP_RECORD] = {
		"INSERT INTO ocx.removals (stream_id, first_version, last_version, events, kind, last_hash) "
		"VALUES ($1, $2, $3, $4, 'retention', $5)",
		5, {TEXTOID, INT8OID, INT8OID, INT8OID, BYTEAOID}
	},
	[RP_PROGRESS] = {
		"UPDATE ocx.retention SET events_removed = events_removed OPERATOR(pg_catalog.+) $2, "
		"batches = batches OPERATOR(pg_catalog.+) 1, last_batch_at = pg_catalog.now() "
		"WHERE category OPERATOR(pg_catalog.=) $1",
		2, {TEXTOID, INT8OID}
	},
};

static SPIPlanPtr retention_plans[NUM_RETENTION_PLANS];

/* where the next retention transaction starts (the last stream looked at) */
static char *retention_next = NULL;

/* no retention transaction before this time (a finished sweep's rest) */
static TimestampTz retention_rest_until = 0;

static uint64
RunRetentionPlan(RetentionPlan which, Datum *values, const char *nulls, bool read_only)
{
	SPIPlanPtr	plan = OcxKeptPlan(&retention_plans[which], retention_plan_defs[which].sql,
								   retention_plan_defs[which].nargs,
								   retention_plan_defs[which].argtypes);

	return OcxRunKeptPlan(plan, values, nulls, read_only);
}

/*
 * One retention transaction (the worker's UNIT_RETENTION, in the step's
 * transaction): remove up to RETENTION_BATCH events.  Returns whether there
 * may be more to remove at once.
 */
bool
OcxRetentionTick(void)
{
	Oid			nsp = get_namespace_oid(OCX_SCHEMA, true);
	MemoryContext cxt,
				old;
	Datum		horizon,
				floor_txid,
				floor_pos;
	bool		floor_null;
	bool		isnull;
	int64		budget = RETENTION_BATCH;
	uint64		nstreams;
	uint64		i;
	char	   *last = NULL;
	TimestampTz now;

	/* before the upgrade that creates it there is no policy */
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("retention", nsp)))
		return false;

	/*
	 * A sweep that ended with nothing more to remove at once rests before
	 * the next: the worker runs its units on every wake, that is after
	 * every append, and retention has no reader waiting for it.
	 */
	now = GetCurrentTimestamp();
	if (now < retention_rest_until)
		return false;
	retention_rest_until = TimestampTzPlusMilliseconds(now, RETENTION_REST_MS);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx retention", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");

	{
		Datum		args[2];
		SPITupleTable *streams;

		args[0] = CStringGetTextDatum(retention_next ? retention_next : "");
		args[1] = Int64GetDatum(RETENTION_STREAMS);
		nstreams = RunRetentionPlan(RP_STREAMS, args, NULL, true);
		streams = SPI_tuptable;
		if (nstreams == 0)
		{
			SPI_finish();
			MemoryContextSwitchTo(old);
			MemoryContextDelete(cxt);
			if (retention_next)
				pfree(retention_next);
			retention_next = NULL;
			return false;
		}

		RunRetentionPlan(RP_FLOOR, NULL, NULL, true);
		horizon = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		floor_txid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &floor_null);
		floor_pos = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);

		for (i = 0; i < nstreams && budget > 0; i++)
		{
			HeapTuple	st = streams->vals[i];
			TupleDesc	sd = streams->tupdesc;
			Datum		pargs[7];
			char		pnulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
			bool		null;
			char	   *sid;
			int64		first = 0,
						through = 0,
						n = 0;
			Datum		through_hash = (Datum) 0;
			bool		through_hash_null = true;
			uint64		rows,
						r;

			CHECK_FOR_INTERRUPTS();
			pargs[0] = SPI_getbinval(st, sd, 1, &null);
			sid = TextDatumGetCString(pargs[0]);
			last = sid;
			pargs[1] = SPI_getbinval(st, sd, 2, &null);
			pnulls[1] = null ? 'n' : ' ';
			pargs[2] = SPI_getbinval(st, sd, 3, &null);
			pnulls[2] = null ? 'n' : ' ';
			pargs[3] = horizon;
			pargs[4] = floor_txid;
			pnulls[4] = floor_null ? 'n' : ' ';
			pargs[5] = floor_pos;
			pnulls[5] = floor_null ? 'n' : ' ';
			pargs[6] = Int64GetDatum(budget);
			rows = RunRetentionPlan(RP_PREFIX, pargs, pnulls, true);

			/* the longest prefix that may go */
			for (r = 0; r < rows; r++)
			{
				Datum		ok = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &null);

				if (null || !DatumGetBool(ok))
					break;
				through = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &null));
				/* the chain head after the gap: the hash of the last removed event */
				through_hash = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3,
											 &through_hash_null);
				if (!through_hash_null)
					through_hash = datumCopy(through_hash, false, -1);
				if (r == 0)
					first = through;
				n++;
			}
			SPI_freetuptable(SPI_tuptable);
			if (n == 0)
				continue;

			n = (int64) OcxRemoveStreamEvents(sid, through);
			if (n > 0)
			{
				Datum		rargs[5];
				char		rnulls[5] = {' ', ' ', ' ', ' ', ' '};

				rargs[0] = pargs[0];
				rargs[1] = Int64GetDatum(first);
				rargs[2] = Int64GetDatum(through);
				rargs[3] = Int64GetDatum(n);
				rargs[4] = through_hash;
				rnulls[4] = through_hash_null ? 'n' : ' ';
				RunRetentionPlan(RP_RECORD, rargs, rnulls, false);
				rargs[0] = SPI_getbinval(st, sd, 4, &null);
				rargs[1] = Int64GetDatum(n);
				RunRetentionPlan(RP_PROGRESS, rargs, NULL, false);
				OcxCount(OCX_COUNT_RETENTION_BATCHES, 1);
				OcxCount(OCX_COUNT_RETENTION_EVENTS, n);
				budget -= n;
			}
		}
	}

	/* the next transaction goes on after the last stream looked at */
	if (retention_next)
		pfree(retention_next);
	retention_next = (budget <= 0 || i < nstreams || nstreams == RETENTION_STREAMS) && last ?
		MemoryContextStrdup(TopMemoryContext, last) : NULL;
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	/* a sweep going on, or more to remove, does not rest */
	if (budget <= 0 || retention_next != NULL)
		retention_rest_until = 0;
	/* more at once only when the budget ran out, so a stalled consumer never spins the worker */
	return budget <= 0;
}
