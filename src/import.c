/*
 * import.c
 *		The bulk import (sql/parts/89a_import.sql, docs/migrating.md): the
 *		line counter of ocx.import_staging, the parse and check of each
 *		staged row, and ocx._import_write, which writes a batch to the log
 *		as COPY writes a table.
 *
 * ocx.import_commit() calls ocx._import_write() (below: two passes over the
 * batch, the locks an append takes, the rows of ocx.events written with
 * table_multi_insert and their index entries, the stream rows with two
 * set-based statements).  Nothing here runs an append per row, and this
 * file calls nothing of append.c but the checks every event gets
 * (OcxFinishEvent: the defaults, the size limit, the type's contract), the
 * stream-order lock (OcxLockStreamOrder), the parse of a CloudEvent
 * (cloudevents.c), the encryption of personal fields (privacy.c: checked in
 * pass 1, encrypted in pass 2 under one lock on ocx.subject_keys) and, once
 * the batch is written, the after-append hook for each run of a stream's
 * consecutive rows (the inline projections, as appends of those runs would
 * have run them).
 *
 * Every refusal names its line: an error from the code a row's parse calls
 * (a contract, a CloudEvent parse, an input function) is caught and kept
 * with "line N: " before its message; a data exception of an input
 * function (SQLSTATE class 22) becomes OX002 (OX006 for a CloudEvent row).
 * The batch goes on to its end, and one error lists every refused line:
 * the transaction aborts with it, and nothing of the batch is written.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_relation.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_import_line);
PG_FUNCTION_INFO_V1(ocx_import_begun);
PG_FUNCTION_INFO_V1(ocx_import_write);

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
	bool		personal;		/* its type has personal data */
} ImportRow;

/* one staged row: the columns of ocx.import_staging, in the order above */
typedef struct ImportInput
{
	Datum		values[IN_COUNT];
	bool		nulls[IN_COUNT];
} ImportInput;

static char *
ArgString(ImportInput *in, int i)
{
	return in->nulls[i] ? NULL : TextDatumGetCString(in->values[i]);
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
RowFromColumns(ImportInput *in, ImportRow *row)
{
	OcxNewEvent *ev = &row->ev;
	char	   *s;

	s = ArgString(in, IN_STREAM_ID);
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_STREAM_ID),
				 errmsg("stream id must not be null")));
	OcxCheckStreamId(cstring_to_text(s));
	row->stream_id = s;

	s = ArgString(in, IN_STREAM_VERSION);
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

	ev->type = ArgString(in, IN_TYPE);
	if (ev->type == NULL || ev->type[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("the event has no type")));
	if (strlen(ev->type) > IMPORT_MAX_TYPE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("the event's type is too long"),
				 errdetail("Event types are limited to %d bytes.", IMPORT_MAX_TYPE_LEN)));

	if ((s = ArgString(in, IN_DATA)) != NULL)
		ev->data = ParseObject(s, "data");
	if ((s = ArgString(in, IN_METADATA)) != NULL)
		ev->metadata = ParseObject(s, "metadata");
	if ((s = ArgString(in, IN_EVENT_ID)) != NULL)
	{
		ParseUuidArg(s, "event_id", &ev->id);
		ev->has_id = true;
	}
	if ((s = ArgString(in, IN_SOURCE)) != NULL)
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
	if ((s = ArgString(in, IN_TIME)) != NULL)
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
	if ((s = ArgString(in, IN_SCHEMA_VERSION)) != NULL)
	{
		ev->schema_version = DatumGetInt32(DirectFunctionCall1(int4in, CStringGetDatum(s)));
		if (ev->schema_version < 1)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_EVENT),
					 errmsg("schema_version must be a positive integer, not %d", ev->schema_version)));
	}
	if ((s = ArgString(in, IN_CORRELATION_ID)) != NULL)
	{
		ParseUuidArg(s, "correlation_id", &ev->correlation_id);
		ev->has_correlation_id = true;
	}
	if ((s = ArgString(in, IN_CAUSATION_ID)) != NULL)
	{
		ParseUuidArg(s, "causation_id", &ev->causation_id);
		ev->has_causation_id = true;
	}
	if ((s = ArgString(in, IN_TAGS)) != NULL)
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
RowFromCloudEvent(ImportInput *in, ImportRow *row)
{
	Jsonb	   *ce;
	JsonbValue	v;
	OcxNewEvent *events;
	int			n,
				i;
	char	   *tags = NULL;

	for (i = IN_STREAM_ID; i < IN_CLOUDEVENT; i++)
		if (!in->nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
					 errmsg("a row with a cloudevent must leave the other columns empty")));
	ce = ParseJsonb(ArgString(in, IN_CLOUDEVENT));
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
ParseRow(ImportInput *in, ImportRow *row)
{
	if (in->nulls[IN_CLOUDEVENT])
		RowFromColumns(in, row);
	else
		RowFromCloudEvent(in, row);
	/* what every appended event gets: defaults, size limit, contract */
	OcxFinishEvent(&row->ev, (int) Min(row->line, PG_INT32_MAX));
	if (!row->ev.has_id)
		RandomEventId(&row->ev.id);
	/* personal data: the subject's id is there (encrypted in pass 2) */
	row->personal = OcxPrivacyCheck(&row->ev, (int) Min(row->line, PG_INT32_MAX));
}

/* ------------------------------------------------------------------------
 * The batch: ocx._import_write()
 * ------------------------------------------------------------------------
 */

/* rows parsed per subtransaction, and written per table_multi_insert */
#define IMPORT_CHUNK			1000
/* more streams than this: one lock on ocx.streams instead of one per stream */
#define IMPORT_STREAM_LOCKS		1000
/* refusals kept (the error lists the first IMPORT_ERRORS_LISTED by line) */
#define IMPORT_ERRORS_KEPT		10000
#define IMPORT_ERRORS_LISTED	20

/* the columns of ocx.import_staging, by name, in the order of IN_* */
static const char *const staging_cols[IN_COUNT] = {
	"line", "stream_id", "stream_version", "type", "data", "metadata", "event_id", "source",
	"time", "schema_version", "correlation_id", "causation_id", "tags", "cloudevent"
};

/* the parsed row as the batch keeps it between its two passes */
enum
{
	PR_LINE,
	PR_STREAM_ID,
	PR_VERSION,
	PR_EVENT_ID,
	PR_SOURCE,
	PR_TYPE,
	PR_SCHEMA_VERSION,
	PR_TIME,
	PR_DATA,
	PR_METADATA,
	PR_CORRELATION_ID,
	PR_CAUSATION_ID,
	PR_TAGS,
	PR_COUNT
};

/* the columns of ocx.events the import writes */
enum
{
	EV_GLOBAL_POSITION,
	EV_TENANT_ID,
	EV_TXID,
	EV_HASH,
	EV_FROM_ROW					/* then the row's PR_STREAM_ID .. PR_TAGS */
};
static const char *const event_cols[EV_FROM_ROW + PR_COUNT - 1] = {
	"global_position", "tenant_id", "txid", "hash",
	"stream_id", "stream_version", "event_id", "source", "type", "schema_version", "time",
	"data", "metadata", "correlation_id", "causation_id", "tags"
};

typedef struct ImportError
{
	int64		line;
	int			sqlstate;
	char	   *message;
	char	   *detail;
	char	   *hint;
} ImportError;

/* one stream of the batch */
typedef struct BatchStream
{
	char	   *sid;			/* the key: a string in the batch's memory */
	int64		first_line;
	int64		min_version;
	int64		last_version;	/* the last seen in line order (pass 1) */
	bool		exists;			/* has a stream row (after the probe) */
	int64		current;		/* its version before the batch */
	int64		written;		/* the last version the batch wrote */
	bool		have_head;		/* head holds the hash to chain from */
	uint8		head[32];
} BatchStream;

/* a string of the batch (source, tag) and its number */
typedef struct BatchString
{
	char	   *s;
	int			n;
} BatchString;

