/*
 * cloudevents.c
 *		CloudEvents 1.0 structured-mode JSON in and out of the log.
 *
 * Mapping (docs/cloudevents.md):
 *		id			-> event_id when it is a UUID; otherwise a name-based UUID of
 *					   (source, id) and the original id kept in metadata._ce.id
 *		source, type, time -> the columns of the same name
 *		data		-> data when it is an object; other JSON as {"value": ...}
 *					   and data_base64 as {"base64": ...}, marked in metadata._ce
 *		datacontenttype, dataschema, subject, extension attributes -> metadata
 *		correlationid, causationid (UUIDs) -> the columns; schemaversion -> column
 *		ocxmetadata (a JSON string) -> merged into metadata
 *
 * to_cloudevent reverses this exactly, so append_cloudevents followed by
 * to_cloudevent returns the attributes that went in (time normalized to UTC).
 * Metadata that is no valid CloudEvents extension (names outside [a-z0-9],
 * objects, arrays, fractions) travels as the one extension "ocxmetadata".
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "access/htup_details.h"
#include "common/jsonapi.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(ocx_to_cloudevent);
PG_FUNCTION_INFO_V1(ocx_export_cloudevent);

#define CE_META_KEY "_ce"

static bool
IsExtensionName(const char *name, int len)
{
	int			i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')))
			return false;
	return true;
}

static bool
IsIntegral(Numeric num)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));

	return strpbrk(s, ".eEN") == NULL;	/* no fraction, exponent, NaN */
}

static bool
KeyIs(JsonbValue *k, const char *name)
{
	return k->val.string.len == (int) strlen(name) &&
		memcmp(k->val.string.val, name, k->val.string.len) == 0;
}

static void
CeError(int index, const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
			 errmsg("invalid cloudevent %d: %s", index, msg),
			 detail ? errdetail("%s", detail) : 0,
			 errhint("See https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md.")));
}

static char *
CeString(JsonbValue *v, int index, JsonbValue *key, bool allow_empty)
{
	char	   *name = OcxJsonbString(key);

	if (v->type != jbvString)
		CeError(index, psprintf("attribute \"%s\" must be a string, not %s",
								name, OcxJsonbTypeName(v)), NULL);
	if (!allow_empty && v->val.string.len == 0)
		CeError(index, psprintf("attribute \"%s\" must not be empty", name), NULL);
	return OcxJsonbString(v);
}

/*
 * Is s base64 as RFC 4648 section 4 defines it (the CloudEvents JSON format's
 * data_base64): groups of four characters of the standard alphabet, the last
 * group padded with one or two '='?  No whitespace; "" is valid (no bytes).
 */
static bool
IsBase64(const char *s)
{
	size_t		len = strlen(s);
	size_t		i;

	if (len % 4 != 0)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '+' || c == '/')
			continue;
		/* padding: only in the last two places, and only at the end */
		if (c == '=' && i >= len - 2 && (i == len - 1 || s[len - 1] == '='))
			continue;
		return false;
	}
	return true;
}

/* A name-based (version 3, MD5) UUID of source and id. */
static void
DeriveUuid(const char *source, const char *id, pg_uuid_t *out)
{
	StringInfoData buf;
	const char *errstr = NULL;

	initStringInfo(&buf);
	appendStringInfoString(&buf, source);
	appendStringInfoChar(&buf, '\0');
	appendStringInfoString(&buf, id);
	if (!pg_md5_binary(buf.data, buf.len, out->data, &errstr))
		elog(ERROR, "ocx: could not compute MD5: %s", errstr ? errstr : "unknown error");
	out->data[6] = (out->data[6] & 0x0f) | 0x30;
	out->data[8] = (out->data[8] & 0x3f) | 0x80;
	pfree(buf.data);
}

/* Parse a JSON object text without raising; NULL when it is not one. */
static Jsonb *
ParseJsonObject(char *str)
{
	JsonLexContext *lex;
	Jsonb	   *result;

	lex = makeJsonLexContextCstringLen(str, strlen(str), GetDatabaseEncoding(), false);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(str)));
	if (!JB_ROOT_IS_OBJECT(result))
		return NULL;
	return result;
}

