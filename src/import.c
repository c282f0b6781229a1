/*
 * import.c
 *		The C pieces of the bulk import (sql/parts/89a_import.sql,
 *		docs/migrating.md): the line counter of ocx.import_staging, the
 *		per-row parse and check, the hash chain as a window function, the
 *		tag locks of a batch.
 *
 * ocx.import_commit() is set-based SQL: it parses every staged row once
 * (ocx._import_row, below), checks the batch with a few joins, locks the
 * streams and writes every event with one INSERT ... SELECT.  Nothing here
 * runs an append per row, and this file calls nothing of append.c but the
 * checks every event gets (OcxFinishEvent: the defaults, the size limit,
 * the type's contract) and the parse of a CloudEvent (cloudevents.c).
 *
 * Every error a row raises names its line: an error from the code it calls
 * (a contract, a CloudEvent parse, an input function) is caught and raised
 * again with "line N: " before its message; a data exception of an input
 * function (SQLSTATE class 22) becomes OX002 (OX006 for a CloudEvent row).
 * The transaction aborts with it: nothing of the batch is written.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"

PG_FUNCTION_INFO_V1(ocx_import_line);
PG_FUNCTION_INFO_V1(ocx_import_begun);
PG_FUNCTION_INFO_V1(ocx_import_row);
PG_FUNCTION_INFO_V1(ocx_import_chain);
PG_FUNCTION_INFO_V1(ocx_import_lock_tags);
PG_FUNCTION_INFO_V1(ocx_import_lock_streams);

/* integrity.c: the one event hash (ocx._event_hash) */
extern Datum ocx_event_hash(PG_FUNCTION_ARGS);

/* the longest event type, as append.c allows */
#define IMPORT_MAX_TYPE_LEN 256

/* the line counter of this backend's batch, and the transaction that began it */
static int64 import_line = 0;
static FullTransactionId import_xact = {0};

/*
 * ocx._import_line(reset boolean DEFAULT false) -> bigint: the default of
 * ocx.import_staging.line, the next line of the batch.  With reset (from
 * ocx.import_begin()): start again at line 1 and record the calling
 * transaction as the one that began the batch.
 */
Datum
ocx_import_line(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0) && PG_GETARG_BOOL(0))
	{
		import_line = 0;
		import_xact = GetTopFullTransactionId();
		PG_RETURN_INT64(0);
	}
	PG_RETURN_INT64(++import_line);
}

/* ocx._import_begun() -> boolean: did this transaction call ocx.import_begin()? */
Datum
ocx_import_begun(PG_FUNCTION_ARGS)
{
	FullTransactionId mine = GetTopFullTransactionIdIfAny();

	PG_RETURN_BOOL(FullTransactionIdIsValid(mine) &&
				   FullTransactionIdEquals(mine, import_xact));
}

/* ------------------------------------------------------------------------
 * One staged row
 * ------------------------------------------------------------------------
 */

/* the columns of ocx.import_staging as ocx._import_row takes them */
enum
{
	IN_LINE,
	IN_STREAM_ID,
	IN_STREAM_VERSION,
	IN_TYPE,
	IN_DATA,
	IN_METADATA,
	IN_EVENT_ID,
	IN_SOURCE,
	IN_TIME,
	IN_SCHEMA_VERSION,
	IN_CORRELATION_ID,
	IN_CAUSATION_ID,
	IN_TAGS,
	IN_CLOUDEVENT,
	IN_COUNT
};

typedef struct ImportRow
{
	int64		line;
	char	   *stream_id;
	int64		version;
	OcxNewEvent ev;
} ImportRow;

static char *
ArgString(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
}

static Jsonb *
ParseJsonb(const char *s)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s)));
}

/* A JSON object given as text, for data and metadata. */
static Jsonb *
ParseObject(const char *s, const char *what)
{
	Jsonb	   *j = ParseJsonb(s);

	if (!JB_ROOT_IS_OBJECT(j))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("%s must be a JSON object", what)));
	return j;
}

