/*
 * append.c
 *		ocx.append, ocx.append_event and the append core they share.
 *
 * An append is: parse and check every event (nothing is written until the
 * whole batch is known to be good), take the stream's row in ocx.streams as
 * the lock (a conditional UPDATE or an INSERT ... ON CONFLICT, never
 * max(stream_version)), then insert the batch with one statement.  Every
 * event stores its writer's top-level transaction id, which readers of the
 * whole log use for the gap-free log order (docs/architecture.md).
 *
 * Stream ids are global, but a session sees only the streams of its tenant
 * (row-level security on ocx.streams).  Appending to a stream id another
 * tenant holds fails with OX012, found only on the failure paths: the
 * conditional UPDATE or INSERT ... ON CONFLICT DO NOTHING took no row and the
 * stream is invisible (then one index probe below row-level security says
 * whether the id is taken), or ON CONFLICT DO UPDATE met the invisible row
 * (PostgreSQL's row-level security error, translated).  An append to one's
 * own stream does no extra work.
 *
 * Idempotency follows EventStoreDB: a retry that repeats a batch with the
 * same (source, id) pairs, stored in the same stream at consecutive versions
 * with the same type and data, succeeds and writes nothing; any other reuse
 * of an id is an error.  The check only runs when the caller supplies ids
 * (generated ids are new by construction), so the common path pays nothing.
 *
 * SPI plans are prepared once per backend and kept; the plan cache replans
 * them when the tables change (DROP/CREATE EXTENSION included), and every
 * name in them is schema-qualified.
 *
 * The log is the ground floor: the subsystems built on it join the append
 * through two hooks that their Inits set (ocx.h), ocx_check_event_hook for
 * each event before anything is written (the contract) and
 * ocx_after_append_hook after the insert in the same transaction (inline
 * projections, the worker's wake-up), and this file calls none of them.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_collation.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/resowner.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "tcop/utility.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_append);
PG_FUNCTION_INFO_V1(ocx_append_event);
PG_FUNCTION_INFO_V1(ocx_append_cloudevents);
PG_FUNCTION_INFO_V1(ocx_refuse_modification);
PG_FUNCTION_INFO_V1(ocx_refuse_tombstone);
PG_FUNCTION_INFO_V1(ocx_stream_arg);
PG_FUNCTION_INFO_V1(ocx_count_arg);
PG_FUNCTION_INFO_V1(ocx_version_arg);
PG_FUNCTION_INFO_V1(ocx_last_append_cursor);

/* set by the subsystems' Inits, chained (ocx.h) */
OcxCheckEventHook ocx_check_event_hook = NULL;
OcxAfterAppendHook ocx_after_append_hook = NULL;

/*
 * The expected version "the stream exists, any version": what
 * ocx.stream_exists() returns (21_reads.sql); the only negative one allowed.
 */
#define OCX_MAX_STREAM_ID_LEN	1024
#define OCX_MAX_TYPE_LEN		256

typedef enum OcxPlan
{
	PLAN_ADVANCE_ANY,
	PLAN_CREATE,
	PLAN_ADVANCE,
	PLAN_CURRENT,
	PLAN_LOCK,
	PLAN_INSERT_ONE,
	PLAN_INSERT_MANY,
	PLAN_INSERT_ONE_TAGGED,
	PLAN_INSERT_MANY_TAGGED,
	PLAN_FIND_IDS,
	PLAN_ID_TAKEN,
	PLAN_ONE_ANY,
	PLAN_ONE_NEW,
	PLAN_ONE_AT,
	PLAN_PREV_TXID,
	PLAN_ADVANCE_EXISTING,
	PLAN_ONE_EXISTING,
	/* the chained variants (integrity.c; used when OcxChainOn()) */
	PLAN_HEAD,
	PLAN_INSERT_ONE_CHAIN,
	PLAN_INSERT_MANY_CHAIN,
	PLAN_INSERT_ONE_TAGGED_CHAIN,
	PLAN_INSERT_MANY_TAGGED_CHAIN,
	PLAN_ONE_ANY_CHAIN,
	PLAN_ONE_NEW_CHAIN,
	PLAN_ONE_AT_CHAIN,
	PLAN_ONE_EXISTING_CHAIN,
	/* a distributed log: the single event in two routable statements */
	PLAN_STREAM_ANY_CHAIN,
	PLAN_STREAM_NEW_CHAIN,
	PLAN_STREAM_AT_CHAIN,
	PLAN_STREAM_EXISTING_CHAIN,
	PLAN_INSERT_ONE_HASHED,
	NUM_PLANS
} OcxPlan;

typedef struct OcxPlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[16];
} OcxPlanDef;

#define EVENT_COLUMNS "stream_id, stream_version, event_id, source, type, schema_version, " \
	"time, data, metadata, correlation_id, causation_id, tenant_id, txid"

#define ONE_EVENT_FROM_S \
	"INSERT INTO ocx.events (" EVENT_COLUMNS ") " \
	"SELECT $1, s.version, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 " \
	"FROM s RETURNING stream_version, global_position"
/*
 * Tamper evidence (docs/integrity.md): the single-event statements hash the
 * event with ocx.event_hash() in the statement that bumps the stream's
 * version, from the head it replaces, and store the new head there; the
 * event takes the stream's new head as its hash.
 */
#define EVENT_HASH(prev, version) \
	"ocx._event_hash(" prev ", $1, " version ", $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL::text[])"
#define ONE_EVENT_FROM_S_CHAIN \
	"INSERT INTO ocx.events (" EVENT_COLUMNS ", hash) " \
	"SELECT $1, s.version, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, s.head " \
	"FROM s RETURNING stream_version, global_position"
/* a batch's hashes come from C ($15, integrity.c); its last is the new head ($16) */
#define SET_HEAD "WITH hd AS (UPDATE ocx.streams SET head = $16 WHERE stream_id OPERATOR(pg_catalog.=) $1) "
#define ONE_EVENT_TYPES \
	{TEXTOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID, \
	JSONBOID, JSONBOID, UUIDOID, UUIDOID, TEXTOID, XID8OID, TEXTOID, INT8OID}

/*
 * The stream row statements of the chained single-event forms: the new
 * version and the new head (the event's hash).  In the PLAN_ONE_*_CHAIN
 * statements they feed the event's INSERT ... SELECT as a CTE; on a
 * distributed log they run alone (PLAN_STREAM_*_CHAIN, AppendOneRouted).
 */
#define STREAM_ANY_CHAIN \
	"INSERT INTO ocx.streams AS s (stream_id, category, version, tenant_id, head) " \
	"VALUES ($1, $14, 1, $12, " EVENT_HASH("NULL::bytea", "1::bigint") ") ON CONFLICT (stream_id) DO UPDATE " \
	"SET version = s.version OPERATOR(pg_catalog.+) 1, updated_at = excluded.updated_at, " \
	"head = " EVENT_HASH("s.head", "s.version OPERATOR(pg_catalog.+) 1") " " \
	"RETURNING s.version, s.head"
#define STREAM_NEW_CHAIN \
	"INSERT INTO ocx.streams (stream_id, category, version, tenant_id, head) " \
	"VALUES ($1, $14, 1, $12, " EVENT_HASH("NULL::bytea", "1::bigint") ") " \
	"ON CONFLICT (stream_id) DO NOTHING RETURNING version, head"
#define STREAM_AT_CHAIN \
	"UPDATE ocx.streams SET version = version OPERATOR(pg_catalog.+) 1, " \
	"updated_at = pg_catalog.now(), head = " EVENT_HASH("head", "version OPERATOR(pg_catalog.+) 1") " " \
	"WHERE stream_id OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $15 " \
	"RETURNING version, head"
#define STREAM_EXISTING_CHAIN \
	"UPDATE ocx.streams SET version = version OPERATOR(pg_catalog.+) 1, " \
	"updated_at = pg_catalog.now(), head = " EVENT_HASH("head", "version OPERATOR(pg_catalog.+) 1") " " \
	"WHERE stream_id OPERATOR(pg_catalog.=) $1 " \
	"RETURNING version, head"

/*
 * ON CONFLICT DO UPDATE sets updated_at from excluded.updated_at (the column
 * default, now(): the same value) rather than calling now() itself: Citus
 * refuses functions that are not IMMUTABLE in DO UPDATE SET on distributed
 * tables (docs/scaling.md, "Citus"), and evaluates the default on the
 * coordinator.
 */