static void
PushNamedValue(JsonbParseState **state, JsonbValue *k, JsonbValue *v)
{
	pushJsonbValue(state, WJB_KEY, k);
	pushJsonbValue(state, WJB_VALUE, v);
}

/* One structured-mode CloudEvent object into *ev. */
static void
ParseCloudEvent(JsonbContainer *obj, int index, OcxNewEvent *ev)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;
	JsonbParseState *meta = NULL;
	JsonbParseState *ce = NULL;
	bool		ce_used = false;
	bool		has_spec = false;
	bool		has_data = false;
	char	   *id = NULL;
	int			nmeta = 0;

	memset(ev, 0, sizeof(*ev));
	pushJsonbValue(&meta, WJB_BEGIN_OBJECT, NULL);
	pushJsonbValue(&ce, WJB_BEGIN_OBJECT, NULL);

	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);

		if (KeyIs(&k, "specversion"))
		{
			char	   *s = CeString(&v, index, &k, false);

			if (strcmp(s, "1.0") != 0)
				CeError(index, psprintf("unsupported specversion \"%s\"", s),
						"ocx accepts CloudEvents 1.0 (specversion \"1.0\").");
			has_spec = true;
		}
		else if (KeyIs(&k, "id"))
			id = CeString(&v, index, &k, false);
		else if (KeyIs(&k, "source"))
			ev->source = CeString(&v, index, &k, false);
		else if (KeyIs(&k, "type"))
			ev->type = CeString(&v, index, &k, false);
		else if (KeyIs(&k, "time"))
		{
			char	   *s = CeString(&v, index, &k, false);

			if (!OcxParseTimestamp(s, &ev->time))
				CeError(index, psprintf("attribute \"time\" is not an RFC 3339 timestamp: \"%s\"", s), NULL);
			ev->has_time = true;
		}
		else if (KeyIs(&k, "data"))
		{
			if (has_data)
				CeError(index, "both \"data\" and \"data_base64\" are present", NULL);
			has_data = true;
			if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
				ev->data = OcxJsonbFromBinary(&v);
			else
			{
				JsonbParseState *d = NULL;

				pushJsonbValue(&d, WJB_BEGIN_OBJECT, NULL);
				OcxPushValue(&d, "value", &v);
				ev->data = JsonbValueToJsonb(pushJsonbValue(&d, WJB_END_OBJECT, NULL));
				OcxPushString(&ce, "data", "value");
				ce_used = true;
			}
		}
		else if (KeyIs(&k, "data_base64"))
		{
			JsonbParseState *d = NULL;

			if (has_data)
				CeError(index, "both \"data\" and \"data_base64\" are present", NULL);
			has_data = true;
			if (!IsBase64(CeString(&v, index, &k, true)))
				CeError(index, "attribute \"data_base64\" is not valid base64",
						"It must be base64 as in RFC 4648 section 4: the characters A-Z, a-z, 0-9, + and /, "
						"in groups of four, the last one padded with =.");
			pushJsonbValue(&d, WJB_BEGIN_OBJECT, NULL);
			OcxPushValue(&d, "base64", &v);
			ev->data = JsonbValueToJsonb(pushJsonbValue(&d, WJB_END_OBJECT, NULL));
			OcxPushString(&ce, "data", "base64");
			ce_used = true;
		}
		else if (KeyIs(&k, "datacontenttype") || KeyIs(&k, "dataschema") ||
				 KeyIs(&k, "subject"))
		{
			(void) CeString(&v, index, &k, false);
			PushNamedValue(&meta, &k, &v);
			nmeta++;
		}
		else if ((KeyIs(&k, "correlationid") || KeyIs(&k, "causationid")) &&
				 v.type == jbvString)
		{
			char	   *s = OcxJsonbString(&v);
			bool		corr = KeyIs(&k, "correlationid");
			pg_uuid_t  *u = corr ? &ev->correlation_id : &ev->causation_id;

			if (OcxParseUuid(s, u) && strlen(s) == 36)
			{
				if (corr)
					ev->has_correlation_id = true;
				else
					ev->has_causation_id = true;
			}
			else
			{
				PushNamedValue(&meta, &k, &v);
				nmeta++;
			}
		}
		else if (KeyIs(&k, "schemaversion") && v.type == jbvNumeric)
		{
			int32		sv;

			if (!IsIntegral(v.val.numeric))
				CeError(index, "attribute \"schemaversion\" must be a positive integer", NULL);
			sv = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
			if (sv < 1)
				CeError(index, "attribute \"schemaversion\" must be a positive integer", NULL);
			ev->schema_version = sv;
		}
		else if (KeyIs(&k, "ocxmetadata"))
		{
			Jsonb	   *extra;
			JsonbIterator *eit;
			JsonbValue	ek,
						evv;

			extra = (v.type == jbvString) ? ParseJsonObject(OcxJsonbString(&v)) : NULL;
			if (extra == NULL)
				CeError(index, "attribute \"ocxmetadata\" must be a string holding a JSON object", NULL);
			eit = JsonbIteratorInit(&extra->root);
			while ((tok = JsonbIteratorNext(&eit, &ek, true)) != WJB_DONE)
			{
				if (tok != WJB_KEY)
					continue;
				JsonbIteratorNext(&eit, &evv, true);
				PushNamedValue(&meta, &ek, &evv);
				nmeta++;
			}
		}
		else
		{
			/* an extension attribute */
			char	   *name = OcxJsonbString(&k);

			if (!IsExtensionName(k.val.string.val, k.val.string.len))
				CeError(index, psprintf("invalid attribute name \"%s\"", name),
						"Extension attribute names consist of lower-case letters a-z and digits 0-9.");
			if (v.type == jbvNull)
				continue;		/* null means absent */
			if (v.type != jbvString && v.type != jbvBool &&
				!(v.type == jbvNumeric && IsIntegral(v.val.numeric)))
				CeError(index, psprintf("extension attribute \"%s\" must be a string, an integer or a boolean, not %s",
										name, OcxJsonbTypeName(&v)), NULL);
			PushNamedValue(&meta, &k, &v);
			nmeta++;
		}
	}

	if (!has_spec)
		CeError(index, "required attribute \"specversion\" is missing", NULL);
	if (id == NULL)
		CeError(index, "required attribute \"id\" is missing", NULL);
	if (ev->source == NULL)
		CeError(index, "required attribute \"source\" is missing", NULL);
	if (strlen(ev->source) > OCX_MAX_SOURCE_LEN)
		CeError(index, "attribute \"source\" is too long",
				psprintf("Sources are limited to %d bytes; this one has %zu.",
						 OCX_MAX_SOURCE_LEN, strlen(ev->source)));
	if (ev->type == NULL)
		CeError(index, "required attribute \"type\" is missing", NULL);
	if (strlen(ev->type) > 256)
		CeError(index, "attribute \"type\" is longer than 256 bytes", NULL);

	/* canonical lower-case UUIDs map to event_id; anything else is kept */
	if (strlen(id) == 36 && OcxParseUuid(id, &ev->id) &&
		strcmp(id, DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ev->id)))) == 0)
		ev->has_id = true;
	else
	{
		DeriveUuid(ev->source, id, &ev->id);
		ev->has_id = true;
		OcxPushString(&ce, "id", id);
		ce_used = true;
	}
	if (!has_data)
	{
		ev->data = OcxEmptyObject();
		OcxPushString(&ce, "data", "absent");
		ce_used = true;
	}
	if (!ev->has_time)
	{
		OcxPushString(&ce, "time", "absent");
		ce_used = true;
	}

	if (ce_used)
	{
		JsonbValue	cev;
		JsonbValue	key;

		cev.type = jbvBinary;
		{
			Jsonb	   *cej = JsonbValueToJsonb(pushJsonbValue(&ce, WJB_END_OBJECT, NULL));

			cev.val.binary.data = &cej->root;
			cev.val.binary.len = VARSIZE(cej) - VARHDRSZ;
		}
		key.type = jbvString;
		key.val.string.val = CE_META_KEY;
		key.val.string.len = strlen(CE_META_KEY);
		PushNamedValue(&meta, &key, &cev);
		nmeta++;
	}
	ev->metadata = JsonbValueToJsonb(pushJsonbValue(&meta, WJB_END_OBJECT, NULL));
}