/* an event id given in the batch: its source's number and the id */
typedef struct EventKey
{
	pg_uuid_t	id;
	int			source;
} EventKey;

typedef struct EventSeen
{
	EventKey	key;
	int64		line;
} EventSeen;

/*
 * A run of written rows of one stream, consecutive in line order: what one
 * append of those events would have been (the after-append hook, i.e. the
 * inline projections, runs once per run, in line order).
 */
typedef struct ImportRun
{
	const char *sid;			/* the stream's (BatchStream) */
	int64		first_version;
	int			nevents;
	int64		first_line;
} ImportRun;

typedef struct Batch
{
	MemoryContext cxt;			/* everything below */
	ImportError *errors;
	int			nerrors;
	int64		refused;		/* all refusals, kept or not */
	HTAB	   *streams;
	BatchStream *last_stream;	/* the last row's (rows of a stream often follow each other) */
	HTAB	   *sources;
	BatchString *last_source;
	HTAB	   *tags;
	HTAB	   *ids;
	bool		personal;		/* some row's type has personal data */
	TupleDesc	rowdesc;
	Tuplestorestate *rows;
	int64		nrows;
	int64		last_line;
	/* the chunk being parsed */
	Datum	   *all;			/* a staged row's columns */
	bool	   *allnull;
	HeapTuple  *chunk;
	int			nchunk;
	int			next;
	TupleDesc	staging_desc;
	AttrNumber	staging_map[IN_COUNT];
	ImportRow  *parsed;
} Batch;

/* the hash table hashes and compares the strings its keys point to */
static uint32
StringHash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

static int
StringMatch(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static HTAB *
StringTable(Batch *b, const char *name, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = StringHash;
	ctl.match = StringMatch;
	ctl.hcxt = b->cxt;
	return hash_create(name, 1024, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* String s of table t (numbered in the order they came), added when new. */
static BatchString *
InternString(Batch *b, HTAB *t, const char *s)
{
	bool		found;
	BatchString *e = (BatchString *) hash_search(t, &s, HASH_ENTER, &found);

	if (!found)
	{
		e->s = MemoryContextStrdup(b->cxt, s);
		e->n = (int) hash_get_num_entries(t) - 1;
	}
	return e;
}

/* Keep one refusal (in the batch's memory). */
static void
Refuse(Batch *b, int64 line, int sqlstate, const char *message, const char *detail,
	   const char *hint)
{
	MemoryContext old;
	ImportError *e;

	b->refused++;
	if (b->nerrors >= IMPORT_ERRORS_KEPT)
		return;
	old = MemoryContextSwitchTo(b->cxt);
	if (b->errors == NULL)
		b->errors = palloc(sizeof(ImportError) * 64);
	else if (b->nerrors >= 64 && (b->nerrors & (b->nerrors - 1)) == 0)
		b->errors = repalloc(b->errors, sizeof(ImportError) * b->nerrors * 2);
	e = &b->errors[b->nerrors++];
	e->line = line;
	e->sqlstate = sqlstate;
	e->message = pstrdup(message);
	e->detail = detail ? pstrdup(detail) : NULL;
	e->hint = hint ? pstrdup(hint) : NULL;
	MemoryContextSwitchTo(old);
}

static int
CompareErrors(const void *a, const void *b)
{
	const ImportError *x = (const ImportError *) a;
	const ImportError *y = (const ImportError *) b;

	return x->line < y->line ? -1 : x->line > y->line ? 1 : 0;
}

/*
 * Raise the batch's refusals as one error: the first bad line's SQLSTATE,
 * message and hint; its detail, followed (when more lines were refused) by
 * the first IMPORT_ERRORS_LISTED refused lines and how many more there are.
 */
static void
RaiseRefusals(Batch *b)
{
	ImportError *first;
	StringInfoData detail;
	int			i,
				listed;

	qsort(b->errors, b->nerrors, sizeof(ImportError), CompareErrors);
	first = &b->errors[0];
	initStringInfo(&detail);
	if (first->detail)
		appendStringInfoString(&detail, first->detail);
	if (b->refused > 1)
	{
		if (detail.len > 0)
			appendStringInfoChar(&detail, '\n');
		appendStringInfo(&detail, INT64_FORMAT " lines of the batch were refused:", b->refused);
		listed = Min(b->nerrors, IMPORT_ERRORS_LISTED);
		for (i = 0; i < listed; i++)
			appendStringInfo(&detail, "\n%s (%s)", b->errors[i].message,
							 unpack_sql_state(b->errors[i].sqlstate));
		if (b->refused > listed)
			appendStringInfo(&detail, "\nand " INT64_FORMAT " more", b->refused - listed);
	}
	ereport(ERROR,
			(errcode(first->sqlstate),
			 errmsg_internal("%s", first->message),
			 detail.len > 0 ? errdetail_internal("%s", detail.data) : 0,
			 first->hint ? errhint("%s", first->hint) : 0));
}

/* A refusal with a message in printf style. */
static void
RefuseF(Batch *b, int64 line, int sqlstate, const char *detail, const char *hint,
		const char *fmt,...) pg_attribute_printf(6, 7);

static void
RefuseF(Batch *b, int64 line, int sqlstate, const char *detail, const char *hint,
		const char *fmt,...)
{
	StringInfoData msg;

	initStringInfo(&msg);
	appendStringInfo(&msg, "line " INT64_FORMAT ": ", line);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&msg, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&msg, needed);
	}
	Refuse(b, line, sqlstate, msg.data, detail, hint);
	pfree(msg.data);
}

/* ---- pass 1: parse and check every staged row ---- */

/* Parse b->chunk[b->next ..] into b->parsed (run in a subtransaction). */
static void
ParseChunk(void *arg)
{
	Batch	   *b = (Batch *) arg;

	for (; b->next < b->nchunk; b->next++)
	{
		ImportInput in;
		ImportRow  *row = &b->parsed[b->next];
		int			i;

		heap_deform_tuple(b->chunk[b->next], b->staging_desc, b->all, b->allnull);
		for (i = 0; i < IN_COUNT; i++)
		{
			in.values[i] = b->all[b->staging_map[i] - 1];
			in.nulls[i] = b->allnull[b->staging_map[i] - 1];
		}
		memset(row, 0, sizeof(*row));
		if (in.nulls[IN_LINE])
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
					 errmsg("line must not be null")));
		row->line = DatumGetInt64(in.values[IN_LINE]);
		ParseRow(&in, row);
	}
}

/* The refusal of a row whose parse raised edata (other errors are raised). */
static void
RefuseParse(Batch *b, ErrorData *edata)
{
	int			category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
	int64		line = b->parsed[b->next].line;
	bool		ce;
	char	   *msg;

	if (category != ERRCODE_TO_CATEGORY(ERRCODE_OCX_INTERNAL) &&
		category != ERRCODE_DATA_EXCEPTION)
		ReThrowError(edata);
	if (line == 0)
	{
		bool		isnull;

		line = DatumGetInt64(heap_getattr(b->chunk[b->next], b->staging_map[IN_LINE],
										  b->staging_desc, &isnull));
	}
	ce = !heap_attisnull(b->chunk[b->next], b->staging_map[IN_CLOUDEVENT], b->staging_desc);
	if (category == ERRCODE_DATA_EXCEPTION)
		edata->sqlerrcode = ce ? ERRCODE_OCX_INVALID_CLOUDEVENT : ERRCODE_OCX_INVALID_EVENT;
	msg = psprintf("line " INT64_FORMAT ": %s", line, edata->message ? edata->message : "");
	Refuse(b, line, edata->sqlerrcode, msg, edata->detail, edata->hint);
	FreeErrorData(edata);
}