static const OcxPlanDef plan_defs[NUM_PLANS] = {
	[PLAN_ADVANCE_ANY] = {
		"INSERT INTO ocx.streams AS s (stream_id, category, version, tenant_id) "
		"VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO UPDATE "
		"SET version = s.version OPERATOR(pg_catalog.+) excluded.version, "
		"updated_at = excluded.updated_at RETURNING s.version",
		4, {TEXTOID, TEXTOID, INT8OID, TEXTOID}
	},
	[PLAN_CREATE] = {
		"INSERT INTO ocx.streams (stream_id, category, version, tenant_id) "
		"VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO NOTHING RETURNING version",
		4, {TEXTOID, TEXTOID, INT8OID, TEXTOID}
	},
	[PLAN_ADVANCE] = {
		"UPDATE ocx.streams SET version = version OPERATOR(pg_catalog.+) $3, "
		"updated_at = pg_catalog.now() "
		"WHERE stream_id OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2 "
		"RETURNING version",
		3, {TEXTOID, INT8OID, INT8OID}
	},
	[PLAN_CURRENT] = {
		"SELECT version, deleted FROM ocx.streams WHERE stream_id OPERATOR(pg_catalog.=) $1",
		1, {TEXTOID}
	},
	[PLAN_LOCK] = {
		"SELECT version FROM ocx.streams WHERE stream_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
		1, {TEXTOID}
	},
	[PLAN_PREV_TXID] = {
		"SELECT txid FROM ocx.events WHERE stream_id OPERATOR(pg_catalog.=) $1 "
		"AND stream_version OPERATOR(pg_catalog.=) $2",
		2, {TEXTOID, INT8OID}
	},
	[PLAN_INSERT_ONE] = {
		"INSERT INTO ocx.events (" EVENT_COLUMNS ") "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
		"RETURNING global_position",
		13, {TEXTOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, JSONBOID, UUIDOID, UUIDOID, TEXTOID, XID8OID}
	},
	/*
	 * Tagged events (dcb.c): only these statements name the tags column, so
	 * untagged appends work against the schemas of 0.1.0 and 0.2.0 too
	 * (before ALTER EXTENSION UPDATE) and pay nothing for it.
	 */
	[PLAN_INSERT_ONE_TAGGED] = {
		"INSERT INTO ocx.events (" EVENT_COLUMNS ", tags) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
		"RETURNING global_position",
		14, {TEXTOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, JSONBOID, UUIDOID, UUIDOID, TEXTOID, XID8OID, TEXTARRAYOID}
	},
	[PLAN_INSERT_MANY] = {
		"INSERT INTO ocx.events (" EVENT_COLUMNS ") "
		"SELECT $1, $2 OPERATOR(pg_catalog.+) u.ord, u.id, u.source, u.type, u.sv, u.t, "
		"u.d, u.m, u.c, u.ca, $12, $13 "
		"FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
		"pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8), "
		"pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11)) "
		"WITH ORDINALITY AS u(id, source, type, sv, t, d, m, c, ca, ord) "
		"RETURNING global_position",
		13, {TEXTOID, INT8OID, UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, JSONBARRAYOID, JSONBARRAYOID, UUIDARRAYOID, UUIDARRAYOID,
		TEXTOID, XID8OID}
	},
	[PLAN_INSERT_MANY_TAGGED] = {
		"INSERT INTO ocx.events (" EVENT_COLUMNS ", tags) "
		"SELECT $1, $2 OPERATOR(pg_catalog.+) u.ord, u.id, u.source, u.type, u.sv, u.t, "
		"u.d, u.m, u.c, u.ca, $12, $13, "
		"CASE WHEN u.tg IS NOT NULL THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(u.tg)) END "
		"FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
		"pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8), "
		"pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11), "
		"pg_catalog.unnest($14)) "
		"WITH ORDINALITY AS u(id, source, type, sv, t, d, m, c, ca, tg, ord) "
		"RETURNING global_position",
		14, {TEXTOID, INT8OID, UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, JSONBARRAYOID, JSONBARRAYOID, UUIDARRAYOID, UUIDARRAYOID,
		TEXTOID, XID8OID, JSONBARRAYOID}
	},
	/* run as the bootstrap superuser: below row-level security (IdTakenUnseen) */
	[PLAN_ID_TAKEN] = {
		"SELECT FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS k(source, id) "
		"JOIN ocx.events e ON e.source OPERATOR(pg_catalog.=) k.source "
		"AND e.event_id OPERATOR(pg_catalog.=) k.id LIMIT 1",
		2, {TEXTARRAYOID, UUIDARRAYOID}
	},
	[PLAN_FIND_IDS] = {
		"SELECT k.ord, e.stream_id, e.stream_version, e.type, e.data, e.txid, e.global_position "
		"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) "
		"WITH ORDINALITY AS k(source, id, ord) "
		"JOIN ocx.events e ON e.source OPERATOR(pg_catalog.=) k.source "
		"AND e.event_id OPERATOR(pg_catalog.=) k.id",
		2, {TEXTARRAYOID, UUIDARRAYOID}
	},

	/*
	 * The single-event fast path: take the stream row and insert the event in
	 * one statement.  $2 is unused (the version comes from the stream row),
	 * $14 is the category, $15 the expected version.
	 */
	[PLAN_ONE_ANY] = {
		"WITH s AS (INSERT INTO ocx.streams AS s (stream_id, category, version, tenant_id) "
		"VALUES ($1, $14, 1, $12) ON CONFLICT (stream_id) DO UPDATE "
		"SET version = s.version OPERATOR(pg_catalog.+) 1, updated_at = excluded.updated_at "
		"RETURNING s.version) "
		ONE_EVENT_FROM_S,
		15, ONE_EVENT_TYPES
	},
	[PLAN_ONE_NEW] = {
		"WITH s AS (INSERT INTO ocx.streams (stream_id, category, version, tenant_id) "
		"VALUES ($1, $14, 1, $12) ON CONFLICT (stream_id) DO NOTHING RETURNING version) "
		ONE_EVENT_FROM_S,
		15, ONE_EVENT_TYPES
	},
	[PLAN_ONE_AT] = {
		"WITH s AS (UPDATE ocx.streams SET version = version OPERATOR(pg_catalog.+) 1, "
		"updated_at = pg_catalog.now() "
		"WHERE stream_id OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $15 "
		"RETURNING version) "
		ONE_EVENT_FROM_S,
		15, ONE_EVENT_TYPES
	},

	/* ocx.stream_exists(): the stream row must be there, at any version */
	[PLAN_ADVANCE_EXISTING] = {
		"UPDATE ocx.streams SET version = version OPERATOR(pg_catalog.+) $2, "
		"updated_at = pg_catalog.now() "
		"WHERE stream_id OPERATOR(pg_catalog.=) $1 "
		"RETURNING version",
		2, {TEXTOID, INT8OID}
	},
	[PLAN_ONE_EXISTING] = {
		"WITH s AS (UPDATE ocx.streams SET version = version OPERATOR(pg_catalog.+) 1, "
		"updated_at = pg_catalog.now() "
		"WHERE stream_id OPERATOR(pg_catalog.=) $1 "
		"RETURNING version) "
		ONE_EVENT_FROM_S,
		15, ONE_EVENT_TYPES
	},

	/* the head a batch chains from, read under the stream's row lock */
	[PLAN_HEAD] = {
		"SELECT head FROM ocx.streams WHERE stream_id OPERATOR(pg_catalog.=) $1",
		1, {TEXTOID}
	},
	[PLAN_INSERT_ONE_CHAIN] = {
		SET_HEAD
		"INSERT INTO ocx.events (" EVENT_COLUMNS ", hash) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15) "
		"RETURNING global_position",
		16, {TEXTOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, JSONBOID, UUIDOID, UUIDOID, TEXTOID, XID8OID, TEXTARRAYOID, BYTEAOID, BYTEAOID}
	},
	[PLAN_INSERT_ONE_TAGGED_CHAIN] = {
		SET_HEAD
		"INSERT INTO ocx.events (" EVENT_COLUMNS ", tags, hash) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
		"RETURNING global_position",
		16, {TEXTOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, JSONBOID, UUIDOID, UUIDOID, TEXTOID, XID8OID, TEXTARRAYOID, BYTEAOID, BYTEAOID}
	},
	[PLAN_INSERT_MANY_CHAIN] = {
		SET_HEAD
		"INSERT INTO ocx.events (" EVENT_COLUMNS ", hash) "
		"SELECT $1, $2 OPERATOR(pg_catalog.+) u.ord, u.id, u.source, u.type, u.sv, u.t, "
		"u.d, u.m, u.c, u.ca, $12, $13, u.h "
		"FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
		"pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8), "
		"pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11), "
		"pg_catalog.unnest($15)) "
		"WITH ORDINALITY AS u(id, source, type, sv, t, d, m, c, ca, h, ord) "
		"RETURNING global_position",
		16, {TEXTOID, INT8OID, UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, JSONBARRAYOID, JSONBARRAYOID, UUIDARRAYOID, UUIDARRAYOID,
		TEXTOID, XID8OID, JSONBARRAYOID, BYTEAARRAYOID, BYTEAOID}
	},
	[PLAN_INSERT_MANY_TAGGED_CHAIN] = {
		SET_HEAD
		"INSERT INTO ocx.events (" EVENT_COLUMNS ", tags, hash) "
		"SELECT $1, $2 OPERATOR(pg_catalog.+) u.ord, u.id, u.source, u.type, u.sv, u.t, "
		"u.d, u.m, u.c, u.ca, $12, $13, "
		"CASE WHEN u.tg IS NOT NULL THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(u.tg)) END, u.h "
		"FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
		"pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8), "
		"pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11), "
		"pg_catalog.unnest($14), pg_catalog.unnest($15)) "
		"WITH ORDINALITY AS u(id, source, type, sv, t, d, m, c, ca, tg, h, ord) "
		"RETURNING global_position",
		16, {TEXTOID, INT8OID, UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, JSONBARRAYOID, JSONBARRAYOID, UUIDARRAYOID, UUIDARRAYOID,
		TEXTOID, XID8OID, JSONBARRAYOID, BYTEAARRAYOID, BYTEAOID}
	},
	[PLAN_ONE_ANY_CHAIN] = {
		"WITH s AS (" STREAM_ANY_CHAIN ") " ONE_EVENT_FROM_S_CHAIN,
		15, ONE_EVENT_TYPES
	},
	[PLAN_ONE_NEW_CHAIN] = {
		"WITH s AS (" STREAM_NEW_CHAIN ") " ONE_EVENT_FROM_S_CHAIN,
		15, ONE_EVENT_TYPES
	},
	[PLAN_ONE_AT_CHAIN] = {
		"WITH s AS (" STREAM_AT_CHAIN ") " ONE_EVENT_FROM_S_CHAIN,
		15, ONE_EVENT_TYPES
	},
	[PLAN_ONE_EXISTING_CHAIN] = {
		"WITH s AS (" STREAM_EXISTING_CHAIN ") " ONE_EVENT_FROM_S_CHAIN,
		15, ONE_EVENT_TYPES
	},

	/*
	 * A distributed log (AppendOneRouted): the stream row alone, then the
	 * event with $2 the version and $14 the hash the first returned.  Same
	 * parameters as the PLAN_ONE_* forms.
	 */
	[PLAN_STREAM_ANY_CHAIN] = {STREAM_ANY_CHAIN, 15, ONE_EVENT_TYPES},
	[PLAN_STREAM_NEW_CHAIN] = {STREAM_NEW_CHAIN, 15, ONE_EVENT_TYPES},
	[PLAN_STREAM_AT_CHAIN] = {STREAM_AT_CHAIN, 15, ONE_EVENT_TYPES},
	[PLAN_STREAM_EXISTING_CHAIN] = {STREAM_EXISTING_CHAIN, 15, ONE_EVENT_TYPES},
	[PLAN_INSERT_ONE_HASHED] = {
		"INSERT INTO ocx.events (" EVENT_COLUMNS ", hash) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
		"RETURNING global_position",
		14, {TEXTOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, JSONBOID, UUIDOID, UUIDOID, TEXTOID, XID8OID, BYTEAOID}
	},
};