/*
 * The events of a structured-mode CloudEvent or a JSON batch (array) of them.
 */
OcxNewEvent *
OcxEventsFromCloudEvents(Jsonb *ce, int *nevents)
{
	OcxNewEvent *events;
	int			n,
				i = 0;

	if (JB_ROOT_IS_SCALAR(ce))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_CLOUDEVENT),
				 errmsg("cloudevents must be a JSON object or an array (batch) of objects")));
	if (JB_ROOT_IS_OBJECT(ce))
	{
		events = palloc(sizeof(OcxNewEvent));
		ParseCloudEvent(&ce->root, 1, events);
		*nevents = 1;
		return events;
	}

	n = JB_ROOT_COUNT(ce);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_EMPTY_BATCH),
				 errmsg("cloudevents batch must not be empty")));
	events = palloc(sizeof(OcxNewEvent) * n);
	{
		JsonbIterator *it = JsonbIteratorInit(&ce->root);
		JsonbIteratorToken tok;
		JsonbValue	v;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				CeError(i + 1, psprintf("a batch element must be an object, not %s",
										OcxJsonbTypeName(&v)), NULL);
			ParseCloudEvent(v.val.binary.data, i + 1, &events[i]);
			i++;
		}
	}
	*nevents = n;
	return events;
}