/* The checks of a parsed row against the batch; false when it is refused. */
static bool
CheckRow(Batch *b, ImportRow *row)
{
	OcxNewEvent *ev = &row->ev;
	BatchStream *s;
	bool		found;
	int			i;

	/* the stream: consecutive versions in line order */
	if (b->last_stream != NULL && strcmp(b->last_stream->sid, row->stream_id) == 0)
		s = b->last_stream, found = true;
	else
		s = (BatchStream *) hash_search(b->streams, &row->stream_id, HASH_ENTER, &found);
	b->last_stream = s;
	if (!found)
	{
		s->sid = MemoryContextStrdup(b->cxt, row->stream_id);
		s->first_line = row->line;
		s->min_version = row->version;
		s->last_version = row->version;
	}
	else
	{
		int64		prev = s->last_version;

		s->last_version = row->version;
		if (row->version != prev + 1)
		{
			RefuseF(b, row->line, ERRCODE_OCX_WRONG_EXPECTED_VERSION,
					"A stream's rows must be consecutive versions in line order.", NULL,
					"version " INT64_FORMAT " of stream \"%s\" does not follow version " INT64_FORMAT,
					row->version, row->stream_id, prev);
			return false;
		}
	}

	/* an event id given twice */
	if (ev->has_id)
	{
		EventSeen  *seen;
		EventKey	key;

		memset(&key, 0, sizeof(key));
		key.id = ev->id;
		if (b->last_source == NULL || strcmp(b->last_source->s, ev->source) != 0)
			b->last_source = InternString(b, b->sources, ev->source);
		key.source = b->last_source->n;
		seen = (EventSeen *) hash_search(b->ids, &key, HASH_ENTER, &found);
		if (found)
		{
			RefuseF(b, row->line, ERRCODE_OCX_DUPLICATE_EVENT, "Event ids are unique per source.", NULL,
					"event id %s is also on line " INT64_FORMAT,
					DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ev->id))),
					seen->line);
			return false;
		}
		seen->line = row->line;
	}

	for (i = 0; i < ev->ntags; i++)
		(void) InternString(b, b->tags, ev->tags[i]);
	b->personal |= row->personal;
	return true;
}

/* Keep a checked row for pass 2 (only while the batch has no refusal). */
static void
KeepRow(Batch *b, ImportRow *row)
{
	OcxNewEvent *ev = &row->ev;
	Datum		values[PR_COUNT];
	bool		nulls[PR_COUNT];

	memset(nulls, false, sizeof(nulls));
	values[PR_LINE] = Int64GetDatum(row->line);
	values[PR_STREAM_ID] = CStringGetTextDatum(row->stream_id);
	values[PR_VERSION] = Int64GetDatum(row->version);
	values[PR_EVENT_ID] = UUIDPGetDatum(&ev->id);
	values[PR_SOURCE] = CStringGetTextDatum(ev->source);
	values[PR_TYPE] = CStringGetTextDatum(ev->type);
	values[PR_SCHEMA_VERSION] = Int32GetDatum(ev->schema_version);
	values[PR_TIME] = TimestampTzGetDatum(ev->has_time ? ev->time : GetCurrentStatementStartTimestamp());
	values[PR_DATA] = JsonbPGetDatum(ev->data);
	values[PR_METADATA] = JsonbPGetDatum(ev->metadata);
	values[PR_CORRELATION_ID] = UUIDPGetDatum(&ev->correlation_id);
	nulls[PR_CORRELATION_ID] = !ev->has_correlation_id;
	values[PR_CAUSATION_ID] = UUIDPGetDatum(&ev->causation_id);
	nulls[PR_CAUSATION_ID] = !ev->has_causation_id;
	if (ev->ntags > 0)
		values[PR_TAGS] = OcxTagsDatum(ev);
	else
		nulls[PR_TAGS] = true;
	tuplestore_putvalues(b->rows, b->rowdesc, values, nulls);
	b->nrows++;
}

/* The parsed rows' tuple descriptor. */
static TupleDesc
RowDesc(void)
{
	static const Oid types[PR_COUNT] = {
		INT8OID, TEXTOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, JSONBOID, UUIDOID, UUIDOID, TEXTARRAYOID
	};
	TupleDesc	d = CreateTemplateTupleDesc(PR_COUNT);
	int			i;

	for (i = 0; i < PR_COUNT; i++)
		TupleDescInitEntry(d, (AttrNumber) (i + 1), NULL, types[i], -1, 0);
	return d;
}

/* Map a table's columns by name: map[i] = attnum of names[i] (0: absent). */
static void
MapByName(Relation rel, const char *const *names, int n, AttrNumber *map)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		map[i] = attnameAttNum(rel, names[i], false);
		if (map[i] == InvalidAttrNumber)
			map[i] = 0;
	}
}

/* Parse and check one chunk of staged rows. */
static void
TakeChunk(Batch *b)
{
	int			i;

	b->next = 0;
	while (b->next < b->nchunk)
	{
		ErrorData  *edata = OcxInSubtransaction(ParseChunk, b);

		if (edata == NULL)
			break;
		RefuseParse(b, edata);
		b->parsed[b->next].stream_id = NULL;	/* refused */
		b->next++;
	}
	/* the rows that parsed, in line order */
	for (i = 0; i < b->nchunk; i++)
	{
		ImportRow  *row = &b->parsed[i];

		if (row->stream_id == NULL)
			continue;
		if (row->line <= b->last_line)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
					 errmsg("line " INT64_FORMAT " of ocx.import_staging comes after line " INT64_FORMAT,
							row->line, b->last_line),
					 errdetail("The lines of a batch must rise in the order of its rows, as ocx.import_staging numbers them."),
					 errhint("Leave the column \"line\" to its default.")));
		b->last_line = row->line;
		if (CheckRow(b, row) && b->refused == 0)
			KeepRow(b, row);
	}
}

/* a staged row's line and where it is */
typedef struct StagedLine
{
	int64		line;
	ItemPointerData tid;
} StagedLine;

static int
CompareStagedLines(const void *a, const void *b)
{
	const StagedLine *x = (const StagedLine *) a;
	const StagedLine *y = (const StagedLine *) b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

/*
 * The order of pass 1: the staged rows by line, i.e. in the order they came.
 * Their physical order is that order only as long as every row went to the
 * end of the table: a heap insert puts a row that does not fit on the last
 * page into an earlier page with room for it, so a batch of rows of varied
 * sizes is scattered.  NULL when the physical order is the line order (a
 * scan then reads the rows in it); else every row's line and place, sorted.
 * A line given twice is refused (OX010).
 */
static StagedLine *
StagedOrder(Relation rel, AttrNumber line_att, int64 *n)
{
	TableScanDesc scan = table_beginscan_strat(rel, GetActiveSnapshot(), 0, NULL, true, false);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int64		cap = 1024;
	StagedLine *order = palloc(sizeof(StagedLine) * cap);
	bool		sorted = true;
	int64		i;

	*n = 0;
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, line_att, &isnull);

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
					 errmsg("line must not be null"),
					 errhint("Leave the column \"line\" to its default.")));
		if (*n == cap)
		{
			cap *= 2;
			order = repalloc_huge(order, sizeof(StagedLine) * cap);
		}
		order[*n].line = DatumGetInt64(d);
		order[*n].tid = slot->tts_tid;
		if (*n > 0 && order[*n].line <= order[*n - 1].line)
			sorted = false;
		(*n)++;
		CHECK_FOR_INTERRUPTS();
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	if (sorted)
	{
		pfree(order);
		return NULL;
	}
	qsort(order, *n, sizeof(StagedLine), CompareStagedLines);
	for (i = 1; i < *n; i++)
		if (order[i].line == order[i - 1].line)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
					 errmsg("line " INT64_FORMAT " of ocx.import_staging is given twice", order[i].line),
					 errdetail("A batch is taken in the order of its lines, which must be distinct."),
					 errhint("Leave the column \"line\" to its default.")));
	return order;
}

