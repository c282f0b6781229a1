/*
 * ocx.h
 *		Declarations shared by the ocx subsystems.
 *
 * Each subsystem lives in its own file under src/ with an Init function that
 * _PG_init calls; SQL-callable functions are named ocx_*, internal helpers
 * CamelCase.
 */
#ifndef OCX_H
#define OCX_H

#include "postgres.h"

/*
 * ocx is built and tested for PostgreSQL 15 only (README.md): its hooks,
 * parser calls and catalogs follow 15's signatures, so refuse other majors
 * here instead of failing later with obscure errors (the Makefile says so
 * first).
 */
#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 160000
#error "ocx supports PostgreSQL 15 only: point PG_CONFIG at a PostgreSQL 15 pg_config"
#endif

#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#define OCX_SCHEMA "ocx"

/* guc.c: settings */
extern int	ocx_max_event_size;
extern char *ocx_correlation_id;
extern char *ocx_causation_id;
extern char *ocx_traceparent;
extern char *ocx_source;
extern char *ocx_tenant;
extern const char *OcxSessionTenant(void);
extern bool OcxTenantIsSessions(Datum tenant, bool isnull);
extern int	ocx_horizon_warn_after;
extern void OcxGucInit(void);

/*
 * An event on its way into the log: parsed and checked, not yet stored.
 * Pointers are NULL when the caller gave no value.
 */
typedef struct OcxNewEvent
{
	pg_uuid_t	id;				/* valid when has_id, else generated */
	bool		has_id;
	char	   *source;
	char	   *type;
	int32		schema_version; /* 0 = the type's current version */
	TimestampTz time;
	bool		has_time;
	Jsonb	   *data;
	Jsonb	   *metadata;
	pg_uuid_t	correlation_id;
	bool		has_correlation_id;
	pg_uuid_t	causation_id;
	bool		has_causation_id;
	char	  **tags;			/* sorted, distinct; NULL when none (dcb.c) */
	int			ntags;
	char	   *stream_id;		/* ocx.append_if only: the event's stream */
	Jsonb	   *clear_data;		/* privacy.c: data as given when data holds
								 * encrypted personal fields, else NULL */
} OcxNewEvent;

/* expected version ocx.stream_exists(): the stream must exist, at any version */
#define OCX_EXPECT_EXISTS		INT64CONST(-1)

/* append.c */
extern int64 OcxAppend(text *stream_id, bool expected_isnull, int64 expected,
					   OcxNewEvent *events, int nevents);
extern void OcxCheckStreamId(text *stream_id);
extern void OcxFinishEvent(OcxNewEvent *ev, int index);
extern void OcxParseEventObjectExt(JsonbContainer *obj, int index, OcxNewEvent *ev,
								   bool with_stream_id);
extern bool OcxLastAppendCursor(uint64 *txid, int64 *position);
extern void OcxRememberAppend(uint64 txid, int64 position);

/*
 * dcb.c: event tags and the tag locks that make ocx.append_if race-free
 * (docs/consistency.md).  Tags are part of the log: every append of tagged
 * events takes their locks before it writes.
 */
#define OCX_MAX_TAGS			32
#define OCX_MAX_TAG_LEN			256
extern void OcxParseTags(JsonbValue *v, const char *what, int index,
						 char ***tags, int *ntags);
extern void OcxLockEventTags(OcxNewEvent *events, int n);
extern void OcxLockStreamOrder(const char *sid);
extern Datum OcxTagsDatum(OcxNewEvent *ev);
extern Datum OcxTagsJsonb(OcxNewEvent *ev);
/* tags.c: also for dcb.c */
extern PGDLLIMPORT bool ocx_tags_locked;
extern int	OcxSortDistinct(char **s, int n);
extern void OcxCheckTag(const char *tag, int len, const char *what, int index);
extern void OcxLockConditionTags(char **tags, int ntags, OcxNewEvent *events, int n);

/* cursor.c: the ocx.cursor type, (log txid, global position) */
extern Datum OcxCursorGetDatum(uint64 txid, int64 position);
extern void OcxCursorParts(Datum cursor, uint64 *txid, int64 *position);