/*
 * The fields of an ocx.event that the CloudEvent is made of, by name: their
 * attribute numbers are looked up once per row type and kept in fn_extra,
 * and each row is deformed once (GetAttributeByName per field looked the
 * row type up and searched its attributes by name for every field of every
 * event: a tenth of an export).
 */
typedef enum CeField
{
	CF_EVENT_ID,
	CF_SOURCE,
	CF_TYPE,
	CF_TIME,
	CF_DATA,
	CF_METADATA,
	CF_CORRELATION_ID,
	CF_CAUSATION_ID,
	CF_SCHEMA_VERSION,
	CF_STREAM_ID,
	CF_STREAM_VERSION,
	CF_COUNT
} CeField;

static const char *const ce_field_names[CF_COUNT] = {
	"event_id", "source", "type", "time", "data", "metadata", "correlation_id",
	"causation_id", "schema_version", "stream_id", "stream_version"
};

typedef struct CeFieldMap
{
	Oid			typid;
	int32		typmod;
	int			natts;
	int			attno[CF_COUNT];	/* 0-based; -1 when the type lacks it */
} CeFieldMap;

typedef struct CeRow
{
	Datum		value[CF_COUNT];
	bool		isnull[CF_COUNT];
} CeRow;

/* Deform event e once into row (the fields above; a missing one is null). */
static void
CeDeform(FunctionCallInfo fcinfo, HeapTupleHeader e, CeRow *row)
{
	Oid			typid = HeapTupleHeaderGetTypeId(e);
	int32		typmod = HeapTupleHeaderGetTypMod(e);
	CeFieldMap *map = (CeFieldMap *) fcinfo->flinfo->fn_extra;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	int			f;

	desc = lookup_rowtype_tupdesc(typid, typmod);
	if (map == NULL || map->typid != typid || map->typmod != typmod || map->natts != desc->natts)
	{
		if (map == NULL)
			map = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(CeFieldMap));
		map->typid = typid;
		map->typmod = typmod;
		map->natts = desc->natts;
		for (f = 0; f < CF_COUNT; f++)
		{
			int			attno = SPI_fnumber(desc, ce_field_names[f]);

			map->attno[f] = attno > 0 ? attno - 1 : -1;
		}
		fcinfo->flinfo->fn_extra = map;
	}
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	OcxDeformRow(e, desc, values, nulls);
	for (f = 0; f < CF_COUNT; f++)
	{
		row->isnull[f] = map->attno[f] < 0 || nulls[map->attno[f]];
		row->value[f] = row->isnull[f] ? (Datum) 0 : values[map->attno[f]];
	}
	ReleaseTupleDesc(desc);
	pfree(values);
	pfree(nulls);
}