/* Pass 1: every staged row, in the order it came (by line). */
static void
ReadStaging(Batch *b, Oid staging_id, MemoryContext chunkcxt)
{
	Relation	rel = table_open(staging_id, AccessShareLock);
	TableScanDesc scan = NULL;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	MemoryContext old;
	StagedLine *order;
	int64		norder;
	int64		next = 0;
	bool		more = true;
	int			i;

	b->staging_desc = RelationGetDescr(rel);
	MapByName(rel, staging_cols, IN_COUNT, b->staging_map);
	for (i = 0; i < IN_COUNT; i++)
		if (b->staging_map[i] == 0)
			elog(ERROR, "ocx: ocx.import_staging has no column \"%s\"", staging_cols[i]);
	b->all = MemoryContextAlloc(b->cxt, sizeof(Datum) * b->staging_desc->natts);
	b->allnull = MemoryContextAlloc(b->cxt, sizeof(bool) * b->staging_desc->natts);
	b->chunk = MemoryContextAlloc(b->cxt, sizeof(HeapTuple) * IMPORT_CHUNK);
	b->parsed = MemoryContextAlloc(b->cxt, sizeof(ImportRow) * IMPORT_CHUNK);
	order = StagedOrder(rel, b->staging_map[IN_LINE], &norder);
	/* in physical order (no synchronized scan) when that is the line order */
	if (order == NULL)
		scan = table_beginscan_strat(rel, GetActiveSnapshot(), 0, NULL, true, false);
	while (more)
	{
		MemoryContextReset(chunkcxt);
		old = MemoryContextSwitchTo(chunkcxt);
		b->nchunk = 0;
		while (b->nchunk < IMPORT_CHUNK)
		{
			if (order == NULL)
				more = table_scan_getnextslot(scan, ForwardScanDirection, slot);
			else if ((more = next < norder))
			{
				if (!table_tuple_fetch_row_version(rel, &order[next++].tid, GetActiveSnapshot(), slot))
					elog(ERROR, "ocx: a row of ocx.import_staging went away during the import");
			}
			if (!more)
				break;
			b->chunk[b->nchunk++] = ExecCopySlotHeapTuple(slot);
		}
		if (b->nchunk > 0)
			TakeChunk(b);
		MemoryContextSwitchTo(old);
		CHECK_FOR_INTERRUPTS();
	}
	if (scan)
		table_endscan(scan);
	if (order)
		pfree(order);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
}

/* ---- the streams ---- */

static int
CompareStreams(const void *a, const void *b)
{
	return strcmp((*(BatchStream *const *) a)->sid, (*(BatchStream *const *) b)->sid);
}

/* The batch's streams sorted by stream id. */
static BatchStream **
SortedStreams(Batch *b, int *n)
{
	HASH_SEQ_STATUS seq;
	BatchStream *s;
	BatchStream **all = MemoryContextAlloc(b->cxt, sizeof(BatchStream *) *
										   Max(hash_get_num_entries(b->streams), 1));
	int			i = 0;

	hash_seq_init(&seq, b->streams);
	while ((s = (BatchStream *) hash_seq_search(&seq)) != NULL)
		all[i++] = s;
	qsort(all, i, sizeof(BatchStream *), CompareStreams);
	*n = i;
	return all;
}

/*
 * The locks an append takes: the tags' (ocx.append_if waits for the
 * import), then the stream-order lock of each stream in stream id order
 * (an append of a new stream creates its row under that lock only,
 * directappend.c), or, for more streams than the lock table should hold,
 * a SHARE ROW EXCLUSIVE lock on ocx.streams that every appender's row
 * lock waits for; then the rows of the streams that exist, as FOR UPDATE.
 */
static void
LockBatch(Batch *b, BatchStream **streams, int n, Oid streams_id)
{
	HASH_SEQ_STATUS seq;
	BatchString *t;
	OcxNewEvent ev;
	Datum	   *ids;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		arg;
	int			i;

	/* the data keys first, as an append takes its subjects' before its tags and streams */
	if (b->personal)
		OcxPrivacyLockForImport();
	memset(&ev, 0, sizeof(ev));
	ev.ntags = (int) hash_get_num_entries(b->tags);
	if (ev.ntags > 0)
	{
		ev.tags = palloc(sizeof(char *) * ev.ntags);
		i = 0;
		hash_seq_init(&seq, b->tags);
		while ((t = (BatchString *) hash_seq_search(&seq)) != NULL)
			ev.tags[i++] = t->s;
		ev.ntags = OcxSortDistinct(ev.tags, ev.ntags);
		OcxLockEventTags(&ev, 1);
	}
	if (n > IMPORT_STREAM_LOCKS)
		LockRelationOid(streams_id, ShareRowExclusiveLock);
	else
		for (i = 0; i < n; i++)
			OcxLockStreamOrder(streams[i]->sid);

	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
		ids[i] = CStringGetTextDatum(streams[i]->sid);
	arg = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_with_args("SELECT FROM ocx.streams s WHERE s.stream_id = ANY ($1)"
							  " ORDER BY s.stream_id FOR UPDATE", 1, argtypes, &arg, NULL,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "ocx: could not lock the streams of the import");
}

/* An index of ocx by name, opened. */
static Relation
OpenIndex(Oid nsp, const char *name)
{
	Oid			id = get_relname_relid(name, nsp);

	if (!OidIsValid(id))
		elog(ERROR, "ocx: the index ocx.%s is missing", name);
	return index_open(id, AccessShareLock);
}

/* The first row of heap that index finds for keys under snap, into slot. */
static bool
Probe(Relation heap, Relation index, Snapshot snap, ScanKey keys, int nkeys,
	  TupleTableSlot *slot)
{
	IndexScanDesc scan = index_beginscan(heap, index, snap, nkeys, 0);
	bool		found;

	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	return found;
}

/*
 * Each stream's row, read below row-level security (its tenant is
 * compared here): the stream's version, tombstone and head.  Refuses a
 * stream of another tenant, a deleted stream, a batch that does not
 * continue its stream.
 */