/* logspace.c: the database's log xid space (docs/architecture.md) */
extern uint64 OcxLogXidOffset(void);
extern uint64 OcxLogTxid(void);
extern uint64 OcxLogHorizon(void);
extern bool OcxEventsAtOrAbove(uint64 txid);
extern bool OcxRestoreConnected(void);

/* citus.c: the log distributed with Citus (docs/scaling.md) */
extern bool OcxLogDistributed(void);
extern bool OcxLogPartitioned(void);	/* citus.c too: the log's other shape */
extern void OcxWaitForCommittingAppenders(void);
extern void OcxCitusRelcacheCallback(Datum arg, Oid relid);

/* reader.c: the one reader of the log, for C consumers (ocx._read_log) */
typedef struct OcxLogRead
{
	/* in: what to read */
	Datum		after_txid;		/* the cursor to read after */
	int64		after_pos;
	int32		max_count;
	Datum		types;			/* text[] */
	bool		types_null;		/* all types */
	Datum		categories;		/* text[] */
	bool		categories_null;	/* all categories */
	/* OcxReadLogTail: the read's horizon, the last event after the cursor below it */
	Datum		horizon;
	bool		have_tail;
	Datum		tail_txid;
	int64		tail_pos;
	bool		have_tail_time;
	TimestampTz tail_time;
} OcxLogRead;
extern void OcxReadLogTail(OcxLogRead *r);
extern uint64 OcxReadLog(OcxLogRead *r);
extern uint64 OcxReadLogStored(uint64 after_txid, int64 after_pos, int32 max_count,
							   uint64 horizon);
extern bool OcxLogSelects(const char *type, const char *stream_id,
						  char **types, int ntypes, char **categories, int ncategories);

/* appenders.c: the appenders' horizon (ocx.horizon = 'appenders') */
extern void OcxAppendersInit(void);
extern void OcxAppendersShmemRequest(void);
extern void OcxAppendersShmemStartup(void);
extern void OcxAppenderEnter(void);
extern void OcxBystanderEnter(void);

/*
 * ocx's relcache callbacks: ocx.c registers one callback for all of them
 * (a backend has room for only ten, shared with every other extension).
 */
extern void OcxDefCacheRelcacheCallback(Datum arg, Oid relid);
extern void OcxLogSpaceRelcacheCallback(Datum arg, Oid relid);
extern void OcxPrivacyRelcacheCallback(Datum arg, Oid relid);
extern void OcxInlineRelcacheCallback(Datum arg, Oid relid);
extern TransactionId OcxBystandersHorizon(Snapshot snap);
extern uint64 OcxAppendersHorizon(Snapshot snap);

/*
 * horizon.c: the database worker's look at the log horizon's holder (the
 * long-transaction stall); runs in the caller's transaction, never asks
 * for another pass
 */
extern bool OcxHorizonWorkerTick(void);

/* cloudevents.c */
extern OcxNewEvent *OcxEventsFromCloudEvents(Jsonb *ce, int *nevents);

/* spiutil.c: kept SPI plans (SPIPlanPtr is a pointer to an opaque struct) */
struct _SPI_plan;
extern struct _SPI_plan *OcxKeptPlan(struct _SPI_plan **slot, const char *sql,
									 int nargs, const Oid *argtypes);
extern struct _SPI_plan *OcxKeptPlanExt(struct _SPI_plan **slot, const char *sql,
										int nargs, const Oid *argtypes,
										int cursor_options);
extern uint64 OcxRunKeptPlan(struct _SPI_plan *plan, Datum *values,
							 const char *nulls, bool read_only);
extern uint64 OcxRunKeptOrderedPlan(struct _SPI_plan *plan, Datum *values,
									 const char *nulls, bool read_only);
extern ErrorData *OcxInSubtransaction(void (*fn) (void *arg), void *arg);
/* the fields of a composite datum th of row type desc into values/nulls (natts each) */
struct TupleDescData;
extern void OcxDeformRow(HeapTupleHeader th, struct TupleDescData *desc, Datum *values,
						 bool *nulls);