/* Look up a string member of the _ce bookkeeping object. */
static char *
CeMark(JsonbContainer *cemeta, const char *key)
{
	JsonbValue	v;

	if (cemeta == NULL || !OcxJsonbGet(cemeta, key, &v) || v.type != jbvString)
		return NULL;
	return OcxJsonbString(&v);
}

/*
 * Push the attributes of the event in row onto the open object in *state;
 * schemaversion always when all_versions (the export), else only above 1.
 */
static void
CeBuild(CeRow *row, JsonbParseState **state, bool all_versions)
{
	JsonbParseState *extra = NULL;
	int			nextra = 0;
	Jsonb	   *data = NULL;
	Jsonb	   *meta = NULL;
	JsonbContainer *cemeta = NULL;
	JsonbValue	v;
	char	   *mark;
	bool		has_corr = false,
				has_cause = false;

	if (!row->isnull[CF_METADATA])
	{
		meta = DatumGetJsonbP(row->value[CF_METADATA]);
		if (JB_ROOT_IS_OBJECT(meta) && OcxJsonbGet(&meta->root, CE_META_KEY, &v) &&
			v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
			cemeta = v.val.binary.data;
		if (!JB_ROOT_IS_OBJECT(meta))
			meta = NULL;
	}

	OcxPushString(state, "specversion", "1.0");

	mark = CeMark(cemeta, "id");
	if (mark == NULL)
	{
		if (row->isnull[CF_EVENT_ID])
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
					 errmsg("event has no event_id")));
		mark = DatumGetCString(DirectFunctionCall1(uuid_out, row->value[CF_EVENT_ID]));
	}
	OcxPushString(state, "id", mark);

	if (row->isnull[CF_SOURCE])
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("event has no source")));
	OcxPushString(state, "source", TextDatumGetCString(row->value[CF_SOURCE]));

	if (row->isnull[CF_TYPE])
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("event has no type")));
	OcxPushString(state, "type", TextDatumGetCString(row->value[CF_TYPE]));

	mark = CeMark(cemeta, "time");
	if (!row->isnull[CF_TIME] && (mark == NULL || strcmp(mark, "absent") != 0))
		OcxPushString(state, "time", OcxFormatTimestamp(DatumGetTimestampTz(row->value[CF_TIME])));

	if (!row->isnull[CF_CORRELATION_ID])
	{
		OcxPushString(state, "correlationid",
					  DatumGetCString(DirectFunctionCall1(uuid_out, row->value[CF_CORRELATION_ID])));
		has_corr = true;
	}
	if (!row->isnull[CF_CAUSATION_ID])
	{
		OcxPushString(state, "causationid",
					  DatumGetCString(DirectFunctionCall1(uuid_out, row->value[CF_CAUSATION_ID])));
		has_cause = true;
	}
	if (!row->isnull[CF_SCHEMA_VERSION] &&
		(all_versions || DatumGetInt32(row->value[CF_SCHEMA_VERSION]) > 1))
	{
		v.type = jbvNumeric;
		v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int4_numeric, row->value[CF_SCHEMA_VERSION]));
		OcxPushValue(state, "schemaversion", &v);
	}

	/* metadata: core optional attributes, extensions, and the rest */
	if (meta != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&meta->root);
		JsonbIteratorToken tok;
		JsonbValue	k;

		pushJsonbValue(&extra, WJB_BEGIN_OBJECT, NULL);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			bool		as_attribute;

			if (tok != WJB_KEY)
				continue;
			JsonbIteratorNext(&it, &v, true);
			if (KeyIs(&k, CE_META_KEY))
				continue;

			if (KeyIs(&k, "datacontenttype") || KeyIs(&k, "dataschema") || KeyIs(&k, "subject"))
				as_attribute = (v.type == jbvString);
			else if (KeyIs(&k, "specversion") || KeyIs(&k, "id") || KeyIs(&k, "source") ||
					 KeyIs(&k, "type") || KeyIs(&k, "time") || KeyIs(&k, "data") ||
					 KeyIs(&k, "ocxmetadata") || KeyIs(&k, "schemaversion") ||
					 (KeyIs(&k, "correlationid") && has_corr) ||
					 (KeyIs(&k, "causationid") && has_cause))
				as_attribute = false;
			else
				as_attribute = IsExtensionName(k.val.string.val, k.val.string.len) &&
					(v.type == jbvString || v.type == jbvBool ||
					 (v.type == jbvNumeric && IsIntegral(v.val.numeric)));

			if (as_attribute)
				PushNamedValue(state, &k, &v);
			else
			{
				PushNamedValue(&extra, &k, &v);
				nextra++;
			}
		}
		if (nextra > 0)
		{
			Jsonb	   *ej = JsonbValueToJsonb(pushJsonbValue(&extra, WJB_END_OBJECT, NULL));

			OcxPushString(state, "ocxmetadata", JsonbToCString(NULL, &ej->root, VARSIZE(ej)));
		}
	}

	if (!row->isnull[CF_DATA])
		data = DatumGetJsonbP(row->value[CF_DATA]);
	mark = CeMark(cemeta, "data");
	if (data != NULL && (mark == NULL || strcmp(mark, "absent") != 0))
	{
		if (mark != NULL && strcmp(mark, "value") == 0 && JB_ROOT_IS_OBJECT(data) &&
			OcxJsonbGet(&data->root, "value", &v))
			OcxPushValue(state, "data", &v);
		else if (mark != NULL && strcmp(mark, "base64") == 0 && JB_ROOT_IS_OBJECT(data) &&
				 OcxJsonbGet(&data->root, "base64", &v))
			OcxPushValue(state, "data_base64", &v);
		else
		{
			v.type = jbvBinary;
			v.val.binary.data = &data->root;
			v.val.binary.len = VARSIZE(data) - VARHDRSZ;
			OcxPushValue(state, "data", &v);
		}
	}
}