static void
ReadStreams(Batch *b, BatchStream **streams, int n, Relation rel, Snapshot snap)
{
	Relation	pkey = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	AttrNumber	map[5];
	static const char *const cols[5] = {"version", "tenant_id", "deleted", "head", "stream_id"};
	int			i;

	MapByName(rel, cols, 5, map);
	for (i = 0; i < n; i++)
	{
		BatchStream *s = streams[i];
		ScanKeyData key;
		bool		isnull;
		Datum		d;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(s->sid));
		key.sk_collation = pkey->rd_indcollation[0];
		s->exists = Probe(rel, pkey, snap, &key, 1, slot);
		s->current = 0;
		s->have_head = false;
		if (s->exists)
		{
			d = slot_getattr(slot, map[1], &isnull);
			if (!OcxTenantIsSessions(d, isnull))
			{
				RefuseF(b, s->first_line, ERRCODE_OCX_STREAM_OF_ANOTHER_TENANT,
						"Stream ids are global; this one is taken by a tenant other than the session's ocx.tenant.",
						NULL, "stream \"%s\" belongs to another tenant", s->sid);
				continue;
			}
			if (DatumGetBool(slot_getattr(slot, map[2], &isnull)))
			{
				RefuseF(b, s->first_line, ERRCODE_OCX_STREAM_DELETED,
						"Its tombstone refuses every new event.", NULL,
						"stream \"%s\" was deleted", s->sid);
				continue;
			}
			s->current = DatumGetInt64(slot_getattr(slot, map[0], &isnull));
			d = slot_getattr(slot, map[3], &isnull);
			if (!isnull)
			{
				bytea	   *h = DatumGetByteaPP(d);

				if (VARSIZE_ANY_EXHDR(h) != sizeof(s->head))
					ereport(ERROR,
							(errcode(ERRCODE_OCX_CHAIN_BROKEN),
							 errmsg("the head of stream \"%s\" is not a SHA-256 hash", s->sid)));
				memcpy(s->head, VARDATA_ANY(h), sizeof(s->head));
				s->have_head = true;
			}
		}
		s->written = s->current;
		if (s->min_version > s->current + 1)
		{
			char	   *detail = psprintf("The stream is at version " INT64_FORMAT ": the batch continues it at " INT64_FORMAT ".",
										  s->current, s->current + 1);

			RefuseF(b, s->first_line, ERRCODE_OCX_WRONG_EXPECTED_VERSION, detail, NULL,
					"version " INT64_FORMAT " of stream \"%s\" does not follow version " INT64_FORMAT,
					s->min_version, s->sid, s->current);
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
}

/* ---- pass 2: the write ---- */

/* What pass 2 holds open. */
typedef struct Writer
{
	Batch	   *b;
	EState	   *estate;
	ResultRelInfo *rri;
	Relation	rel;
	Relation	by_version;		/* events_stream_version_key */
	Relation	by_id;			/* events_source_event_id_key */
	Oid			seqid;
	Snapshot	snap;
	AttrNumber	map[EV_FROM_ROW + PR_COUNT - 1];
	Datum		txid;
	const char *tenant;
	bool		chain;
	BulkInsertState bistate;
	TupleTableSlot *rowslots[IMPORT_CHUNK];
	TupleTableSlot *slots[IMPORT_CHUNK];
	int64		lines[IMPORT_CHUNK];
	int			n;
	TupleTableSlot *stored;		/* a row of ocx.events, for the probes */
	int64		written;
	int64		skipped;
	int64		bytes;
	int64		last_position;
	const char *too_old;		/* a stream whose last append is younger */
	BatchStream *last_stream;	/* the last row's */
	MemoryContext chunkcxt;
	TransitionCaptureState *transition; /* a statement trigger's NEW TABLE */
	ImportRun  *runs;			/* in b->cxt */
	int64		nruns;
	int64		maxruns;
} Writer;

/* The hash of the event in slot chained from its stream's head (ocx._event_hash). */
static Datum
ChainHash(Writer *w, BatchStream *s, TupleTableSlot *slot, int64 line)
{
	LOCAL_FCINFO(hf, 14);
	static const int args[14] = {
		-1, EV_FROM_ROW + PR_STREAM_ID - 1, EV_FROM_ROW + PR_VERSION - 1,
		EV_FROM_ROW + PR_EVENT_ID - 1, EV_FROM_ROW + PR_SOURCE - 1, EV_FROM_ROW + PR_TYPE - 1,
		EV_FROM_ROW + PR_SCHEMA_VERSION - 1, EV_FROM_ROW + PR_TIME - 1,
		EV_FROM_ROW + PR_DATA - 1, EV_FROM_ROW + PR_METADATA - 1,
		EV_FROM_ROW + PR_CORRELATION_ID - 1, EV_FROM_ROW + PR_CAUSATION_ID - 1,
		EV_TENANT_ID, EV_FROM_ROW + PR_TAGS - 1
	};
	Datum		result;
	bytea	   *h;
	int			i;

	InitFunctionCallInfoData(*hf, NULL, 14, InvalidOid, NULL, NULL);
	if (s->have_head)
	{
		bytea	   *p = palloc(VARHDRSZ + sizeof(s->head));

		SET_VARSIZE(p, VARHDRSZ + sizeof(s->head));
		memcpy(VARDATA(p), s->head, sizeof(s->head));
		hf->args[0].value = PointerGetDatum(p);
		hf->args[0].isnull = false;
	}
	else
		hf->args[0].isnull = true;
	for (i = 1; i < 14; i++)
	{
		AttrNumber	att = w->map[args[i]];

		hf->args[i].value = slot->tts_values[att - 1];
		hf->args[i].isnull = slot->tts_isnull[att - 1];
	}
	result = ocx_event_hash(hf);
	if (hf->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_EVENT),
				 errmsg("line " INT64_FORMAT ": the event lacks a stored field", line)));
	h = DatumGetByteaPP(result);
	memcpy(s->head, VARDATA_ANY(h), sizeof(s->head));
	s->have_head = true;
	return result;
}

/*
 * Another row of the log with the event id of the row at tid: a committed
 * one, or one whose writer is still in progress (waited for, as a unique
 * index waits).  Into w->stored.
 */
static bool
StoredElsewhere(Writer *w, Datum source, Datum id, ItemPointer tid)
{
	SnapshotData dirty;
	ScanKeyData keys[2];

	InitDirtySnapshot(dirty);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, source);
	keys[0].sk_collation = w->by_id->rd_indcollation[0];
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_UUID_EQ, id);
	for (;;)
	{
		IndexScanDesc scan = index_beginscan(w->rel, w->by_id, &dirty, 2, 0);
		TransactionId xwait = InvalidTransactionId;
		bool		found = false;

		index_rescan(scan, keys, 2, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, w->stored))
		{
			if (ItemPointerEquals(&w->stored->tts_tid, tid))
				continue;
			xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
			found = true;
			break;
		}
		index_endscan(scan);
		if (!found)
			return false;
		if (!TransactionIdIsValid(xwait))
			return true;
		XactLockTableWait(xwait, w->rel, &w->stored->tts_tid, XLTW_InsertIndex);
	}
}

/* Write the chunk of event rows in w->slots, with their index entries. */
static void
FlushChunk(Writer *w)
{
	Batch	   *b = w->b;
	CommandId	cid = GetCurrentCommandId(true);
	int			i;

	if (w->n == 0)
		return;
	table_multi_insert(w->rel, w->slots, w->n, cid, 0, w->bistate);
	for (i = 0; i < w->n; i++)
	{
		TupleTableSlot *slot = w->slots[i];
		List	   *conflicts = NIL;

		if (w->rri->ri_NumIndices > 0)
			conflicts = ExecInsertIndexTuples(w->rri, slot, w->estate, false, true, NULL, NIL);
		if (conflicts != NIL)
		{
			AttrNumber	src = w->map[EV_FROM_ROW + PR_SOURCE - 1];
			AttrNumber	id = w->map[EV_FROM_ROW + PR_EVENT_ID - 1];

			if (list_length(conflicts) != 1 ||
				linitial_oid(conflicts) != RelationGetRelid(w->by_id))
				elog(ERROR, "ocx: line " INT64_FORMAT " of the import conflicts with a stored event",
					 w->lines[i]);
			/* an event id stored already (one given twice in the batch is refused in pass 1) */
			if (StoredElsewhere(w, slot->tts_values[src - 1], slot->tts_values[id - 1],
								&slot->tts_tid))
			{
				bool		isnull;

				RefuseF(b, w->lines[i], ERRCODE_OCX_DUPLICATE_EVENT,
						"Event ids are unique per source, across streams and tenants.", NULL,
						"event id %s is already stored in stream \"%s\" at version " INT64_FORMAT,
						DatumGetCString(DirectFunctionCall1(uuid_out, slot->tts_values[id - 1])),
						TextDatumGetCString(slot_getattr(w->stored, w->map[EV_FROM_ROW + PR_STREAM_ID - 1], &isnull)),
						DatumGetInt64(slot_getattr(w->stored, w->map[EV_FROM_ROW + PR_VERSION - 1], &isnull)));
			}
			list_free(conflicts);
		}
		if ((w->rri->ri_TrigDesc && w->rri->ri_TrigDesc->trig_insert_after_row) || w->transition)
			ExecARInsertTriggers(w->estate, w->rri, slot, NIL, w->transition);
	}
	w->n = 0;
	ResetPerTupleExprContext(w->estate);
	MemoryContextReset(w->chunkcxt);
}

/*
 * Is a stored event's data the row's?  Personal fields are compared in
 * clear (the row's are, the stored ones encrypted; an erased field is null
 * and differs), as an append's retry compares them.
 */