/* The longest event source (CloudEvents "source", ocx.source), in bytes. */
#define OCX_MAX_SOURCE_LEN		1024

/* jsonutil.c: small helpers over the jsonb API */
extern bool OcxParseUuid(const char *str, pg_uuid_t *out);
extern bool OcxParseTimestamp(const char *str, TimestampTz *out);
extern char *OcxFormatTimestamp(TimestampTz ts);
extern char *OcxJsonbString(JsonbValue *v);
extern Jsonb *OcxJsonbFromBinary(JsonbValue *v);
extern Jsonb *OcxEmptyObject(void);
extern bool OcxJsonbGet(JsonbContainer *obj, const char *key, JsonbValue *out);
extern Jsonb *OcxJsonbSetKey(Jsonb *obj, const char *key, JsonbValue *val);
extern const char *OcxJsonbTypeName(JsonbValue *v);
extern void OcxPushString(JsonbParseState **state, const char *key, const char *val);
extern void OcxPushValue(JsonbParseState **state, const char *key, JsonbValue *val);

/*
 * append.c: where the subsystems built on the log join the append path, so
 * that the log calls none of them by name.  Each hook is set by its
 * subsystem's Init (from _PG_init), which keeps the previous value and calls
 * it first, as PostgreSQL's hooks are chained.
 *
 * ocx_check_event_hook sees every event after the log's own checks and before
 * anything of the append is written; it may set a schema_version of 0 (left
 * 0, append.c makes it 1) and raises to refuse the event (contract.c: the
 * contract).  ocx_after_append_hook runs once the events are stored, in the
 * appending transaction, and not for an idempotent retry that wrote nothing;
 * an error there fails the append (projection.c: inline projections, and the
 * worker's wake-up at commit).
 */
typedef void (*OcxCheckEventHook) (OcxNewEvent *ev, int index);
typedef void (*OcxAfterAppendHook) (const char *stream_id, int64 first_version,
									int nevents);
extern PGDLLIMPORT OcxCheckEventHook ocx_check_event_hook;
extern PGDLLIMPORT OcxAfterAppendHook ocx_after_append_hook;

extern void OcxProjectionInit(void);
extern void OcxWorkerInit(void);
extern void OcxShmemInit(void);
extern void OcxWaitForInit(void);	/* waitfor.c: ocx.wait_for's waiters */

/*
 * Wake the database's ocx worker at commit of the current transaction (a
 * no-op without shared_preload_libraries).  Owned by worker.c.
 */
extern void OcxWakeWorkerAtCommit(void);

/*
 * Work the per-database worker does, each call in its own transaction (the
 * worker starts and commits it, and catches errors).  Each returns true when
 * it did something and should be called again soon.  Owned by bus.c,
 * commands.c and saga.c respectively.
 */
extern bool OcxBusWorkerTick(void);

/* reads.c: the time map behind read_all(after_time => ...), kept by the worker */
extern bool OcxTimeMapTick(void);

/*
 * Counters for ocx.stats / ocx.metrics() (metrics.c).  Cheap and callable from
 * any backend, with or without shared_preload_libraries (then no-ops).
 */