/*
 * ocx.to_cloudevent(e ocx.event) -> jsonb
 */
Datum
ocx_to_cloudevent(PG_FUNCTION_ARGS)
{
	JsonbParseState *state = NULL;
	CeRow		row;

	CeDeform(fcinfo, PG_GETARG_HEAPTUPLEHEADER(0), &row);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	CeBuild(&row, &state, false);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/*
 * ocx._export_cloudevent(e ocx.event, tags text[]) -> jsonb: what
 * ocx.export() writes for an event, in one pass: to_cloudevent's attributes
 * and the ones import_commit reads back, ocxstream, ocxversion,
 * schemaversion (always) and ocxtags (the tags as a JSON array in a string,
 * when the event has tags).  Pushed last, they win over metadata extensions
 * of the same names, as the jsonb concatenation this replaces did.
 */
Datum
ocx_export_cloudevent(PG_FUNCTION_ARGS)
{
	JsonbParseState *state = NULL;
	CeRow		row;
	JsonbValue	v;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	CeDeform(fcinfo, PG_GETARG_HEAPTUPLEHEADER(0), &row);
	if (row.isnull[CF_STREAM_ID] || row.isnull[CF_STREAM_VERSION] || row.isnull[CF_SCHEMA_VERSION])
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("event has no stream, version or schema version")));
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	CeBuild(&row, &state, true);
	OcxPushString(&state, "ocxstream", TextDatumGetCString(row.value[CF_STREAM_ID]));
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric, row.value[CF_STREAM_VERSION]));
	OcxPushValue(&state, "ocxversion", &v);
	if (!PG_ARGISNULL(1))
		OcxPushString(&state, "ocxtags",
					  TextDatumGetCString(DirectFunctionCall1(array_to_json, PG_GETARG_DATUM(1))));
	PG_RETURN_JSONB_P(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}