static void
ParseUuidArg(const char *s, const char *what, pg_uuid_t *out)
{
	if (!OcxParseUuid(s, out))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("%s is not a valid UUID: \"%s\"", what, s)));
}

/* tags as a JSON array of strings, checked and normalized as append does */
static void
ParseTags(const char *s, int64 line, OcxNewEvent *ev)
{
	Jsonb	   *j = ParseJsonb(s);
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	OcxParseTags(&v, "line", (int) Min(line, PG_INT32_MAX), &ev->tags, &ev->ntags);
}

/* the row's own columns (no cloudevent) */
static void
RowFromColumns(FunctionCallInfo fcinfo, ImportRow *row)
{
	OcxNewEvent *ev = &row->ev;
	char	   *s;

	s = ArgString(fcinfo, IN_STREAM_ID);
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id must not be null")));
	OcxCheckStreamId(cstring_to_text(s));
	row->stream_id = s;

	s = ArgString(fcinfo, IN_STREAM_VERSION);
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("stream_version must not be null"),
				 errhint("Give every row its version in its stream: 1 for the first event.")));
	row->version = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(s)));
	if (row->version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("stream_version must be 1 or more, not " INT64_FORMAT, row->version),
				 errhint("Versions start at 1 (Message DB and EventStoreDB count from 0: add 1).")));

	ev->type = ArgString(fcinfo, IN_TYPE);
	if (ev->type == NULL || ev->type[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("the event has no type")));
	if (strlen(ev->type) > IMPORT_MAX_TYPE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("the event's type is too long"),
				 errdetail("Event types are limited to %d bytes.", IMPORT_MAX_TYPE_LEN)));

	if ((s = ArgString(fcinfo, IN_DATA)) != NULL)
		ev->data = ParseObject(s, "data");
	if ((s = ArgString(fcinfo, IN_METADATA)) != NULL)
		ev->metadata = ParseObject(s, "metadata");
	if ((s = ArgString(fcinfo, IN_EVENT_ID)) != NULL)
	{
		ParseUuidArg(s, "event_id", &ev->id);
		ev->has_id = true;
	}
	if ((s = ArgString(fcinfo, IN_SOURCE)) != NULL)
	{
		if (s[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("source must not be empty")));
		if (strlen(s) > OCX_MAX_SOURCE_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("source is too long"),
					 errdetail("Sources are limited to %d bytes.", OCX_MAX_SOURCE_LEN)));
		ev->source = s;
	}
	if ((s = ArgString(fcinfo, IN_TIME)) != NULL)
	{
		ev->time = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
		if (TIMESTAMP_NOT_FINITE(ev->time))
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("time must be finite, not \"%s\"", s)));
		ev->has_time = true;
	}
	if ((s = ArgString(fcinfo, IN_SCHEMA_VERSION)) != NULL)
	{
		ev->schema_version = DatumGetInt32(DirectFunctionCall1(int4in, CStringGetDatum(s)));
		if (ev->schema_version < 1)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("schema_version must be a positive integer, not %d", ev->schema_version)));
	}
	if ((s = ArgString(fcinfo, IN_CORRELATION_ID)) != NULL)
	{
		ParseUuidArg(s, "correlation_id", &ev->correlation_id);
		ev->has_correlation_id = true;
	}
	if ((s = ArgString(fcinfo, IN_CAUSATION_ID)) != NULL)
	{
		ParseUuidArg(s, "causation_id", &ev->causation_id);
		ev->has_causation_id = true;
	}
	if ((s = ArgString(fcinfo, IN_TAGS)) != NULL)
		ParseTags(s, row->line, ev);
}

/* A string attribute of a CloudEvent, removed from it; NULL when absent. */
static bool
TakeAttribute(Jsonb **ce, const char *name, JsonbValue *out)
{
	if (!OcxJsonbGet(&(*ce)->root, name, out))
		return false;
	*ce = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(*ce),
											 CStringGetTextDatum(name)));
	return true;
}