/* the chained variant of a statement, when it has one */
static const OcxPlan chain_variant[NUM_PLANS] = {
	[PLAN_INSERT_ONE] = PLAN_INSERT_ONE_CHAIN,
	[PLAN_INSERT_MANY] = PLAN_INSERT_MANY_CHAIN,
	[PLAN_INSERT_ONE_TAGGED] = PLAN_INSERT_ONE_TAGGED_CHAIN,
	[PLAN_INSERT_MANY_TAGGED] = PLAN_INSERT_MANY_TAGGED_CHAIN,
	[PLAN_ONE_ANY] = PLAN_ONE_ANY_CHAIN,
	[PLAN_ONE_NEW] = PLAN_ONE_NEW_CHAIN,
	[PLAN_ONE_AT] = PLAN_ONE_AT_CHAIN,
	[PLAN_ONE_EXISTING] = PLAN_ONE_EXISTING_CHAIN,
};

/* whether this append chains its events (OcxChainOn(), read once per append) */
static bool chain_now = false;

static SPIPlanPtr plans[NUM_PLANS];

/* Execute the kept plan for which; returns SPI_processed. */
static uint64
RunPlan(OcxPlan which, Datum *values, const char *nulls)
{
	const OcxPlanDef *def;

	if (chain_now && chain_variant[which] != 0)
		which = chain_variant[which];
	def = &plan_defs[which];
	return OcxRunKeptPlan(OcxKeptPlan(&plans[which], def->sql, def->nargs, def->argtypes),
						  values, nulls, false);
}

/* The int8 in column 1 of the first result row. */
static int64
FirstInt64(void)
{
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	Assert(!isnull);
	return DatumGetInt64(d);
}

/* The int8 in column col of the last result's row: a RETURNING global_position. */
static int64
ResultInt64(uint64 row, int col)
{
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
	Assert(!isnull);
	return DatumGetInt64(d);
}

/*
 * The cursor of the last event this session appended, for
 * ocx.last_append_cursor() (read-your-writes with ocx.wait_for).  Three
 * statics set at the end of every append that succeeds; it lives on after
 * the appending transaction commits, until the next append.  When the
 * (sub)transaction that set it rolls back, the event is gone and the cursor
 * with it: the transaction callbacks clear it.  last_subid is the
 * subtransaction that owns it while last_in_xact (its commit passes it to
 * the parent).
 */
static bool last_valid = false;
static uint64 last_txid;
static int64 last_position;
static bool last_in_xact = false;
static SubTransactionId last_subid;
static bool last_callbacks = false;

static void
LastAppendXactCallback(XactEvent event, void *arg)
{
	if (!last_in_xact)
		return;
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			last_valid = false;
			last_in_xact = false;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			last_in_xact = false;
			break;
		default:
			break;
	}
}

static void
LastAppendSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (!last_in_xact || last_subid != mySubid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		last_valid = false;
		last_in_xact = false;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		last_subid = parentSubid;
}

/*
 * Remember (txid, position) as the cursor of this session's last append;
 * ours: the event is this transaction's (its rollback takes the cursor too).
 */
static void
RememberAppend(uint64 txid, int64 position, bool ours)
{
	if (!last_callbacks)
	{
		RegisterXactCallback(LastAppendXactCallback, NULL);
		RegisterSubXactCallback(LastAppendSubXactCallback, NULL);
		last_callbacks = true;
	}
	last_valid = true;
	last_txid = txid;
	last_position = position;
	last_in_xact = ours;
	last_subid = GetCurrentSubTransactionId();
}

/*
 * ocx.import_commit() (import.c): the cursor of the last event an import
 * wrote, in this transaction, as an append's.
 */
void
OcxRememberAppend(uint64 txid, int64 position)
{
	RememberAppend(txid, position, true);
}

/* The cursor of this session's last append, for ocx.append_if (false: none). */
bool
OcxLastAppendCursor(uint64 *txid, int64 *position)
{
	if (!last_valid)
		return false;
	*txid = last_txid;
	*position = last_position;
	return true;
}

/*
 * ocx.last_append_cursor() -> ocx.cursor: the cursor of the last event the
 * last append of this session stored (or found stored, for an idempotent
 * retry); NULL before the first append and after its transaction rolled back.
 */
Datum
ocx_last_append_cursor(PG_FUNCTION_ARGS)
{
	if (!last_valid)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(OcxCursorGetDatum(last_txid, last_position));
}

void
OcxCheckStreamId(text *stream_id)
{
	int			len = VARSIZE_ANY_EXHDR(stream_id);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id must not be empty")));
	if (len > OCX_MAX_STREAM_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id is too long"),
				 errdetail("The stream id has %d bytes; the limit is %d.",
						   len, OCX_MAX_STREAM_ID_LEN)));
}

/* The category of a stream: the text before the first "-" (all of it if none). */
static char *
StreamCategory(const char *sid)
{
	const char *dash = strchr(sid, '-');

	return dash ? pnstrdup(sid, dash - sid) : pstrdup(sid);
}

/*
 * A new UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.
 * Time-ordered ids keep inserts into the (source, event_id) index at its
 * right edge instead of scattering them over the whole tree.
 */
static void
NewEventId(pg_uuid_t *u)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		ms;
	int			i;

	ms = (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	for (i = 5; i >= 0; i--)
	{
		u->data[i] = (unsigned char) (ms & 0xff);
		ms >>= 8;
	}
	if (!pg_strong_random(&u->data[6], UUID_LEN - 6))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	u->data[6] = (u->data[6] & 0x0f) | 0x70;	/* version 7 */
	u->data[8] = (u->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

static char *
UuidToCString(pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/* A non-empty JSON string, or an ocx error naming the event and key. */
static char *
RequireString(JsonbValue *v, int index, const char *key, bool allow_empty)
{
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("\"%s\" of event %d must be a string, not %s",
						key, index, OcxJsonbTypeName(v))));
	if (!allow_empty && v->val.string.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("\"%s\" of event %d must not be empty", key, index)));
	return OcxJsonbString(v);
}

static void
RequireUuid(JsonbValue *v, int index, const char *key, pg_uuid_t *out)
{
	char	   *s = RequireString(v, index, key, true);

	if (!OcxParseUuid(s, out))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("\"%s\" of event %d is not a valid UUID: \"%s\"", key, index, s)));
}

static Jsonb *
RequireObject(JsonbValue *v, int index, const char *key)
{
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("\"%s\" of event %d must be a JSON object, not %s",
						key, index, OcxJsonbTypeName(v))));
	return OcxJsonbFromBinary(v);
}

static void
CheckType(const char *type, int index)
{
	if (type[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("\"type\" of event %d must not be empty", index)));
	if (strlen(type) > OCX_MAX_TYPE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("\"type\" of event %d is too long", index),
				 errdetail("Event types are limited to %d bytes.", OCX_MAX_TYPE_LEN)));
}

/*
 * Fill *ev from one event object of an append batch ({"type": ..., "data": ...}
 * plus optional keys).  index is 1-based, for messages.  Unknown keys are
 * refused: a misspelt "metdata" must not vanish silently.  with_stream_id:
 * the object names its stream (ocx.append_if).
 */
void
OcxParseEventObjectExt(JsonbContainer *obj, int index, OcxNewEvent *ev,
					   bool with_stream_id)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;
	char	   *datacontenttype = NULL;

	memset(ev, 0, sizeof(*ev));
	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = OcxJsonbString(&k);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);

		/* null means "not given" for every optional key */
		if (v.type == jbvNull && strcmp(key, "type") != 0)
			continue;

		if (strcmp(key, "type") == 0)
		{
			ev->type = RequireString(&v, index, key, false);
			CheckType(ev->type, index);
		}
		else if (strcmp(key, "data") == 0)
			ev->data = RequireObject(&v, index, key);
		else if (strcmp(key, "metadata") == 0)
			ev->metadata = RequireObject(&v, index, key);
		else if (strcmp(key, "id") == 0)
		{
			RequireUuid(&v, index, key, &ev->id);
			ev->has_id = true;
		}
		else if (strcmp(key, "source") == 0)
		{
			ev->source = RequireString(&v, index, key, false);
			if (strlen(ev->source) > OCX_MAX_SOURCE_LEN)
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_EVENT),
						 errmsg("\"source\" of event %d is too long", index),
						 errdetail("Sources are limited to %d bytes; this one has %zu.",
								   OCX_MAX_SOURCE_LEN, strlen(ev->source)),
						 errhint("Use a short URI-reference that names the producer.")));
		}
		else if (strcmp(key, "time") == 0)
		{
			char	   *s = RequireString(&v, index, key, false);

			if (!OcxParseTimestamp(s, &ev->time))
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_EVENT),
						 errmsg("\"time\" of event %d is not a valid timestamp: \"%s\"", index, s),
						 errhint("Use RFC 3339, such as 2024-05-01T12:00:00Z.")));
			ev->has_time = true;
		}
		else if (strcmp(key, "schema_version") == 0)
		{
			char	   *s;
			char	   *end;
			long		n;

			if (v.type != jbvNumeric)
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_EVENT),
						 errmsg("\"schema_version\" of event %d must be a number, not %s",
								index, OcxJsonbTypeName(&v))));
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v.val.numeric)));
			errno = 0;
			n = strtol(s, &end, 10);
			if (*end != '\0' || errno != 0 || n < 1 || n > PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_EVENT),
						 errmsg("\"schema_version\" of event %d must be a positive integer, not %s",
								index, s)));
			ev->schema_version = (int32) n;
		}
		else if (strcmp(key, "correlation_id") == 0)
		{
			RequireUuid(&v, index, key, &ev->correlation_id);
			ev->has_correlation_id = true;
		}
		else if (strcmp(key, "causation_id") == 0)
		{
			RequireUuid(&v, index, key, &ev->causation_id);
			ev->has_causation_id = true;
		}
		else if (strcmp(key, "datacontenttype") == 0)
			datacontenttype = RequireString(&v, index, key, false);
		else if (strcmp(key, "tags") == 0)
			OcxParseTags(&v, "event", index, &ev->tags, &ev->ntags);
		else if (with_stream_id && strcmp(key, "stream_id") == 0)
		{
			ev->stream_id = RequireString(&v, index, key, true);
			OcxCheckStreamId(cstring_to_text(ev->stream_id));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("unknown key \"%s\" in event %d", key, index),
					 errhint("An event object has the keys type, data, id, source, time, "
							 "schema_version, metadata, correlation_id, causation_id, datacontenttype and tags%s.",
							 with_stream_id ? ", and stream_id in ocx.append_if" : "")));
	}

	if (ev->type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("event %d has no type", index),
				 errhint("Every event needs a \"type\" string, such as {\"type\": \"Deposited\", \"data\": {...}}.")));

	if (datacontenttype != NULL)
	{
		JsonbValue	dv;

		if (ev->metadata == NULL)
			ev->metadata = OcxEmptyObject();
		dv.type = jbvString;
		dv.val.string.val = datacontenttype;
		dv.val.string.len = strlen(datacontenttype);
		ev->metadata = OcxJsonbSetKey(ev->metadata, "datacontenttype", &dv);
	}
}