typedef enum OcxCounter
{
	OCX_COUNT_APPENDS,			/* successful append calls that wrote */
	OCX_COUNT_EVENTS,			/* events written */
	OCX_COUNT_BYTES,			/* data + metadata bytes written */
	OCX_COUNT_CONFLICTS,		/* wrong expected version */
	OCX_COUNT_IDEMPOTENT,		/* idempotent retries that wrote nothing */
	/* the subsystems built on the log (names and help: metrics.c) */
	OCX_COUNT_REPLAYS,			/* aggregate loads (ocx.load) */
	OCX_COUNT_REPLAY_EVENTS,	/* events folded by loads */
	OCX_COUNT_SNAPSHOT_HITS,	/* loads that started from a snapshot */
	OCX_COUNT_SNAPSHOTS_WRITTEN,	/* snapshots stored */
	OCX_COUNT_PROJECTION_EVENTS,	/* events applied by projections */
	OCX_COUNT_PROJECTION_ERRORS,	/* failed projection handler calls */
	OCX_COUNT_PROJECTION_DEAD_LETTERS,	/* events parked as dead letters */
	OCX_COUNT_COMMANDS_SENT,	/* ocx.send_command */
	OCX_COUNT_COMMANDS_SUCCEEDED,	/* commands completed */
	OCX_COUNT_COMMANDS_FAILED,	/* failed command attempts */
	OCX_COUNT_COMMANDS_DEAD_LETTERS,	/* commands given up on */
	OCX_COUNT_SAGAS_STARTED,	/* ocx.start_saga */
	OCX_COUNT_SAGAS_COMPLETED,	/* sagas that reached completed */
	OCX_COUNT_SAGAS_COMPENSATED,	/* sagas that reached compensated */
	OCX_COUNT_SAGAS_FAILED,		/* sagas that reached failed */
	OCX_COUNT_WORKER_RESTARTS,	/* worker loops restarted after an error */
	OCX_COUNT_STREAMS_SOFT_DELETED,	/* ocx.delete_stream, soft */
	OCX_COUNT_STREAMS_HARD_DELETED,	/* ocx.delete_stream, hard */
	OCX_COUNT_DELETED_EVENTS,	/* events removed by hard deletes */
	OCX_COUNT_RETENTION_BATCHES,	/* retention batches (one stream each) */
	OCX_COUNT_RETENTION_EVENTS, /* events removed by retention */
	OCX_COUNT_PROJECTION_EVENTS_READ,	/* events the reader handed to projection batches */
	OCX_NUM_COUNTERS
} OcxCounter;

extern void OcxCount(OcxCounter counter, int64 delta);
extern void OcxMetricsInit(void);

/*
 * removal: what leaves the log (issue 14).  append.c: the controlled
 * exception to the immutability trigger and the tombstone's error;
 * removal.c: ocx.delete_stream and the worker's retention unit.
 */
extern uint64 OcxRemoveStreamEvents(const char *stream_id, int64 through);
extern void OcxRaiseStreamDeleted(const char *stream_id) pg_attribute_noreturn();

/* directappend.c: events written without an SQL statement */
typedef enum OcxDirectResult
{
	OCX_DIRECT_UNUSABLE,		/* not applicable here; nothing written */
	OCX_DIRECT_DONE,			/* written */
	OCX_DIRECT_CONFLICT,		/* wrong expected version; nothing written */
	OCX_DIRECT_OTHER_TENANT,	/* the stream id is another tenant's */
	OCX_DIRECT_DELETED			/* the stream is a tombstone */
} OcxDirectResult;
extern OcxDirectResult OcxDirectAppend(text *stream_id, const char *sid,
									   const char *category, bool expected_isnull,
									   int64 expected, OcxNewEvent *events, int n,
									   TimestampTz now, bool chain, int64 *version,
									   int64 *position);
extern bool OcxRetentionTick(void);
/* logparts.c: the worker keeps partitions ahead of a partitioned log */
extern bool OcxLogPartitionsTick(void);

extern bool OcxCommandWorkerTick(void);
extern bool OcxSagaWorkerTick(void);

/*
 * integrity.c (chain): the per-stream hash chain, seals and proofs
 * (docs/integrity.md)
 */
extern void OcxIntegrityInit(void);
extern bool OcxChainOn(void);
extern void OcxChainBatch(bytea *prev, const char *sid, int64 first, OcxNewEvent *events,
						  int n, TimestampTz now, Datum *hashes);
extern bool OcxIntegrityTick(void);
/* privacy.c: crypto-shredding of personal data (docs/privacy.md) */
extern void OcxPrivacyInit(void);
extern void OcxPrivacyProtect(OcxNewEvent *events, int nevents);
extern bool OcxPrivacyCheck(OcxNewEvent *ev, int index);
extern void OcxPrivacyProtectImported(OcxNewEvent *ev, int index);
extern void OcxPrivacyLockForImport(void);
extern Jsonb *OcxPrivacyReveal(const char *type, int typelen, Jsonb *data,
							   const pg_uuid_t *event_id, bool allowed, bool *erased);
extern bool OcxPrivacyInUse(void);

#endif							/* OCX_H */