/*
 * A row holding one structured-mode CloudEvent, as ocx.export() writes
 * them: ocxstream (the stream id), ocxversion (its version), ocxtags (a
 * JSON array of the tags, as a string); the rest is what
 * ocx.append_cloudevents takes.
 */
static void
RowFromCloudEvent(FunctionCallInfo fcinfo, ImportRow *row)
{
	Jsonb	   *ce;
	JsonbValue	v;
	OcxNewEvent *events;
	int			n,
				i;
	char	   *tags = NULL;

	for (i = IN_STREAM_ID; i < IN_CLOUDEVENT; i++)
		if (!PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
					 errmsg("a row with a cloudevent must leave the other columns empty")));
	ce = ParseJsonb(ArgString(fcinfo, IN_CLOUDEVENT));
	if (!JB_ROOT_IS_OBJECT(ce))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
				 errmsg("cloudevent must be a JSON object")));

	if (!TakeAttribute(&ce, "ocxstream", &v) || v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
				 errmsg("the CloudEvent has no string attribute \"ocxstream\" (its stream id)")));
	row->stream_id = OcxJsonbString(&v);
	OcxCheckStreamId(cstring_to_text(row->stream_id));

	if (!TakeAttribute(&ce, "ocxversion", &v) || v.type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
				 errmsg("the CloudEvent has no integer attribute \"ocxversion\" (its version in the stream)")));
	row->version = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
	if (row->version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
				 errmsg("\"ocxversion\" must be 1 or more, not " INT64_FORMAT, row->version)));

	if (TakeAttribute(&ce, "ocxtags", &v))
	{
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
					 errmsg("\"ocxtags\" must be a string holding a JSON array of tags")));
		tags = OcxJsonbString(&v);
	}

	events = OcxEventsFromCloudEvents(ce, &n);
	Assert(n == 1);
	row->ev = events[0];
	if (tags != NULL)
		ParseTags(tags, row->line, &row->ev);
}