/*
 * Defaults from the settings, the size limit, and the type's contract: what
 * every event gets whichever way it came in.
 */
void
OcxFinishEvent(OcxNewEvent *ev, int index)
{
	Size		size;

	if (ev->data == NULL)
		ev->data = OcxEmptyObject();
	if (ev->metadata == NULL)
		ev->metadata = OcxEmptyObject();
	if (ev->source == NULL)
	{
		if (ocx_source == NULL || ocx_source[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_SETTING),
					 errmsg("ocx.source must not be empty"),
					 errhint("Set ocx.source to a URI-reference that names the producer, or give \"source\" on each event.")));
		if (strlen(ocx_source) > OCX_MAX_SOURCE_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_SETTING),
					 errmsg("ocx.source is too long"),
					 errdetail("Sources are limited to %d bytes; ocx.source has %zu.",
							   OCX_MAX_SOURCE_LEN, strlen(ocx_source)),
					 errhint("Set ocx.source to a short URI-reference that names the producer.")));
		ev->source = ocx_source;
	}
	if (!ev->has_correlation_id && ocx_correlation_id && ocx_correlation_id[0] != '\0')
		ev->has_correlation_id = OcxParseUuid(ocx_correlation_id, &ev->correlation_id);
	if (!ev->has_causation_id && ocx_causation_id && ocx_causation_id[0] != '\0')
		ev->has_causation_id = OcxParseUuid(ocx_causation_id, &ev->causation_id);
	if (ocx_traceparent && ocx_traceparent[0] != '\0')
	{
		JsonbValue	tv;

		if (!OcxJsonbGet(&ev->metadata->root, "traceparent", &tv))
		{
			tv.type = jbvString;
			tv.val.string.val = ocx_traceparent;
			tv.val.string.len = strlen(ocx_traceparent);
			ev->metadata = OcxJsonbSetKey(ev->metadata, "traceparent", &tv);
		}
	}
	size = VARSIZE(ev->data) + VARSIZE(ev->metadata);
	if (size > (Size) ocx_max_event_size)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_EVENT_TOO_LARGE),
				 errmsg("event %d is too large", index),
				 errdetail("Its data and metadata take %zu bytes; ocx.max_event_size is %d bytes.",
						   size, ocx_max_event_size),
				 errhint("Store large payloads elsewhere and put a reference in the event.")));

	/* the subsystems' checks (contract.c: the type's contract) */
	if (ocx_check_event_hook)
		ocx_check_event_hook(ev, index);
	if (ev->schema_version == 0)
		ev->schema_version = 1;
}

static void
RaiseConflict(const char *sid, int64 expected, int64 actual)
{
	OcxCount(OCX_COUNT_CONFLICTS, 1);
	ereport(ERROR,
			(errcode(ERRCODE_OCX_WRONG_EXPECTED_VERSION),
			 errmsg("wrong expected version for stream \"%s\"", sid),
			 expected == 0 ?
			 errdetail("Expected the stream not to exist, but it is at version " INT64_FORMAT ".", actual) :
			 expected == OCX_EXPECT_EXISTS ?
			 errdetail("Expected the stream to exist (ocx.stream_exists()), but it does not.") :
			 actual == 0 ?
			 errdetail("Expected version " INT64_FORMAT ", but the stream does not exist (version 0).", expected) :
			 errdetail("Expected version " INT64_FORMAT ", actual version " INT64_FORMAT ".", expected, actual),
			 errhint("Read the stream again, decide again, and retry with the version you read.")));
}

/* The error for a stream id held by another tenant; never names that tenant. */
static void
RaiseStreamOfAnotherTenant(const char *sid)
{
	OcxCount(OCX_COUNT_CONFLICTS, 1);
	ereport(ERROR,
			(errcode(ERRCODE_OCX_STREAM_OF_ANOTHER_TENANT),
			 errmsg("stream \"%s\" belongs to another tenant", sid),
			 errdetail("Stream ids are global; this one is taken by a tenant other than the session's ocx.tenant."),
			 errhint("Prefix stream ids with the tenant, as in \"acme.order-1\".")));
}

/*
 * On a failure path only: does a stream row for sid exist that the session
 * cannot see, i.e. of another tenant?  A probe of the primary key index
 * below row-level security, with a fresh snapshot (the row may have been
 * committed after the statement's).
 */