static bool
StoredDataIs(Datum type, Datum stored, TupleTableSlot *row)
{
	Jsonb	   *data = DatumGetJsonbP(stored);

	if (OcxPrivacyInUse())
	{
		text	   *t = DatumGetTextPP(type);

		data = OcxPrivacyReveal(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), data,
								DatumGetUUIDP(row->tts_values[PR_EVENT_ID]), true, NULL);
	}
	return compareJsonbContainers(&data->root, &DatumGetJsonbP(row->tts_values[PR_DATA])->root) == 0;
}

/*
 * A row at a stored version: an idempotent repeat when it is the stored
 * event (id, source, type, data), skipped; else refused.
 */
static void
CheckStored(Writer *w, BatchStream *s, TupleTableSlot *row)
{
	ScanKeyData keys[2];
	int64		line = DatumGetInt64(row->tts_values[PR_LINE]);
	int64		version = DatumGetInt64(row->tts_values[PR_VERSION]);
	bool		same = false;
	const char *detail;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, row->tts_values[PR_STREAM_ID]);
	keys[0].sk_collation = w->by_version->rd_indcollation[0];
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, row->tts_values[PR_VERSION]);
	if (!Probe(w->rel, w->by_version, w->snap, keys, 2, w->stored))
		detail = "The stored version was removed.";
	else
	{
		bool		isnull;
		Datum		d;

		slot_getallattrs(w->stored);
#define STORED(col) (w->stored->tts_values[w->map[EV_FROM_ROW + (col) - 1] - 1])
		same = DatumGetBool(DirectFunctionCall2(uuid_eq, STORED(PR_EVENT_ID), row->tts_values[PR_EVENT_ID])) &&
			DatumGetBool(DirectFunctionCall2Coll(texteq, DEFAULT_COLLATION_OID, STORED(PR_SOURCE), row->tts_values[PR_SOURCE])) &&
			DatumGetBool(DirectFunctionCall2Coll(texteq, DEFAULT_COLLATION_OID, STORED(PR_TYPE), row->tts_values[PR_TYPE])) &&
			StoredDataIs(STORED(PR_TYPE), STORED(PR_DATA), row);
		d = slot_getattr(w->stored, w->map[EV_FROM_ROW + PR_EVENT_ID - 1], &isnull);
		detail = psprintf("The stored event is %s; a repeated import must repeat it exactly (id, source, type, data).",
						  DatumGetCString(DirectFunctionCall1(uuid_out, d)));
#undef STORED
	}
	if (same)
		w->skipped++;
	else
		RefuseF(w->b, line, ERRCODE_OCX_WRONG_EXPECTED_VERSION, detail, NULL,
				"version " INT64_FORMAT " of stream \"%s\" is stored already, as another event",
				version, s->sid);
}

/*
 * Log order within a stream (as append.c's CheckStreamOrder): the import's
 * transaction must not be older than the last append to a stream it
 * continues.  The first stream that fails is kept in w->too_old, raised
 * after pass 2 unless the batch has refusals (a retry would not help them).
 */
static void
CheckStreamOrder(Writer *w, BatchStream *s)
{
	ScanKeyData keys[2];
	bool		isnull;
	Datum		d;

	if (s->current < 1 || w->too_old != NULL)
		return;
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(s->sid));
	keys[0].sk_collation = w->by_version->rd_indcollation[0];
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(s->current));
	if (!Probe(w->rel, w->by_version, w->snap, keys, 2, w->stored))
		return;
	d = slot_getattr(w->stored, w->map[EV_TXID], &isnull);
	if (U64FromFullTransactionId(DatumGetFullTransactionId(d)) >
		U64FromFullTransactionId(DatumGetFullTransactionId(w->txid)))
		w->too_old = s->sid;
}

static void
RaiseTooOld(const char *sid)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("this transaction is older than the last append to stream \"%s\"", sid),
			 errdetail("Another transaction appended to the stream and committed after this import took its transaction id; the imported events would sort before it in log order."),
			 errhint("Roll back and retry the import.")));
}

/*
 * The data a row is stored with: its personal fields encrypted when its
 * type has a definition (the row's data as it is otherwise).  Here, after
 * the batch's stream locks, as an append encrypts after its stream's; pass
 * 1 checked what the encryption refuses (OcxPrivacyCheck), with the line.
 */
static Datum
ProtectRow(TupleTableSlot *row, int64 line)
{
	OcxNewEvent ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = TextDatumGetCString(row->tts_values[PR_TYPE]);
	ev.data = DatumGetJsonbP(row->tts_values[PR_DATA]);
	ev.id = *DatumGetUUIDP(row->tts_values[PR_EVENT_ID]);
	ev.has_id = true;
	OcxPrivacyProtectImported(&ev, (int) Min(line, PG_INT32_MAX));
	return JsonbPGetDatum(ev.data);
}

/* A written row: the run of its stream's rows goes on, or a new one starts. */
static void
AddToRun(Writer *w, BatchStream *s, int64 version, int64 line)
{
	ImportRun  *run = w->nruns > 0 ? &w->runs[w->nruns - 1] : NULL;

	if (run != NULL && run->sid == s->sid && run->first_version + run->nevents == version &&
		run->nevents < PG_INT32_MAX)
	{
		run->nevents++;
		return;
	}
	if (w->nruns == w->maxruns)
	{
		w->maxruns = Max(1024, w->maxruns * 2);
		if (w->runs == NULL)
			w->runs = MemoryContextAlloc(w->b->cxt, sizeof(ImportRun) * w->maxruns);
		else
			w->runs = repalloc_huge(w->runs, sizeof(ImportRun) * w->maxruns);
	}
	run = &w->runs[w->nruns++];
	run->sid = s->sid;
	run->first_version = version;
	run->nevents = 1;
	run->first_line = line;
}

/* The lines of the run whose after-append hook raised an error. */
static void
RunErrorContext(void *arg)
{
	ImportRun  *run = (ImportRun *) arg;

	errcontext("events of import lines from " INT64_FORMAT ": stream \"%s\", versions " INT64_FORMAT " to " INT64_FORMAT,
			   run->first_line, run->sid, run->first_version, run->first_version + run->nevents - 1);
}

/*
 * What follows an append, for each run of the import's rows in line order
 * (ocx_after_append_hook: the running inline projections apply them in the
 * import's transaction, as their author, and an error fails the import).
 * The hook reads the events back: they and the stream rows are written and
 * visible to the next command.
 */
static void
AfterImport(Writer *w)
{
	ErrorContextCallback cb;
	int64		i;

	if (ocx_after_append_hook == NULL || w->nruns == 0)
		return;
	CommandCounterIncrement();
	cb.callback = RunErrorContext;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	for (i = 0; i < w->nruns; i++)
	{
		cb.arg = &w->runs[i];
		ocx_after_append_hook(w->runs[i].sid, w->runs[i].first_version, w->runs[i].nevents);
		CHECK_FOR_INTERRUPTS();
	}
	error_context_stack = cb.previous;
}