/* A random (version 4) UUID for a row that gives none. */
static void
RandomEventId(pg_uuid_t *u)
{
	if (!pg_strong_random(u->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	u->data[6] = (u->data[6] & 0x0f) | 0x40;
	u->data[8] = (u->data[8] & 0x3f) | 0x80;
}

static void
ParseRow(FunctionCallInfo fcinfo, ImportRow *row)
{
	if (PG_ARGISNULL(IN_CLOUDEVENT))
		RowFromColumns(fcinfo, row);
	else
		RowFromCloudEvent(fcinfo, row);
	/* what every appended event gets: defaults, size limit, contract */
	OcxFinishEvent(&row->ev, (int) Min(row->line, PG_INT32_MAX));
	if (!row->ev.has_id)
		RandomEventId(&row->ev.id);
}

/*
 * ocx._import_row(line, stream_id, stream_version, type, data, metadata,
 * event_id, source, time, schema_version, correlation_id, causation_id,
 * tags, cloudevent), all text but line -> the event as it will be stored.
 */
Datum
ocx_import_row(PG_FUNCTION_ARGS)
{
	ImportRow	row;
	TupleDesc	desc;
	Datum		values[12];
	bool		nulls[12];
	MemoryContext cxt = CurrentMemoryContext;
	OcxNewEvent *ev = &row.ev;

	if (PG_ARGISNULL(IN_LINE))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("line must not be null")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ocx: _import_row must return a record");
	memset(&row, 0, sizeof(row));
	row.line = PG_GETARG_INT64(IN_LINE);

	PG_TRY();
	{
		ParseRow(fcinfo, &row);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			category;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (category != ERRCODE_TO_CATEGORY(ERRCODE_OCX_INTERNAL) &&
			category != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		if (category == ERRCODE_DATA_EXCEPTION)
			edata->sqlerrcode = PG_ARGISNULL(IN_CLOUDEVENT) ?
				ERRCODE_OCX_INVALID_EVENT : ERRCODE_OCX_INVALID_CLOUDEVENT;
		edata->message = psprintf("line " INT64_FORMAT ": %s", row.line,
								  edata->message ? edata->message : "");
		ReThrowError(edata);
	}
	PG_END_TRY();

	memset(nulls, false, sizeof(nulls));
	values[0] = CStringGetTextDatum(row.stream_id);
	values[1] = Int64GetDatum(row.version);
	values[2] = UUIDPGetDatum(&ev->id);
	values[3] = CStringGetTextDatum(ev->source);
	values[4] = CStringGetTextDatum(ev->type);
	values[5] = Int32GetDatum(ev->schema_version);
	values[6] = TimestampTzGetDatum(ev->has_time ? ev->time : GetCurrentStatementStartTimestamp());
	values[7] = JsonbPGetDatum(ev->data);
	values[8] = JsonbPGetDatum(ev->metadata);
	values[9] = UUIDPGetDatum(&ev->correlation_id);
	nulls[9] = !ev->has_correlation_id;
	values[10] = UUIDPGetDatum(&ev->causation_id);
	nulls[10] = !ev->has_causation_id;
	if (ev->ntags > 0)
		values[11] = OcxTagsDatum(ev);
	else
		nulls[11] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* ------------------------------------------------------------------------
 * The versions and the hash chain of a batch
 * ------------------------------------------------------------------------
 */

/* one stream of the batch, while ocx._import_chain runs over it */
typedef struct ChainStream
{
	char	   *stream_id;		/* the key: a string in the statement's memory */
	int64		version;		/* the last version seen */
	bool		have;			/* prev holds a hash */
	uint8		prev[32];
} ChainStream;

typedef struct ChainState
{
	HTAB	   *streams;
	bool		on;				/* OcxChainOn() */
} ChainState;

/* the hash table hashes and compares the stream ids its keys point to */
static uint32
StreamHash(const void *key, Size keysize)
{
	const char *sid = *(const char *const *) key;

	return hash_bytes((const unsigned char *) sid, strlen(sid));
}

static int
StreamMatch(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * ocx._import_chain(line, current, head, stream_id, stream_version,
 * event_id, source, type, schema_version, time, data, metadata,
 * correlation_id, causation_id, tenant_id, tags), called on the rows of a
 * batch in line order: checks that each stream's rows are consecutive
 * versions after its current version (OX001 names the line), and returns
 * each event's hash chained from the stream's previous row, its first from
 * head (the stream's head before the batch): the hash is ocx._event_hash's,
 * the one the append stores.  NULL with the chain off (ocx.chain).  The
 * streams seen live in a hash table for the statement (fn_extra).
 */
Datum
ocx_import_chain(PG_FUNCTION_ARGS)
{
	ChainState *st = (ChainState *) fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(hf, 14);
	ChainStream *cs;
	char	   *sid;
	int64		line,
				version;
	bool		found;
	Datum		result;
	bytea	   *h;
	int			i;

	for (i = 0; i <= 4; i++)
		if (i != 2 && PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
					 errmsg("line, current, stream_id and stream_version must not be null")));
	if (st == NULL)
	{
		HASHCTL		ctl;

		st = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ChainState));
		ctl.keysize = sizeof(char *);
		ctl.entrysize = sizeof(ChainStream);
		ctl.hash = StreamHash;
		ctl.match = StreamMatch;
		ctl.hcxt = fcinfo->flinfo->fn_mcxt;
		st->streams = hash_create("ocx import streams", 1024, &ctl,
								  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
		st->on = OcxChainOn();
		fcinfo->flinfo->fn_extra = st;
	}
	line = PG_GETARG_INT64(0);
	sid = text_to_cstring(PG_GETARG_TEXT_PP(3));
	version = PG_GETARG_INT64(4);

	cs = (ChainStream *) hash_search(st->streams, &sid, HASH_ENTER, &found);
	if (!found)
	{
		cs->stream_id = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, sid);
		cs->version = PG_GETARG_INT64(1);
		cs->have = false;
		if (!PG_ARGISNULL(2))
		{
			bytea	   *b = PG_GETARG_BYTEA_PP(2);

			if (VARSIZE_ANY_EXHDR(b) != sizeof(cs->prev))
				ereport(ERROR,
						(errcode(ERRCODE_OCX_CHAIN_BROKEN),
						 errmsg("the head of stream \"%s\" is not a SHA-256 hash", sid)));
			memcpy(cs->prev, VARDATA_ANY(b), sizeof(cs->prev));
			cs->have = true;
		}
	}
	if (version != cs->version + 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_WRONG_EXPECTED_VERSION),
				 errmsg("line " INT64_FORMAT ": version " INT64_FORMAT " of stream \"%s\" does not follow version " INT64_FORMAT,
						line, version, sid, cs->version),
				 errdetail(found ? "A stream's rows must be consecutive versions in line order." :
						   "The stream is at version " INT64_FORMAT ": the batch continues it at " INT64_FORMAT ".",
						   cs->version, cs->version + 1)));
	cs->version = version;
	if (!st->on)
		PG_RETURN_NULL();

	InitFunctionCallInfoData(*hf, NULL, 14, InvalidOid, NULL, NULL);
	if (cs->have)
	{
		bytea	   *p = palloc(VARHDRSZ + sizeof(cs->prev));

		SET_VARSIZE(p, VARHDRSZ + sizeof(cs->prev));
		memcpy(VARDATA(p), cs->prev, sizeof(cs->prev));
		hf->args[0].value = PointerGetDatum(p);
		hf->args[0].isnull = false;
	}
	else
		hf->args[0].isnull = true;
	for (i = 1; i < 14; i++)
	{
		hf->args[i].value = PG_GETARG_DATUM(i + 2);
		hf->args[i].isnull = PG_ARGISNULL(i + 2);
	}
	result = ocx_event_hash(hf);
	if (hf->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("line " INT64_FORMAT ": the event lacks a stored field", line)));
	h = DatumGetByteaPP(result);
	memcpy(cs->prev, VARDATA_ANY(h), sizeof(cs->prev));
	cs->have = true;
	PG_RETURN_DATUM(result);
}