static bool
StreamOfAnotherTenant(const char *sid)
{
	Oid			nsp = get_namespace_oid("ocx", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("streams", nsp) : InvalidOid;
	Oid			indexid = OidIsValid(nsp) ? get_relname_relid("streams_pkey", nsp) : InvalidOid;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Snapshot	snap;
	bool		other = false;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		return false;
	rel = table_open(relid, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(sid));
	key.sk_collation = DEFAULT_COLLATION_OID;
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(rel, indexid, true, snap, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		AttrNumber	attnum = get_attnum(relid, "tenant_id");
		Datum		d = attnum > 0 ? heap_getattr(tup, attnum, RelationGetDescr(rel), &isnull) : (Datum) 0;

		other = attnum > 0 && !OcxTenantIsSessions(d, isnull);
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return other;
}

/*
 * Is edata PostgreSQL's row-level security error for ocx.streams?  ON
 * CONFLICT DO UPDATE raises it when the conflicting row is invisible to the
 * session: the stream belongs to another tenant.  Compared by the message's
 * untranslated form, so lc_messages does not matter.
 */
static bool
IsStreamsRlsError(ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE &&
		edata->message_id != NULL &&
		strncmp(edata->message_id, "new row violates row-level security policy",
				strlen("new row violates row-level security policy")) == 0 &&
		edata->message != NULL && strstr(edata->message, "\"streams\"") != NULL;
}

/*
 * Run one of the statements that take the stream row and return the stream's
 * new version, or -1 when the expected version did not match.
 *
 * In READ COMMITTED a concurrent append makes the conditional UPDATE see the
 * new row and match nothing.  Under REPEATABLE READ and SERIALIZABLE the same
 * race raises a serialization failure (40001) instead; the statement then runs
 * in a subtransaction so that the failure can be reported as what it is, a
 * wrong expected version (OX001), with the transaction still usable.
 */
typedef struct StreamPlanRun
{
	OcxPlan		which;
	Datum	   *values;
	const char *nulls;
	int64		version;
	int64		position;		/* of the event, for the single-event statements */
	Datum		head;			/* the new head, for PLAN_STREAM_*_CHAIN */
} StreamPlanRun;

/* the head the last PLAN_STREAM_*_CHAIN statement returned (AppendOneRouted) */
static Datum stream_head = (Datum) 0;

static void
RunStreamPlanOnce(void *arg)
{
	StreamPlanRun *run = (StreamPlanRun *) arg;

	run->version = -1;
	if (RunPlan(run->which, run->values, run->nulls) > 0)
	{
		run->version = FirstInt64();
		if (SPI_tuptable->tupdesc->natts > 1 &&
			TupleDescAttr(SPI_tuptable->tupdesc, 1)->atttypid == BYTEAOID)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

			/* in the caller's (SPI) context, which outlives a subtransaction */
			run->head = isnull ? (Datum) 0 : datumCopy(d, false, -1);
		}
		else if (SPI_tuptable->tupdesc->natts > 1)
			run->position = ResultInt64(0, 2);
	}
}

/* position: where to put the event's global position (the PLAN_ONE_* statements), or NULL */
static int64
RunStreamPlan(OcxPlan which, Datum *values, const char *nulls, const char *sid,
			  int64 *position)
{
	StreamPlanRun run = {which, values, nulls, -1, 0, (Datum) 0};
	ErrorData  *edata;

	if (!IsolationUsesXactSnapshot())
	{
		MemoryContext cxt = CurrentMemoryContext;

		/* a setjmp, no subtransaction: the error is only translated */
		PG_TRY();
		{
			RunStreamPlanOnce(&run);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			if (!IsStreamsRlsError(edata))
				PG_RE_THROW();
			FlushErrorState();
			RaiseStreamOfAnotherTenant(sid);
		}
		PG_END_TRY();
		if (position)
			*position = run.position;
		stream_head = run.head;
		return run.version;
	}

	edata = OcxInSubtransaction(RunStreamPlanOnce, &run);
	if (edata == NULL)
	{
		if (position)
			*position = run.position;
		stream_head = run.head;
		return run.version;
	}
	if (IsStreamsRlsError(edata))
		RaiseStreamOfAnotherTenant(sid);
	if (edata->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE)
		ReThrowError(edata);
	ereport(ERROR,
			(errcode(ERRCODE_OCX_WRONG_EXPECTED_VERSION),
			 errmsg("wrong expected version for stream \"%s\"", sid),
			 errdetail("A concurrent transaction appended to the stream after this %s transaction took its snapshot.",
					   IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
			 errhint("Roll back, read the stream again in a new transaction, and retry.")));
	return -1;					/* keep the compiler quiet */
}

/*
 * The stream's current version as seen now (0 when absent), for the
 * conflict error; raises OX012 when the stream exists for another tenant.
 * Called on failure paths only.
 */
static int64
CurrentVersion(Datum sid)
{
	bool		isnull;

	if (RunPlan(PLAN_CURRENT, &sid, NULL) == 0)
	{
		char	   *s = TextDatumGetCString(sid);

		if (StreamOfAnotherTenant(s))
			RaiseStreamOfAnotherTenant(s);
		return 0;
	}
	/* a tombstone (ocx.delete_stream hard) refuses rather than conflicts */
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		OcxRaiseStreamDeleted(TextDatumGetCString(sid));
	return FirstInt64();
}

static int
CompareIds(const void *a, const void *b)
{
	const OcxNewEvent *x = *(OcxNewEvent * const *) a;
	const OcxNewEvent *y = *(OcxNewEvent * const *) b;
	int			c = memcmp(x->id.data, y->id.data, UUID_LEN);

	return c != 0 ? c : strcmp(x->source, y->source);
}

/* A batch must not carry the same (source, id) twice. */
static void
CheckBatchIdsUnique(OcxNewEvent *events, int n)
{
	OcxNewEvent **with_id = palloc(sizeof(OcxNewEvent *) * n);
	int			m = 0,
				i;

	for (i = 0; i < n; i++)
		if (events[i].has_id)
			with_id[m++] = &events[i];
	qsort(with_id, m, sizeof(OcxNewEvent *), CompareIds);
	for (i = 1; i < m; i++)
		if (CompareIds(&with_id[i - 1], &with_id[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_DUPLICATE_EVENT),
					 errmsg("event id %s appears twice in the batch", UuidToCString(&with_id[i]->id))));
	pfree(with_id);
}

/*
 * For a batch with caller-given ids: if none is stored yet, return -1 (a
 * normal append follows).  If the whole batch is stored already, in this
 * stream, at consecutive versions, with the same types and data, and the
 * expected version is the one it was appended at, return the stream version
 * after it (an idempotent retry).  Anything else is an error.
 */
static int64
CheckStoredIds(const char *sid, bool expected_isnull, int64 expected,
			   OcxNewEvent *events, int n)
{
	Datum	   *sources = palloc(sizeof(Datum) * n);
	Datum	   *ids = palloc(sizeof(Datum) * n);
	bool	   *seen = palloc0(sizeof(bool) * n);
	int64	   *versions = palloc(sizeof(int64) * n);
	Datum		args[2];
	uint64		found,
				r;
	int			i;
	int64		base;
	uint64		stored_txid = 0;
	int64		stored_position = 0;
	FullTransactionId mine;

	for (i = 0; i < n; i++)
	{
		sources[i] = CStringGetTextDatum(events[i].source);
		ids[i] = UUIDPGetDatum(&events[i].id);
	}
	args[0] = PointerGetDatum(construct_array(sources, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	found = RunPlan(PLAN_FIND_IDS, args, NULL);
	if (found == 0)
		return -1;

	for (r = 0; r < found; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int			ord = (int) DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)) - 1;
		char	   *stream = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		int64		version = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		char	   *type = TextDatumGetCString(SPI_getbinval(tup, desc, 4, &isnull));
		Jsonb	   *data = DatumGetJsonbP(SPI_getbinval(tup, desc, 5, &isnull));
		uint64		txid = U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, 6, &isnull)));
		int64		position = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		OcxNewEvent *ev = &events[ord];

		if (strcmp(stream, sid) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_DUPLICATE_EVENT),
					 errmsg("event id %s is already used in stream \"%s\"",
							UuidToCString(&ev->id), stream),
					 errdetail("Event ids are unique per source (\"%s\"); an event cannot be appended to two streams.",
							   ev->source)));
		if (strcmp(type, ev->type) != 0 ||
			compareJsonbContainers(&OcxPrivacyReveal(type, strlen(type), data, &ev->id, true, NULL)->root,
								   &(ev->clear_data ? ev->clear_data : ev->data)->root) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_DUPLICATE_EVENT),
					 errmsg("event id %s is already stored with a different payload",
							UuidToCString(&ev->id)),
					 errdetail("Stream \"%s\" has it at version " INT64_FORMAT " with type \"%s\".",
							   stream, version, type),
					 errhint("A retry must repeat the original event exactly; a new event needs a new id.")));
		seen[ord] = true;
		versions[ord] = version;
		if (txid > stored_txid || (txid == stored_txid && position > stored_position))
		{
			stored_txid = txid;
			stored_position = position;
		}
	}

	for (i = 0; i < n; i++)
		if (!seen[i])
			ereport(ERROR,
					(errcode(ERRCODE_OCX_DUPLICATE_EVENT),
					 errmsg("batch partly appended already"),
					 errdetail("%d of its %d events are stored; event %d is not.", (int) found, n, i + 1),
					 errhint("An idempotent retry repeats the original batch exactly; new events go in a new batch.")));

	base = versions[0] - 1;
	for (i = 1; i < n; i++)
		if (versions[i] != base + 1 + i)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_DUPLICATE_EVENT),
					 errmsg("batch events are stored, but not in the batch's order"),
					 errdetail("Event %d is at version " INT64_FORMAT ", expected " INT64_FORMAT ".",
							   i + 1, versions[i], base + 1 + i)));

	if (!expected_isnull &&
		(expected == OCX_EXPECT_EXISTS ? base == 0 : expected != base))
		RaiseConflict(sid, expected, CurrentVersion(CStringGetTextDatum(sid)));

	/* the retry's cursor is the stored batch's: wait_for it as for the original */
	mine = GetTopFullTransactionIdIfAny();
	RememberAppend(stored_txid, stored_position,
				   FullTransactionIdIsValid(mine) &&
				   U64FromFullTransactionId(mine) + OcxLogXidOffset() == stored_txid);
	return base + n;
}