/* One row of pass 2: skipped (stored already), or added to the chunk. */
static void
WriteRow(Writer *w, TupleTableSlot *row)
{
	Batch	   *b = w->b;
	char	   *sid = TextDatumGetCString(row->tts_values[PR_STREAM_ID]);
	int64		version = DatumGetInt64(row->tts_values[PR_VERSION]);
	int64		line = DatumGetInt64(row->tts_values[PR_LINE]);
	BatchStream *s = w->last_stream;
	TupleTableSlot *slot;
	TupleDesc	desc = RelationGetDescr(w->rel);
	int			i;

	if (s == NULL || strcmp(s->sid, sid) != 0)
		s = w->last_stream = (BatchStream *) hash_search(b->streams, &sid, HASH_FIND, NULL);
	Assert(s != NULL);
	if (version <= s->current)
	{
		CheckStored(w, s, row);
		return;
	}
	if (s->written == s->current)
		CheckStreamOrder(w, s);
	Assert(version == s->written + 1);
	s->written = version;
	AddToRun(w, s, version, line);

	slot = w->slots[w->n];
	ExecClearTuple(slot);
	memset(slot->tts_values, 0, sizeof(Datum) * desc->natts);
	memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
#define SETV(col, val, null) \
	do { if (w->map[col]) { slot->tts_values[w->map[col] - 1] = (val); slot->tts_isnull[w->map[col] - 1] = (null); } } while (0)
	for (i = PR_STREAM_ID; i < PR_COUNT; i++)
		SETV(EV_FROM_ROW + i - 1, row->tts_values[i], row->tts_isnull[i]);
	SETV(EV_GLOBAL_POSITION, Int64GetDatum(nextval_internal(w->seqid, false)), false);
	SETV(EV_TXID, w->txid, false);
	if (w->tenant != NULL)
		SETV(EV_TENANT_ID, CStringGetTextDatum(w->tenant), false);
	/* (pass 1 found the batch's types with personal data: none, no look-up per row) */
	if (b->personal)
		SETV(EV_FROM_ROW + PR_DATA - 1, ProtectRow(row, line), false);
	if (w->chain)
		SETV(EV_HASH, ChainHash(w, s, slot, line), false);
#undef SETV
	w->last_position = DatumGetInt64(slot->tts_values[w->map[EV_GLOBAL_POSITION] - 1]);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attnotnull && slot->tts_isnull[i] && !att->attisdropped)
			elog(ERROR, "ocx: the import left column \"%s\" of ocx.events null", NameStr(att->attname));
	}
	ExecStoreVirtualTuple(slot);
	if (w->rri->ri_TrigDesc && w->rri->ri_TrigDesc->trig_insert_before_row)
	{
		/*
		 * In the query's context, as the executor calls them: the trigger
		 * functions' lookups are made on the first call and kept (a
		 * SECURITY DEFINER function's settings, a PL's fn_extra), and this
		 * row's context is reset with every chunk.
		 */
		MemoryContext old = MemoryContextSwitchTo(w->estate->es_query_cxt);
		bool		keep = ExecBRInsertTriggers(w->estate, w->rri, slot);

		MemoryContextSwitchTo(old);
		if (!keep)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_IMPORT_UNSUPPORTED),
					 errmsg("line " INT64_FORMAT ": a trigger on ocx.events skipped the event", line)));
	}
	w->bytes += VARSIZE_ANY(DatumGetPointer(row->tts_values[PR_DATA])) +
		VARSIZE_ANY(DatumGetPointer(row->tts_values[PR_METADATA]));
	w->lines[w->n] = line;
	w->written++;
	if (++w->n == IMPORT_CHUNK)
		FlushChunk(w);
}

/* Pass 2: the kept rows in line order, into ocx.events. */
static void
WriteEvents(Batch *b, Writer *w, Oid nsp, Oid events_id, Snapshot snap)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	TupleDesc	desc;
	TupleTableSlot *row;
	int			i;

	w->b = b;
	w->snap = snap;
	w->estate = CreateExecutorState();
	rte->rtekind = RTE_RELATION;
	rte->relid = events_id;
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(w->estate, list_make1(rte));
	w->rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(w->estate, w->rri, 1);
	w->rel = w->rri->ri_RelationDesc;
	if (w->rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_IMPORT_UNSUPPORTED),
				 errmsg("the import writes only to a plain ocx.events table")));
	ExecOpenIndices(w->rri, false);
	w->by_version = OpenIndex(nsp, "events_stream_version_key");
	w->by_id = OpenIndex(nsp, "events_source_event_id_key");
	w->seqid = get_relname_relid("events_global_position_seq", nsp);
	if (!OidIsValid(w->seqid))
		elog(ERROR, "ocx: the sequence ocx.events_global_position_seq is missing");
	MapByName(w->rel, event_cols, lengthof(event_cols), w->map);
	for (i = 0; i < (int) lengthof(event_cols); i++)
		if (w->map[i] == 0 && i != EV_HASH)
			elog(ERROR, "ocx: ocx.events has no column \"%s\"", event_cols[i]);
	w->chain = OcxChainOn();
	if (w->chain && w->map[EV_HASH] == 0)
		elog(ERROR, "ocx: the hash chain is on but ocx.events has no hash column");
	w->txid = FullTransactionIdGetDatum(FullTransactionIdFromU64(OcxLogTxid()));
	w->tenant = OcxSessionTenant();
	w->bistate = GetBulkInsertState();
	w->chunkcxt = AllocSetContextCreate(CurrentMemoryContext, "ocx import chunk",
										ALLOCSET_DEFAULT_SIZES);
	desc = RelationGetDescr(w->rel);
	for (i = 0; i < IMPORT_CHUNK; i++)
	{
		w->slots[i] = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
		w->rowslots[i] = MakeSingleTupleTableSlot(b->rowdesc, &TTSOpsMinimalTuple);
	}
	w->stored = table_slot_create(w->rel, NULL);

	AfterTriggerBeginQuery();
	/* the rows for a statement trigger's transition table, as COPY captures them */
	w->transition = MakeTransitionCaptureState(w->rel->trigdesc, RelationGetRelid(w->rel), CMD_INSERT);
	ExecBSInsertTriggers(w->estate, w->rri);
	for (;;)
	{
		MemoryContext old;

		row = w->rowslots[w->n];
		if (!tuplestore_gettupleslot(b->rows, true, true, row))
			break;
		slot_getallattrs(row);
		old = MemoryContextSwitchTo(w->chunkcxt);
		WriteRow(w, row);
		MemoryContextSwitchTo(old);
		CHECK_FOR_INTERRUPTS();
	}
	FlushChunk(w);
	ExecASInsertTriggers(w->estate, w->rri, w->transition);
	AfterTriggerEndQuery(w->estate);

	for (i = 0; i < IMPORT_CHUNK; i++)
	{
		ExecDropSingleTupleTableSlot(w->slots[i]);
		ExecDropSingleTupleTableSlot(w->rowslots[i]);
	}
	ExecDropSingleTupleTableSlot(w->stored);
	FreeBulkInsertState(w->bistate);
	table_finish_bulk_insert(w->rel, 0);
	index_close(w->by_version, AccessShareLock);
	index_close(w->by_id, AccessShareLock);
	/* the slots the trigger calls made (their tuple descriptors' references) */
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	ExecCloseResultRelations(w->estate);
	ExecCloseRangeTableRelations(w->estate);
	FreeExecutorState(w->estate);
	MemoryContextDelete(w->chunkcxt);
}

/*
 * The stream rows: the new streams inserted, the others moved to their new
 * version and head (SQL, under row-level security: the rows carry the
 * session's tenant).  Returns the number of streams written.
 */