/*
 * ocx._import_lock_tags(tags text[]): the ShareLocks an append of events
 * with these tags takes (tags.c), so that an ocx.append_if whose condition
 * the batch matches waits for the import; all in one pass, in key order.
 */
Datum
ocx_import_lock_tags(PG_FUNCTION_ARGS)
{
	ArrayType  *a;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i,
				m = 0;
	OcxNewEvent ev;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	a = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	memset(&ev, 0, sizeof(ev));
	ev.tags = palloc(sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!nulls[i])
			ev.tags[m++] = TextDatumGetCString(elems[i]);
	ev.ntags = m;
	OcxLockEventTags(&ev, 1);
	PG_RETURN_VOID();
}

/*
 * ocx._import_lock_streams(stream_ids text[]): the stream-order lock an
 * append takes (append.c) on each stream of the batch, in the order given
 * (import_commit passes them sorted), before the import creates or locks
 * their rows: an append of a new stream creates its row under that lock
 * only (directappend.c), so it must wait for the import rather than meet
 * the import's row in the unique index.
 */
Datum
ocx_import_lock_streams(PG_FUNCTION_ARGS)
{
	ArrayType  *a;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	a = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *sid;

		if (nulls[i])
			continue;
		sid = TextDatumGetCString(elems[i]);
		OcxLockStreamOrder(sid);
		pfree(sid);
	}
	PG_RETURN_VOID();
}