static Datum
MakeArray(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

static Datum
TextOrNull(const char *s, char *null)
{
	if (s == NULL || s[0] == '\0')
	{
		*null = 'n';
		return (Datum) 0;
	}
	*null = ' ';
	return CStringGetTextDatum(s);
}

/*
 * Parameters $3..$11 of the single-event statements (and $1, $12, $13 are
 * set by the caller).
 */
static void
FillOneEvent(Datum *values, char *nulls, OcxNewEvent *ev, TimestampTz now)
{
	values[2] = UUIDPGetDatum(&ev->id);
	values[3] = CStringGetTextDatum(ev->source);
	values[4] = CStringGetTextDatum(ev->type);
	values[5] = Int32GetDatum(ev->schema_version);
	values[6] = TimestampTzGetDatum(ev->has_time ? ev->time : now);
	values[7] = JsonbPGetDatum(ev->data);
	values[8] = JsonbPGetDatum(ev->metadata);
	values[9] = UUIDPGetDatum(&ev->correlation_id);
	nulls[9] = ev->has_correlation_id ? ' ' : 'n';
	values[10] = UUIDPGetDatum(&ev->causation_id);
	nulls[10] = ev->has_causation_id ? ' ' : 'n';
}

static int64 LockStream(Datum sid_datum, const char *sid, bool expected_isnull,
						int64 expected, int n);
static int64 InsertEvents(Datum sid, int64 first, OcxNewEvent *events, int n, TimestampTz now);

/*
 * A distributed log (citus.c, docs/scaling.md): one event in two statements
 * that Citus routes to the stream's shard, one round trip each, where the
 * single statement of AppendOne (a modifying CTE feeding INSERT ... SELECT)
 * goes through the coordinator as an intermediate result and commits with
 * two-phase commit.  Chained: the stream row statement hashes the event into
 * the new head and returns it (PLAN_STREAM_*_CHAIN), then INSERT ... VALUES
 * stores it as the event's hash; else LockStream and InsertEvents, as a
 * batch.  values and nulls are AppendOne's (the PLAN_ONE_* parameters).
 */
static int64
AppendOneRouted(Datum sid, const char *sid_str, bool expected_isnull, int64 expected,
				OcxNewEvent *ev, TimestampTz now, Datum *values, char *nulls,
				int64 *position)
{
	OcxPlan		plan;
	int64		version;

	if (!chain_now)
	{
		version = LockStream(sid, sid_str, expected_isnull, expected, 1);
		if (version < 0)
			RaiseConflict(sid_str, expected_isnull ? 0 : expected, CurrentVersion(sid));
		*position = InsertEvents(sid, version, ev, 1, now);
		return version;
	}
	plan = expected_isnull ? PLAN_STREAM_ANY_CHAIN :
		expected == 0 ? PLAN_STREAM_NEW_CHAIN :
		expected == OCX_EXPECT_EXISTS ? PLAN_STREAM_EXISTING_CHAIN : PLAN_STREAM_AT_CHAIN;
	stream_head = (Datum) 0;
	version = RunStreamPlan(plan, values, nulls, sid_str, NULL);
	if (version < 0)
		RaiseConflict(sid_str, expected, CurrentVersion(sid));
	if (stream_head == (Datum) 0)
		elog(ERROR, "ocx: the stream row of \"%s\" returned no head", sid_str);
	values[1] = Int64GetDatum(version);
	nulls[1] = ' ';
	values[13] = stream_head;
	nulls[13] = ' ';
	if (RunPlan(PLAN_INSERT_ONE_HASHED, values, nulls) != 1)
		elog(ERROR, "ocx: the event of stream \"%s\" was not stored", sid_str);
	*position = FirstInt64();
	return version;
}

/*
 * One event with a generated id: lock or create the stream row and insert in
 * a single statement.  Returns the new version, or raises the conflict;
 * *position is the event's global position.
 */
static int64
AppendOne(Datum sid, const char *sid_str, bool expected_isnull, int64 expected,
		  OcxNewEvent *ev, TimestampTz now, int64 *position)
{
	Datum		values[15];
	char		nulls[15];
	OcxPlan		plan;
	int64		version;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = sid;
	values[1] = (Datum) 0;
	nulls[1] = 'n';
	FillOneEvent(values, nulls, ev, now);
	values[11] = TextOrNull(ocx_tenant, &nulls[11]);
	values[12] = FullTransactionIdGetDatum(FullTransactionIdFromU64(OcxLogTxid()));
	values[13] = CStringGetTextDatum(StreamCategory(sid_str));
	values[14] = Int64GetDatum(expected);

	if (OcxLogDistributed())
		return AppendOneRouted(sid, sid_str, expected_isnull, expected, ev, now,
							   values, nulls, position);

	plan = expected_isnull ? PLAN_ONE_ANY :
		expected == 0 ? PLAN_ONE_NEW :
		expected == OCX_EXPECT_EXISTS ? PLAN_ONE_EXISTING : PLAN_ONE_AT;
	version = RunStreamPlan(plan, values, nulls, sid_str, position);
	if (version < 0)
		RaiseConflict(sid_str, expected, CurrentVersion(sid));
	return version;
}

/*
 * Insert the batch at versions first .. first + n - 1 with one statement;
 * returns the global position of its last event.
 */
static int64
InsertEvents(Datum sid, int64 first, OcxNewEvent *events, int n, TimestampTz now)
{
	Datum		values[16];
	char		nulls[16];
	Datum	   *hashes = NULL;
	Datum		txid = FullTransactionIdGetDatum(FullTransactionIdFromU64(OcxLogTxid()));
	int64		last = 0;
	uint64		r,
				rows;
	int			i;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = sid;
	values[11] = TextOrNull(ocx_tenant, &nulls[11]);
	values[12] = txid;
	nulls[13] = 'n';
	if (chain_now)
	{
		/* chain from the head, read under the stream row lock this append holds */
		bytea	   *prev = NULL;
		bool		isnull;
		Datum		d;

		if (RunPlan(PLAN_HEAD, &sid, NULL) == 1)
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
				prev = DatumGetByteaPP(d);
		}
		hashes = palloc(sizeof(Datum) * n);
		OcxChainBatch(prev, TextDatumGetCString(sid), first, events, n, now, hashes);
		values[15] = hashes[n - 1];
	}

	if (n == 1)
	{
		FillOneEvent(values, nulls, &events[0], now);
		values[1] = Int64GetDatum(first);
		if (events[0].ntags > 0)
		{
			values[13] = OcxTagsDatum(&events[0]);
			nulls[13] = ' ';
		}
		if (chain_now)
			values[14] = hashes[0];
		rows = RunPlan(events[0].ntags > 0 ? PLAN_INSERT_ONE_TAGGED : PLAN_INSERT_ONE,
					   values, nulls);
	}
	else
	{
		Datum	   *ids = palloc(sizeof(Datum) * n);
		Datum	   *sources = palloc(sizeof(Datum) * n);
		Datum	   *types = palloc(sizeof(Datum) * n);
		Datum	   *versions = palloc(sizeof(Datum) * n);
		Datum	   *times = palloc(sizeof(Datum) * n);
		Datum	   *datas = palloc(sizeof(Datum) * n);
		Datum	   *metas = palloc(sizeof(Datum) * n);
		Datum	   *corrs = palloc(sizeof(Datum) * n);
		bool	   *corr_nulls = palloc(sizeof(bool) * n);
		Datum	   *causes = palloc(sizeof(Datum) * n);
		bool	   *cause_nulls = palloc(sizeof(bool) * n);
		Datum	   *tags = palloc(sizeof(Datum) * n);
		bool	   *tag_nulls = palloc(sizeof(bool) * n);
		bool		any_tags = false;

		for (i = 0; i < n; i++)
		{
			OcxNewEvent *ev = &events[i];

			ids[i] = UUIDPGetDatum(&ev->id);
			sources[i] = CStringGetTextDatum(ev->source);
			types[i] = CStringGetTextDatum(ev->type);
			versions[i] = Int32GetDatum(ev->schema_version);
			times[i] = TimestampTzGetDatum(ev->has_time ? ev->time : now);
			datas[i] = JsonbPGetDatum(ev->data);
			metas[i] = JsonbPGetDatum(ev->metadata);
			corrs[i] = UUIDPGetDatum(&ev->correlation_id);
			corr_nulls[i] = !ev->has_correlation_id;
			causes[i] = UUIDPGetDatum(&ev->causation_id);
			cause_nulls[i] = !ev->has_causation_id;
			tag_nulls[i] = ev->ntags == 0;
			tags[i] = tag_nulls[i] ? (Datum) 0 : OcxTagsJsonb(ev);
			any_tags |= !tag_nulls[i];
		}
		/* the statement adds the 1-based ordinality to first - 1 */
		values[1] = Int64GetDatum(first - 1);
		values[2] = MakeArray(ids, NULL, n, UUIDOID);
		values[3] = MakeArray(sources, NULL, n, TEXTOID);
		values[4] = MakeArray(types, NULL, n, TEXTOID);
		values[5] = MakeArray(versions, NULL, n, INT4OID);
		values[6] = MakeArray(times, NULL, n, TIMESTAMPTZOID);
		values[7] = MakeArray(datas, NULL, n, JSONBOID);
		values[8] = MakeArray(metas, NULL, n, JSONBOID);
		values[9] = MakeArray(corrs, corr_nulls, n, UUIDOID);
		values[10] = MakeArray(causes, cause_nulls, n, UUIDOID);
		if (any_tags)
		{
			values[13] = MakeArray(tags, tag_nulls, n, JSONBOID);
			nulls[13] = ' ';
		}
		if (chain_now)
			values[14] = MakeArray(hashes, NULL, n, BYTEAOID);
		rows = RunPlan(any_tags ? PLAN_INSERT_MANY_TAGGED : PLAN_INSERT_MANY, values, nulls);
	}
	for (r = 0; r < rows; r++)
		last = Max(last, ResultInt64(r, 1));
	return last;
}

static void
CountWritten(OcxNewEvent *events, int n)
{
	int64		bytes = 0;
	int			i;

	for (i = 0; i < n; i++)
		bytes += VARSIZE(events[i].data) + VARSIZE(events[i].metadata);
	OcxCount(OCX_COUNT_APPENDS, 1);
	OcxCount(OCX_COUNT_EVENTS, n);
	OcxCount(OCX_COUNT_BYTES, bytes);
}

/*
 * Log order within a stream.  The log order is (txid, global_position), and
 * a stream's events must follow it in version order: an appender must not
 * take its xid before the previous appender of the stream committed, or a
 * later version would sort before an earlier one.  The stream row lock alone
 * cannot ensure it, since locking a row assigns the xid before waiting; so
 * an append first takes a heavyweight lock on the stream (an advisory lock
 * tag, field4 OCX_STREAM_LOCK, that pg_advisory_lock never uses), held to
 * the end of the transaction, and only then writes.  A transaction that
 * wrote before it appends (or appended to another stream first) already has
 * its xid: CheckStreamOrder refuses its append with SQLSTATE 40001, a
 * serialization failure that clients and pgbench --max-tries retry, when
 * the stream's previous event has a later txid.
 */
#define OCX_STREAM_LOCK 0x6f64

/* also taken by ocx.import_commit() for each stream it writes (import.c) */
void
OcxLockStreamOrder(const char *sid)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 hash_bytes((const unsigned char *) sid, strlen(sid)), 0,
						 OCX_STREAM_LOCK);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

static void
CheckStreamOrder(Datum sid_datum, const char *sid, int64 previous)
{
	Datum		values[2];
	bool		isnull;
	uint64		prev;
	uint64		mine;

	if (previous < 1)
		return;
	values[0] = sid_datum;
	values[1] = Int64GetDatum(previous);
	if (RunPlan(PLAN_PREV_TXID, values, NULL) != 1)
		return;
	prev = U64FromFullTransactionId(DatumGetFullTransactionId(
									SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	mine = OcxLogTxid();
	if (prev > mine)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("this transaction is older than the last append to stream \"%s\"", sid),
				 errdetail("It took its transaction id before another transaction appended version %lld and committed; its events would sort before that one in log order.",
						   (long long) previous),
				 errhint("Roll back and retry (a serialization failure, like those of SERIALIZABLE transactions); appending first in the transaction avoids it.")));
}

/*
 * Take (or create) the stream row for an append of n events; returns the
 * stream's new version, or -1 when the expected version did not match.
 */
static int64
LockStream(Datum sid_datum, const char *sid, bool expected_isnull, int64 expected, int n)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = sid_datum;
	if (expected_isnull || expected == 0)
	{
		values[1] = CStringGetTextDatum(StreamCategory(sid));
		values[2] = Int64GetDatum(n);
		values[3] = TextOrNull(ocx_tenant, &nulls[3]);
		return RunStreamPlan(expected_isnull ? PLAN_ADVANCE_ANY : PLAN_CREATE,
							 values, nulls, sid, NULL);
	}
	if (expected == OCX_EXPECT_EXISTS)
	{
		values[1] = Int64GetDatum(n);
		return RunStreamPlan(PLAN_ADVANCE_EXISTING, values, NULL, sid, NULL);
	}
	values[1] = Int64GetDatum(expected);
	values[2] = Int64GetDatum(n);
	return RunStreamPlan(PLAN_ADVANCE, values, NULL, sid, NULL);
}

/*
 * The write of a batch with caller-given ids, run in a subtransaction: an
 * in-flight transaction holding one of the ids (its original, or another
 * writer reusing the id) only shows up here, when the stream row or the
 * (source, event_id) index makes this append wait for it.
 */
typedef struct IdAppend
{
	Datum		sid_datum;
	const char *sid;
	bool		expected_isnull;
	int64		expected;
	OcxNewEvent *events;
	int			n;
	TimestampTz now;
	int64		version;
	int64		position;		/* of the last event written */
} IdAppend;

/*
 * The direct write (directappend.c) of a batch with ids, or the statements
 * where it does not apply.  Each outcome of the direct write ends as the
 * statements' does: a conflict as the conditional UPDATE or ON CONFLICT DO
 * NOTHING that took no row (-1, checked again by the caller), another
 * tenant's stream as OX012, a tombstone as OX641 where the statement's
 * UPDATE would have fired the tombstone trigger (the expected version
 * matched) and as a conflict where it took no row (the caller's
 * CurrentVersion then raises OX641); a duplicate id raises 23505 from the
 * index insert, as the statement's INSERT does.
 */