static int64
WriteStreams(BatchStream **streams, int n, bool chain)
{
	static const Oid argtypes[4] = {TEXTARRAYOID, INT8ARRAYOID, BYTEAARRAYOID, TEXTOID};
	const char *tenant = OcxSessionTenant();
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *versions = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *heads = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *headnulls = palloc(sizeof(bool) * Max(n, 1));
	int64		done = 0;
	int			pass;

	for (pass = 0; pass < 2; pass++)
	{
		int			m = 0,
					i;
		int			dims[1],
					lbs[1] = {1};
		Datum		args[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};

		for (i = 0; i < n; i++)
		{
			BatchStream *s = streams[i];
			bytea	   *h;

			if (s->written == s->current || s->exists != (pass == 1))
				continue;
			ids[m] = CStringGetTextDatum(s->sid);
			versions[m] = Int64GetDatum(s->written);
			headnulls[m] = !(chain && s->have_head);
			if (!headnulls[m])
			{
				h = palloc(VARHDRSZ + sizeof(s->head));
				SET_VARSIZE(h, VARHDRSZ + sizeof(s->head));
				memcpy(VARDATA(h), s->head, sizeof(s->head));
				heads[m] = PointerGetDatum(h);
			}
			else
				heads[m] = (Datum) 0;
			m++;
		}
		if (m == 0)
			continue;
		dims[0] = m;
		args[0] = PointerGetDatum(construct_array(ids, m, TEXTOID, -1, false, TYPALIGN_INT));
		args[1] = PointerGetDatum(construct_array(versions, m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[2] = PointerGetDatum(construct_md_array(heads, headnulls, 1, dims, lbs, BYTEAOID, -1, false, TYPALIGN_INT));
		args[3] = tenant ? CStringGetTextDatum(tenant) : (Datum) 0;
		nulls[3] = tenant ? ' ' : 'n';
		if (pass == 0)
		{
			if (SPI_execute_with_args("INSERT INTO ocx.streams (stream_id, category, version, tenant_id, head)"
									  " SELECT u.id, ocx.category(u.id), u.v, $4, u.h"
									  " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) u(id, v, h)",
									  4, (Oid *) argtypes, args, nulls, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "ocx: could not create the streams of the import");
		}
		else if (SPI_execute_with_args("UPDATE ocx.streams s SET version = u.v, head = COALESCE(u.h, s.head),"
									   " updated_at = pg_catalog.now()"
									   " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) u(id, v, h)"
									   " WHERE s.stream_id = u.id",
									   3, (Oid *) argtypes, args, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "ocx: could not update the streams of the import");
		if (SPI_processed != (uint64) m)
			elog(ERROR, "ocx: the import wrote " UINT64_FORMAT " of %d stream rows", SPI_processed, m);
		done += m;
	}
	return done;
}

/*
 * The import writes only to a plain ocx.events: not to a distributed log
 * (the rows go through the heap; whether the log is one is citus.c's
 * question, OcxLogDistributed), nor to a partitioned one (no tuple routing,
 * and its indexes are the partitions').
 */
static void
RefuseUnwritableLog(void)
{
	if (OcxLogDistributed())
		ereport(ERROR,
				(errcode(ERRCODE_OCX_IMPORT_UNSUPPORTED),
				 errmsg("the import does not write to a distributed log"),
				 errdetail("ocx.events is a Citus distributed table."),
				 errhint("Import into a single node before ocx.distribute(), or append the events.")));
	/* before pass 1: a batch is not parsed to be refused at its end */
	if (OcxLogPartitioned())
		ereport(ERROR,
				(errcode(ERRCODE_OCX_IMPORT_UNSUPPORTED),
				 errmsg("the import writes only to a plain ocx.events table"),
				 errdetail("ocx.events is partitioned (ocx.partition_log)."),
				 errhint("Import before ocx.partition_log(), which keeps the imported events as its first partition, or append the events in batches.")));
}

/*
 * ocx._import_write(OUT events bigint, OUT skipped bigint, OUT streams bigint):
 * the batch in ocx.import_staging written to the log (ocx.import_commit()).
 *
 * Pass 1 reads the staging table in the order its rows came, parses each
 * row as an append checks an event (ParseRow) and checks it against the
 * batch (consecutive versions per stream, an event id given twice, a type
 * with personal data, a running inline projection); rows are parsed a
 * chunk at a time in a subtransaction, so that a bad row is refused with
 * its line and the parse goes on.  The rows go to a tuplestore (in
 * memory up to work_mem) while the batch has no refusal.  Then the locks
 * (LockBatch), each stream's row (ReadStreams: tenant, tombstone, version),
 * and pass 2: the rows in line order, a stored version compared with the
 * stored event (an idempotent repeat is skipped), the others formed as
 * rows of ocx.events with their position, txid, tenant and hash, written
 * IMPORT_CHUNK at a time with table_multi_insert and their index entries,
 * as COPY writes; a stored event id is refused there.  Every refusal is
 * kept; at the end of a pass with any, one error lists them
 * (RaiseRefusals) and the transaction rolls back: nothing is written.
 */
Datum
ocx_import_write(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext chunkcxt;
	Batch	   *b;
	Writer	   *w;
	TupleDesc	desc;
	Oid			nsp,
				staging_id,
				events_id,
				streams_id;
	BatchStream **streams;
	int			nstreams;
	Snapshot	snap;
	HASHCTL		ctl;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int64		nstreams_written;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ocx: _import_write must return a record");
	nsp = get_namespace_oid("ocx", false);
	staging_id = get_relname_relid("import_staging", nsp);
	events_id = get_relname_relid("events", nsp);
	streams_id = get_relname_relid("streams", nsp);
	if (!OidIsValid(staging_id) || !OidIsValid(events_id) || !OidIsValid(streams_id))
		elog(ERROR, "ocx: a table of the import is missing");

	b = MemoryContextAllocZero(cxt, sizeof(Batch));
	b->cxt = AllocSetContextCreate(cxt, "ocx import batch", ALLOCSET_DEFAULT_SIZES);
	chunkcxt = AllocSetContextCreate(cxt, "ocx import chunk", ALLOCSET_DEFAULT_SIZES);
	b->streams = StringTable(b, "ocx import streams", sizeof(BatchStream));
	b->sources = StringTable(b, "ocx import sources", sizeof(BatchString));
	b->tags = StringTable(b, "ocx import tags", sizeof(BatchString));
	ctl.keysize = sizeof(EventKey);
	ctl.entrysize = sizeof(EventSeen);
	ctl.hcxt = b->cxt;
	b->ids = hash_create("ocx import event ids", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	MemoryContextSwitchTo(b->cxt);
	b->rowdesc = RowDesc();
	b->rows = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(cxt);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	RefuseUnwritableLog();
	MemoryContextSwitchTo(cxt);

	/* pass 1 */
	ReadStaging(b, staging_id, chunkcxt);
	if (b->nrows == 0 && b->refused == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_EMPTY_BATCH),
				 errmsg("the import batch is empty"),
				 errhint("COPY the events into ocx.import_staging after ocx.import_begin().")));

	/* the streams: locked (unless the batch is refused already), read, checked */
	streams = SortedStreams(b, &nstreams);
	if (b->refused == 0)
		LockBatch(b, streams, nstreams, streams_id);
	MemoryContextSwitchTo(cxt);
	snap = RegisterSnapshot(IsolationUsesXactSnapshot() ? GetTransactionSnapshot() : GetLatestSnapshot());
	{
		Relation	rel = table_open(streams_id, RowExclusiveLock);

		ReadStreams(b, streams, nstreams, rel, snap);
		table_close(rel, NoLock);
	}
	if (b->refused > 0)
		RaiseRefusals(b);

	/* pass 2 */
	LockRelationOid(events_id, RowExclusiveLock);
	w = palloc0(sizeof(Writer));
	WriteEvents(b, w, nsp, events_id, snap);
	UnregisterSnapshot(snap);
	if (b->refused > 0)
		RaiseRefusals(b);
	if (w->too_old != NULL)
		RaiseTooOld(w->too_old);
	nstreams_written = WriteStreams(streams, nstreams, w->chain);
	SPI_finish();
	MemoryContextSwitchTo(cxt);
	AfterImport(w);
	MemoryContextSwitchTo(cxt);

	/* as an append counts what it wrote (ocx.stats), and its cursor */
	if (w->written > 0)
	{
		OcxRememberAppend(U64FromFullTransactionId(DatumGetFullTransactionId(w->txid)),
						  w->last_position);
		OcxCount(OCX_COUNT_APPENDS, 1);
		OcxCount(OCX_COUNT_EVENTS, w->written);
		OcxCount(OCX_COUNT_BYTES, w->bytes);
	}
	else
		OcxCount(OCX_COUNT_IDEMPOTENT, 1);

	tuplestore_end(b->rows);
	values[0] = Int64GetDatum(w->written);
	values[1] = Int64GetDatum(w->skipped);
	values[2] = Int64GetDatum(nstreams_written);
	MemoryContextDelete(b->cxt);
	MemoryContextDelete(chunkcxt);
	CommandCounterIncrement();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