static void
IdAppendOnce(void *arg)
{
	IdAppend   *a = (IdAppend *) arg;
	int64		version = 0;

	switch (OcxDirectAppend(DatumGetTextPP(a->sid_datum), a->sid, StreamCategory(a->sid),
							a->expected_isnull, a->expected, a->events, a->n, a->now,
							chain_now, &version, &a->position))
	{
		case OCX_DIRECT_DONE:
			a->version = version;
			return;
		case OCX_DIRECT_CONFLICT:
			a->version = -1;
			return;
		case OCX_DIRECT_OTHER_TENANT:
			RaiseStreamOfAnotherTenant(a->sid);
			break;
		case OCX_DIRECT_DELETED:
			if (a->expected_isnull || a->expected == OCX_EXPECT_EXISTS ||
				(a->expected != 0 && a->expected == version))
				OcxRaiseStreamDeleted(a->sid);
			a->version = -1;
			return;
		case OCX_DIRECT_UNUSABLE:
			break;
	}
	a->version = LockStream(a->sid_datum, a->sid, a->expected_isnull, a->expected, a->n);
	if (a->version >= 0)
		a->position = InsertEvents(a->sid_datum, a->version - a->n + 1, a->events, a->n, a->now);
}

/* Is edata the unique violation of ocx.events' (source, event_id) key? */
static bool
IsEventIdConflict(ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION &&
		edata->constraint_name != NULL &&
		strcmp(edata->constraint_name, "events_source_event_id_key") == 0;
}

/* An id of the batch is taken by an event this session cannot read (another tenant's). */
static void
RaiseIdTaken(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_DUPLICATE_EVENT),
			 errmsg("an event id of the batch is already stored"),
			 errdetail("Event ids are unique per source, across streams and tenants."),
			 errhint("A retry must repeat the original batch exactly; a new event needs a new id.")));
}

/*
 * Under REPEATABLE READ or SERIALIZABLE, after an id conflict for which the
 * transaction's snapshot shows no event: is one of the batch's ids stored by
 * a transaction that snapshot sees, in a row that row-level security hides
 * (another tenant's event)?  Then the conflict is no concurrent commit that a
 * retry would resolve, and the answer is OX004, as under READ COMMITTED and
 * on the direct path.  Read as the bootstrap superuser (below row-level
 * security), under the transaction's snapshot; only whether such a row
 * exists leaves this function.
 */
static bool
IdTakenUnseen(OcxNewEvent *events, int n)
{
	Datum	   *sources = palloc(sizeof(Datum) * n);
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum		args[2];
	Oid			save_user;
	int			save_sec;
	volatile bool taken = false;
	int			m = 0,
				i;

	for (i = 0; i < n; i++)
		if (events[i].has_id)
		{
			sources[m] = CStringGetTextDatum(events[i].source);
			ids[m++] = UUIDPGetDatum(&events[i].id);
		}
	args[0] = PointerGetDatum(construct_array(sources, m, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(ids, m, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		taken = RunPlan(PLAN_ID_TAKEN, args, NULL) > 0;
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	return taken;
}

/*
 * Append a batch whose events carry ids, after CheckStoredIds found none of
 * them stored.  When the write waited for a concurrent transaction that has
 * since committed (the stream changed under the expected version, or an id
 * is now taken), the ids are checked again with a new snapshot: a retry that
 * raced its original gets the idempotent answer, any other reuse of an id
 * OX004, and only then a stream that moved on OX001.  If the concurrent
 * transaction rolled back, nothing conflicts and this append writes the
 * batch.  Under REPEATABLE READ and SERIALIZABLE the transaction's snapshot
 * cannot see the concurrent commit: the outcome is OX001 (roll back and
 * retry; the retry then gets the idempotent answer or OX004).
 */
static int64
AppendWithIds(Datum sid_datum, const char *sid, bool expected_isnull, int64 expected,
			  OcxNewEvent *events, int n, TimestampTz now, bool *written, int64 *position)
{
	IdAppend	a = {sid_datum, sid, expected_isnull, expected, events, n, now, -1, 0};
	ErrorData  *edata;
	int64		done;

	*written = true;
	edata = OcxInSubtransaction(IdAppendOnce, &a);
	if (edata == NULL && a.version >= 0)
	{
		*position = a.position;
		return a.version;
	}
	if (edata != NULL && !IsEventIdConflict(edata))
		ReThrowError(edata);

	if (IsolationUsesXactSnapshot())
	{
		if (edata == NULL)
			RaiseConflict(sid, expected_isnull ? 0 : expected, CurrentVersion(sid_datum));
		OcxCount(OCX_COUNT_CONFLICTS, 1);
		/* an event of another tenant, stored before the snapshot: no race */
		if (IdTakenUnseen(events, n))
			RaiseIdTaken();
		ereport(ERROR,
				(errcode(ERRCODE_OCX_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected version for stream \"%s\"", sid),
				 errdetail("A concurrent transaction stored an event id of the batch after this %s transaction took its snapshot.",
						   IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errhint("Roll back and retry in a new transaction: a retry of the same batch then succeeds without writing, another use of the id fails with OX004.")));
	}

	/* READ COMMITTED: a new statement sees what the other transaction wrote */
	done = CheckStoredIds(sid, expected_isnull, expected, events, n);
	if (done >= 0)
	{
		OcxCount(OCX_COUNT_IDEMPOTENT, 1);
		*written = false;
		return done;
	}
	if (edata == NULL)
		RaiseConflict(sid, expected_isnull ? 0 : expected, CurrentVersion(sid_datum));
	/* the id is taken by an event this session cannot see (another tenant) */
	OcxCount(OCX_COUNT_CONFLICTS, 1);
	RaiseIdTaken();
	return -1;					/* keep the compiler quiet */
}

/*
 * The append core: n checked events into stream_id, under the expected
 * version rule (expected_isnull = any, 0 = the stream must not exist, N = it
 * must be exactly at N, OCX_EXPECT_EXISTS = it must exist).  Returns the stream's version after the append.
 */
int64
OcxAppend(text *stream_id, bool expected_isnull, int64 expected,
		  OcxNewEvent *events, int n)
{
	char	   *sid = text_to_cstring(stream_id);
	Datum		sid_datum = PointerGetDatum(stream_id);
	TimestampTz now = GetCurrentTimestamp();
	bool		has_ids = false;
	bool		any_tags = false;
	bool		had_xid;
	int64		new_version;
	int64		position = 0;
	int			i;

	Assert(n > 0);
	/* before anything this append writes takes an xid (appenders.c) */
	OcxAppenderEnter();
	for (i = 0; i < n; i++)
		has_ids |= events[i].has_id;
	if (has_ids)
		CheckBatchIdsUnique(events, n);

	/*
	 * Every event's id is final from here on (assigned once, here): what
	 * runs before the insert (a transformation of the stored fields, a hash
	 * of them) sees the id that is stored.
	 */
	for (i = 0; i < n; i++)
		if (!events[i].has_id)
			NewEventId(&events[i].id);
	OcxPrivacyProtect(events, n);	/* personal fields encrypted (privacy.c) */

	/* tagged events: the tag locks of ocx.append_if (dcb.c), before the stream's */
	OcxLockEventTags(events, n);
	had_xid = FullTransactionIdIsValid(GetTopFullTransactionIdIfAny());
	OcxLockStreamOrder(sid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	/* tamper evidence: hash and chain the events (integrity.c) */
	chain_now = OcxChainOn();

	if (has_ids)
	{
		int64		done;

		/*
		 * A retry racing its original on an existing stream waits for it
		 * here, then sees its ids; on a stream the original creates, the
		 * wait comes in AppendWithIds.
		 */
		RunPlan(PLAN_LOCK, &sid_datum, NULL);
		done = CheckStoredIds(sid, expected_isnull, expected, events, n);
		if (done >= 0)
		{
			SPI_finish();
			OcxCount(OCX_COUNT_IDEMPOTENT, 1);
			return done;
		}
	}

	/*
	 * The direct write (directappend.c), or the statements where it does
	 * not apply; a batch with ids tries it in AppendWithIds' subtransaction.
	 */
	if (has_ids)
	{
		bool		written;

		new_version = AppendWithIds(sid_datum, sid, expected_isnull, expected,
									events, n, now, &written, &position);
		if (!written)
		{
			SPI_finish();
			return new_version;
		}
	}
	else
	{
		for (i = 0; i < n; i++)
			any_tags |= events[i].ntags > 0;
		switch (OcxDirectAppend(stream_id, sid, StreamCategory(sid), expected_isnull, expected,
								events, n, now, chain_now, &new_version, &position))
		{
			case OCX_DIRECT_DONE:
				break;
			case OCX_DIRECT_CONFLICT:
				RaiseConflict(sid, expected_isnull ? 0 : expected, new_version);
				break;
			case OCX_DIRECT_OTHER_TENANT:
				RaiseStreamOfAnotherTenant(sid);
				break;
			case OCX_DIRECT_DELETED:
				OcxRaiseStreamDeleted(sid);
				break;
			case OCX_DIRECT_UNUSABLE:
				if (n == 1 && !any_tags)
					new_version = AppendOne(sid_datum, sid, expected_isnull, expected,
											&events[0], now, &position);
				else
				{
					new_version = LockStream(sid_datum, sid, expected_isnull, expected, n);
					if (new_version < 0)
						RaiseConflict(sid, expected_isnull ? 0 : expected,
									  CurrentVersion(sid_datum));
					position = InsertEvents(sid_datum, new_version - n + 1, events, n, now);
				}
				break;
		}
	}
	if (had_xid)
		CheckStreamOrder(sid_datum, sid, new_version - n);

	SPI_finish();
	RememberAppend(OcxLogTxid(), position, true);

	CountWritten(events, n);
	if (ocx_after_append_hook)
		ocx_after_append_hook(sid, new_version - n + 1, n);
	return new_version;
}

/* Common argument checks of the append functions. */
static text *
AppendArgs(FunctionCallInfo fcinfo, bool *expected_isnull, int64 *expected)
{
	text	   *stream_id;

	/* a clear error on a hot standby or in a READ ONLY transaction */
	PreventCommandIfReadOnly(get_func_name(fcinfo->flinfo->fn_oid));

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id must not be null")));
	stream_id = PG_GETARG_TEXT_PP(0);
	OcxCheckStreamId(stream_id);

	*expected_isnull = PG_ARGISNULL(1);
	*expected = *expected_isnull ? 0 : PG_GETARG_INT64(1);
	if (!*expected_isnull && *expected < 0 && *expected != OCX_EXPECT_EXISTS)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EXPECTED_VERSION),
				 errmsg("expected version must not be negative"),
				 errdetail("Got " INT64_FORMAT "; the one negative expected version is ocx.stream_exists() (-1).", *expected),
				 errhint("Use NULL for any version, 0 for a new stream, ocx.stream_exists() for an existing stream at any version, or the version you read.")));
	return stream_id;
}

static MemoryContext
AppendContext(void)
{
	return AllocSetContextCreate(CurrentMemoryContext, "ocx append",
								 ALLOCSET_DEFAULT_SIZES);
}

/*
 * ocx.append(stream_id text, expected_version bigint, events jsonb) -> bigint
 */
Datum
ocx_append(PG_FUNCTION_ARGS)
{
	bool		expected_isnull;
	int64		expected;
	text	   *stream_id = AppendArgs(fcinfo, &expected_isnull, &expected);
	Jsonb	   *batch;
	MemoryContext ctx,
				old;
	OcxNewEvent *events;
	int			n,
				i;
	int64		result;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("events must not be null")));
	batch = PG_GETARG_JSONB_P(2);

	ctx = AppendContext();
	old = MemoryContextSwitchTo(ctx);

	if (JB_ROOT_IS_SCALAR(batch))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("events must be a JSON object or an array of objects")));
	if (JB_ROOT_IS_OBJECT(batch))
	{
		n = 1;
		events = palloc(sizeof(OcxNewEvent));
		OcxParseEventObjectExt(&batch->root, 1, &events[0], false);
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
			OcxParseEventObjectExt(v.val.binary.data, i + 1, &events[i], false);
			i++;
		}
	}
	for (i = 0; i < n; i++)
		OcxFinishEvent(&events[i], i + 1);

	result = OcxAppend(stream_id, expected_isnull, expected, events, n);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	PG_RETURN_INT64(result);
}

/*
 * ocx.append_event(stream_id, expected_version, type, data, metadata, event_id)
 * -> bigint: one event without building a JSON envelope.
 */
Datum
ocx_append_event(PG_FUNCTION_ARGS)
{
	bool		expected_isnull;
	int64		expected;
	text	   *stream_id = AppendArgs(fcinfo, &expected_isnull, &expected);
	OcxNewEvent ev;
	MemoryContext ctx,
				old;
	int64		result;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("event 1 has no type"),
				 errhint("Pass the event type as the third argument.")));
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("data of event 1 must not be null"),
				 errhint("Pass '{}' for an event without data.")));

	ctx = AppendContext();
	old = MemoryContextSwitchTo(ctx);

	memset(&ev, 0, sizeof(ev));
	ev.type = text_to_cstring(PG_GETARG_TEXT_PP(2));
	CheckType(ev.type, 1);
	ev.data = PG_GETARG_JSONB_P(3);
	if (!JB_ROOT_IS_OBJECT(ev.data))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("data of event 1 must be a JSON object")));
	if (!PG_ARGISNULL(4))
	{
		ev.metadata = PG_GETARG_JSONB_P(4);
		if (!JB_ROOT_IS_OBJECT(ev.metadata))
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("metadata of event 1 must be a JSON object")));
	}
	if (!PG_ARGISNULL(5))
	{
		memcpy(&ev.id, PG_GETARG_UUID_P(5), sizeof(pg_uuid_t));
		ev.has_id = true;
	}
	OcxFinishEvent(&ev, 1);

	result = OcxAppend(stream_id, expected_isnull, expected, &ev, 1);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	PG_RETURN_INT64(result);
}

/*
 * ocx.append_cloudevents(stream_id, expected_version, ce jsonb) -> bigint
 */
Datum
ocx_append_cloudevents(PG_FUNCTION_ARGS)
{
	bool		expected_isnull;
	int64		expected;
	text	   *stream_id = AppendArgs(fcinfo, &expected_isnull, &expected);
	MemoryContext ctx,
				old;
	OcxNewEvent *events;
	int			n,
				i;
	int64		result;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
				 errmsg("cloudevents must not be null")));

	ctx = AppendContext();
	old = MemoryContextSwitchTo(ctx);

	events = OcxEventsFromCloudEvents(PG_GETARG_JSONB_P(2), &n);
	for (i = 0; i < n; i++)
		OcxFinishEvent(&events[i], i + 1);
	result = OcxAppend(stream_id, expected_isnull, expected, events, n);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	PG_RETURN_INT64(result);
}

/*
 * The one controlled exception to immutability (issue 14): while
 * OcxRemoveStreamEvents runs its DELETE, the trigger lets through the rows
 * of that one stream up to that one version, and nothing else.  Backend-local
 * and set only from C for the duration of the statement: no setting a user
 * can SET reaches it.
 */
static const char *removal_stream = NULL;
static int64 removal_through = 0;

/* Is the row a DELETE trigger fired for one that the running removal covers? */
static bool
RemovalCovers(TriggerData *trigdata)
{
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	int			a_stream = SPI_fnumber(desc, "stream_id");
	int			a_version = SPI_fnumber(desc, "stream_version");
	bool		isnull;
	Datum		d;
	char	   *sid;
	bool		same;

	if (removal_stream == NULL || !TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || a_stream <= 0 || a_version <= 0)
		return false;
	d = heap_getattr(trigdata->tg_trigtuple, a_version, desc, &isnull);
	if (isnull || DatumGetInt64(d) > removal_through)
		return false;
	d = heap_getattr(trigdata->tg_trigtuple, a_stream, desc, &isnull);
	if (isnull)
		return false;
	sid = TextDatumGetCString(d);
	same = strcmp(sid, removal_stream) == 0;
	pfree(sid);
	return same;
}

/*
 * Delete the events of stream_id up to version through (all of them when
 * through is its version), with the immutability trigger letting exactly
 * those rows through.  The caller holds SPI, decided that they may go and
 * records the removal (removal.c).  Runs as the current user, under its
 * row-level security.  Returns the number of events deleted.
 */
uint64
OcxRemoveStreamEvents(const char *stream_id, int64 through)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[2] = {TEXTOID, INT8OID};
	Datum		args[2];
	volatile uint64 n = 0;

	if (removal_stream != NULL)
		elog(ERROR, "ocx: a removal from the log is already running");
	args[0] = CStringGetTextDatum(stream_id);
	args[1] = Int64GetDatum(through);
	OcxKeptPlan(&plan, "DELETE FROM ocx.events WHERE stream_id OPERATOR(pg_catalog.=) $1 "
				"AND stream_version OPERATOR(pg_catalog.<=) $2", 2, argtypes);
	removal_stream = stream_id;
	removal_through = through;
	PG_TRY();
	{
		n = OcxRunKeptPlan(plan, args, NULL, false);
	}
	PG_FINALLY();
	{
		removal_stream = NULL;
		removal_through = 0;
	}
	PG_END_TRY();
	return n;
}

/* The error for an append to (or a delete or load of) a hard-deleted stream. */
void
OcxRaiseStreamDeleted(const char *stream_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_STREAM_DELETED),
			 errmsg("stream \"%s\" was deleted", stream_id),
			 errdetail("The stream was hard-deleted (ocx.delete_stream with hard => true); its tombstone takes no more events."),
			 errhint("Use another stream id; ocx.removals records the deletion.")));
}

/*
 * Trigger on ocx.streams, for the rows of hard-deleted streams only (WHEN
 * OLD.deleted): a tombstone never changes again, so every append path that
 * advances the stream's version is refused here.
 */
Datum
ocx_refuse_tombstone(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._refuse_tombstone() must be called as a row trigger")));
	desc = RelationGetDescr(trigdata->tg_relation);
	d = heap_getattr(trigdata->tg_trigtuple, SPI_fnumber(desc, "stream_id"), desc, &isnull);
	OcxRaiseStreamDeleted(isnull ? "" : TextDatumGetCString(d));
	PG_RETURN_NULL();
}

/*
 * Trigger on ocx.events: the log is append-only for every role.  Fires
 * ALWAYS, so session_replication_role cannot switch it off.  The one
 * exception is the running removal's rows (RemovalCovers).
 */
Datum
ocx_refuse_modification(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._refuse_modification() must be called as a trigger")));
	if (RemovalCovers(trigdata))
		return PointerGetDatum(trigdata->tg_trigtuple);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "this change";
	ereport(ERROR,
			(errcode(ERRCODE_OCX_IMMUTABLE_LOG),
			 errmsg("the event log is append-only"),
			 errdetail("%s on %s is refused for every role.", op,
					   RelationGetRelationName(trigdata->tg_relation)),
			 errhint("Record a correcting event instead of changing history.")));
	PG_RETURN_NULL();
}

/* ocx._stream_arg(text): a read function's stream id, checked. */
Datum
ocx_stream_arg(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id must not be null")));
	OcxCheckStreamId(PG_GETARG_TEXT_PP(0));
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/* ocx._count_arg(int): NULL (no limit) or a count >= 0. */
Datum
ocx_count_arg(PG_FUNCTION_ARGS)
{
	int32		n;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	n = PG_GETARG_INT32(0);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("max_count must not be negative"),
				 errdetail("Got %d.", n),
				 errhint("Use NULL for no limit.")));
	PG_RETURN_INT64((int64) n);
}

/* ocx._version_arg(bigint): a from_version; NULL means from the start. */
Datum
ocx_version_arg(PG_FUNCTION_ARGS)
{
	int64		v;

	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(1);
	v = PG_GETARG_INT64(0);
	if (v < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("from_version must not be negative"),
				 errdetail("Got " INT64_FORMAT ".", v)));
	PG_RETURN_INT64(v);
}
