/*
 * upcast.c
 *		Upcasters: turn the data of an old schema version of an event type
 *		into the next version, chained v1 -> v2 -> ... -> current, on read.
 *
 * Stored events never change; every read path (read_stream, read_all,
 * read_category, load, projections) passes each row through ocx._upcast,
 * which returns its argument untouched (not even detoasted) when the type is
 * at its current version, so reads that need no upcasting cost what the
 * SELECT costs.
 *
 * An upcaster is a jsonb -> jsonb function or a list of declarative steps
 * (rename, default, remove, move, cast), parsed once with json-c into
 * OcxUpcastStep arrays by the definition cache and applied here with the
 * jsonb functions of the server.
 *
 * No shared state.
 */
/* fmgrprotos.h declares the SQL function json_object: keep it off json-c's type */
#define json_object pg_json_object_sql
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_errors.h"
#include "ocx_security.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "access/htup_details.h"
#include "executor/spi.h"

#undef json_object
#include "ocx_jsonc.h"

PG_FUNCTION_INFO_V1(ocx_upcast);
PG_FUNCTION_INFO_V1(ocx_upcast_version);
PG_FUNCTION_INFO_V1(ocx_check_upcaster_spec);

typedef enum OcxUpcastOp
{
	UP_RENAME,
	UP_DEFAULT,
	UP_REMOVE,
	UP_MOVE,
	UP_CAST
} OcxUpcastOp;

typedef enum OcxCastTo
{
	CAST_STRING,
	CAST_NUMBER,
	CAST_INTEGER,
	CAST_BOOLEAN
} OcxCastTo;

typedef struct OcxUpcastPath
{
	int			nkeys;
	char	  **keys;
	Datum		array;			/* the keys as text[], for jsonb_set & co */
} OcxUpcastPath;

typedef struct OcxUpcastStep
{
	OcxUpcastOp op;
	OcxUpcastPath from;			/* rename, move: source; default, remove, cast: path */
	OcxUpcastPath to;			/* rename: from with the last key replaced; move: target */
	Jsonb	   *value;			/* default */
	OcxCastTo	cast_to;
} OcxUpcastStep;

static void SpecError(int step, const char *fmt, const char *arg) pg_attribute_noreturn();

/* Refuse a spec at definition time, naming the step. */
static void
SpecError(int step, const char *fmt, const char *arg)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_INVALID_UPCASTER),
			 errmsg("invalid upcaster spec at step %d", step),
			 errdetail(fmt, arg),
			 errhint("A spec is an array of steps such as {\"op\": \"rename\", \"from\": \"name\", \"to\": \"full_name\"}; see docs/contracts.md.")));
}

/* The keys as text[], the form jsonb_set and jsonb_delete_path take. */
static Datum
PathArray(int nkeys, char **keys)
{
	Datum	   *elems = palloc(sizeof(Datum) * (nkeys + 1));
	int			i;

	for (i = 0; i < nkeys; i++)
		elems[i] = CStringGetTextDatum(keys[i]);
	return PointerGetDatum(construct_array(elems, nkeys, TEXTOID, -1, false, TYPALIGN_INT));
}

/* A path: "a.b.c" or ["a", "b.with.dots"]. */
static void
CompilePath(json_object *o, int step, const char *key, OcxUpcastPath *p)
{
	if (o == NULL)
		SpecError(step, "The step needs \"%s\".", key);
	if (json_object_is_type(o, json_type_string))
	{
		char	   *s = pstrdup(json_object_get_string(o));
		char	   *c;
		int			n = 1;

		if (s[0] == '\0')
			SpecError(step, "\"%s\" must not be empty.", key);
		for (c = s; *c; c++)
			if (*c == '.')
				n++;
		p->keys = palloc(sizeof(char *) * n);
		p->nkeys = 0;
		p->keys[p->nkeys++] = s;
		for (c = s; *c; c++)
			if (*c == '.')
			{
				*c = '\0';
				p->keys[p->nkeys++] = c + 1;
			}
	}
	else if (json_object_is_type(o, json_type_array) && json_object_array_length(o) > 0)
	{
		size_t		i;

		p->nkeys = json_object_array_length(o);
		p->keys = palloc(sizeof(char *) * p->nkeys);
		for (i = 0; i < (size_t) p->nkeys; i++)
		{
			json_object *k = json_object_array_get_idx(o, i);

			if (!json_object_is_type(k, json_type_string))
				SpecError(step, "\"%s\" must be a string or an array of strings.", key);
			p->keys[i] = pstrdup(json_object_get_string(k));
		}
	}
	else
		SpecError(step, "\"%s\" must be a string or a non-empty array of strings.", key);
	{
		int			i;

		for (i = 0; i < p->nkeys; i++)
			if (p->keys[i][0] == '\0')
				SpecError(step, "\"%s\" has an empty key.", key);
	}
	p->array = PathArray(p->nkeys, p->keys);
}

/* One declarative step from json-c, with its keys checked. */
static void
CompileStep(json_object *o, int step, OcxUpcastStep *s)
{
	json_object *op;
	const char *name;
	const char *allowed[4] = {"op", NULL, NULL, NULL};

	if (!json_object_is_type(o, json_type_object))
		SpecError(step, "A step must be a JSON object%s.", "");
	if (!json_object_object_get_ex(o, "op", &op) || !json_object_is_type(op, json_type_string))
		SpecError(step, "The step needs \"op\": one of rename, default, remove, move, cast%s.", "");
	name = json_object_get_string(op);

	if (strcmp(name, "rename") == 0 || strcmp(name, "move") == 0)
	{
		json_object *from = NULL,
				   *to = NULL;

		s->op = name[0] == 'r' ? UP_RENAME : UP_MOVE;
		json_object_object_get_ex(o, "from", &from);
		json_object_object_get_ex(o, "to", &to);
		CompilePath(from, step, "from", &s->from);
		if (s->op == UP_RENAME)
		{
			OcxUpcastPath *p = &s->to;

			if (to == NULL || !json_object_is_type(to, json_type_string) ||
				json_object_get_string_len(to) == 0)
				SpecError(step, "\"to\" of %s must be the new key name.", name);
			p->nkeys = s->from.nkeys;
			p->keys = palloc(sizeof(char *) * p->nkeys);
			memcpy(p->keys, s->from.keys, sizeof(char *) * p->nkeys);
			p->keys[p->nkeys - 1] = pstrdup(json_object_get_string(to));
			p->array = PathArray(p->nkeys, p->keys);
		}
		else
			CompilePath(to, step, "to", &s->to);
		allowed[1] = "from";
		allowed[2] = "to";
	}
	else if (strcmp(name, "default") == 0)
	{
		json_object *path = NULL,
				   *value = NULL;
		const char *text;

		s->op = UP_DEFAULT;
		json_object_object_get_ex(o, "path", &path);
		CompilePath(path, step, "path", &s->from);
		if (!json_object_object_get_ex(o, "value", &value))
			SpecError(step, "The %s step needs \"value\".", name);
		text = value ? json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN) : "null";
		s->value = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		allowed[1] = "path";
		allowed[2] = "value";
	}
	else if (strcmp(name, "remove") == 0)
	{
		json_object *path = NULL;

		s->op = UP_REMOVE;
		json_object_object_get_ex(o, "path", &path);
		CompilePath(path, step, "path", &s->from);
		allowed[1] = "path";
	}
	else if (strcmp(name, "cast") == 0)
	{
		json_object *path = NULL,
				   *to = NULL;
		const char *t;

		s->op = UP_CAST;
		json_object_object_get_ex(o, "path", &path);
		CompilePath(path, step, "path", &s->from);
		if (!json_object_object_get_ex(o, "to", &to) || !json_object_is_type(to, json_type_string))
			SpecError(step, "The %s step needs \"to\": string, number, integer or boolean.", name);
		t = json_object_get_string(to);
		if (strcmp(t, "string") == 0)
			s->cast_to = CAST_STRING;
		else if (strcmp(t, "number") == 0)
			s->cast_to = CAST_NUMBER;
		else if (strcmp(t, "integer") == 0)
			s->cast_to = CAST_INTEGER;
		else if (strcmp(t, "boolean") == 0)
			s->cast_to = CAST_BOOLEAN;
		else
			SpecError(step, "Cannot cast to \"%s\"; use string, number, integer or boolean.", t);
		allowed[1] = "path";
		allowed[2] = "to";
	}
	else
	{
		SpecError(step, "Unknown op \"%s\"; use rename, default, remove, move or cast.", name);
		return;
	}

	{
		json_object_object_foreach(o, key, val)
		{
			int			i;
			bool		known = false;

			(void) val;
			for (i = 0; allowed[i] != NULL; i++)
				known |= strcmp(allowed[i], key) == 0;
			if (!known)
				SpecError(step, "Unknown key \"%s\" in the step.", key);
		}
	}
}

/*
 * Compile an upcaster (transform function or spec text) into cxt; raises
 * OX120 on a spec that does not compile.
 */
static OcxUpcaster *
OcxCompileUpcaster(Oid transform, const char *spec, MemoryContext cxt)
{
	OcxUpcaster *up = MemoryContextAllocZero(cxt, sizeof(OcxUpcaster));
	json_object *volatile root = NULL;
	MemoryContext old;

	if (OidIsValid(transform))
	{
		Oid			argtype = JSONBOID;

		up->transform = transform;
		up->transform_exists = SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(transform));
		up->transform_ok = up->transform_exists &&
			OcxFunctionHasSignature(transform, 1, &argtype, JSONBOID);
		if (up->transform_ok)
			fmgr_info_cxt(transform, &up->flinfo, cxt);
		return up;
	}

	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		size_t		i,
					n;

		root = OcxParseJsonC(spec, ERRCODE_OCX_INVALID_UPCASTER, "upcaster spec");
		if (json_object_is_type(root, json_type_object))
		{
			up->nsteps = 1;
			up->steps = palloc0(sizeof(OcxUpcastStep));
			CompileStep(root, 1, &up->steps[0]);
		}
		else if (json_object_is_type(root, json_type_array) && json_object_array_length(root) > 0)
		{
			n = json_object_array_length(root);
			up->nsteps = n;
			up->steps = palloc0(sizeof(OcxUpcastStep) * n);
			for (i = 0; i < n; i++)
				CompileStep(json_object_array_get_idx(root, i), i + 1, &up->steps[i]);
		}
		else
			SpecError(0, "A spec is a step object or a non-empty array of steps%s.", "");
	}
	PG_CATCH();
	{
		if (root != NULL)
			json_object_put(root);
		MemoryContextSwitchTo(old);
		PG_RE_THROW();
	}
	PG_END_TRY();
	json_object_put(root);
	MemoryContextSwitchTo(old);
	return up;
}

/* The value at path in data; false when absent. */
static bool
GetPath(Jsonb *data, OcxUpcastPath *p, JsonbValue *out)
{
	JsonbContainer *c = &data->root;
	int			i;

	for (i = 0; i < p->nkeys; i++)
	{
		if (!JsonContainerIsObject(c) || !OcxJsonbGet(c, p->keys[i], out))
			return false;
		if (i < p->nkeys - 1)
		{
			if (out->type != jbvBinary)
				return false;
			c = out->val.binary.data;
		}
	}
	return true;
}

/* data without the value at path. */
static Jsonb *
DeletePath(Jsonb *data, OcxUpcastPath *p)
{
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_delete_path, JsonbPGetDatum(data), p->array));
}

/* data with value at path, creating missing parent objects on the way. */
static Jsonb *
SetPath(Jsonb *data, OcxUpcastPath *p, Jsonb *value)
{
	int			i;
	JsonbValue	v;

	for (i = 1; i < p->nkeys; i++)
	{
		OcxUpcastPath prefix = {i, p->keys, (Datum) 0};

		if (!GetPath(data, &prefix, &v))
		{
			prefix.array = PathArray(i, p->keys);
			data = DatumGetJsonbP(DirectFunctionCall4(jsonb_set, JsonbPGetDatum(data), prefix.array,
													  JsonbPGetDatum(OcxEmptyObject()),
													  BoolGetDatum(true)));
		}
	}
	return DatumGetJsonbP(DirectFunctionCall4(jsonb_set, JsonbPGetDatum(data), p->array,
											  JsonbPGetDatum(value), BoolGetDatum(true)));
}

/* A path as "a.b", for messages. */
static char *
PathText(OcxUpcastPath *p)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	for (i = 0; i < p->nkeys; i++)
		appendStringInfo(&s, "%s%s", i ? "." : "", p->keys[i]);
	return s.data;
}

/* Does s look like a JSON number (so numeric_in will not complain)? */
static bool
LooksNumeric(const char *s)
{
	const char *c = s;

	if (*c == '-' || *c == '+')
		c++;
	if (!isdigit((unsigned char) *c) && !(*c == '.' && isdigit((unsigned char) c[1])))
		return false;
	while (isdigit((unsigned char) *c))
		c++;
	if (*c == '.')
		for (c++; isdigit((unsigned char) *c); c++);
	if (*c == 'e' || *c == 'E')
	{
		c++;
		if (*c == '-' || *c == '+')
			c++;
		if (!isdigit((unsigned char) *c))
			return false;
		while (isdigit((unsigned char) *c))
			c++;
	}
	return *c == '\0';
}

/* A scalar as a jsonb datum, for jsonb_set. */
static Jsonb *
ScalarJsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

/* The cast of the value v, or an OX121 error. */
static Jsonb *
CastValue(OcxUpcastStep *s, JsonbValue *v, const char *type)
{
	JsonbValue	r;
	char	   *path = PathText(&s->from);

#define CAST_FAIL(why) \
	ereport(ERROR, \
			(errcode(ERRCODE_OCX_UPCAST_FAILED), \
			 errmsg("could not cast \"%s\" while upcasting event type \"%s\"", path, type), \
			 errdetail why))

	if (v->type == jbvNull)
		return ScalarJsonb(v);
	if (v->type == jbvBinary)
		CAST_FAIL(("The value is %s, not a scalar.", OcxJsonbTypeName(v)));

	switch (s->cast_to)
	{
		case CAST_STRING:
			r.type = jbvString;
			if (v->type == jbvString)
				return ScalarJsonb(v);
			else if (v->type == jbvNumeric)
				r.val.string.val = DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric)));
			else
				r.val.string.val = v->val.boolean ? "true" : "false";
			r.val.string.len = strlen(r.val.string.val);
			return ScalarJsonb(&r);
		case CAST_NUMBER:
		case CAST_INTEGER:
			r.type = jbvNumeric;
			if (v->type == jbvNumeric)
				r.val.numeric = v->val.numeric;
			else if (v->type == jbvBool)
				r.val.numeric = int64_to_numeric(v->val.boolean ? 1 : 0);
			else
			{
				char	   *str = OcxJsonbString(v);
				char	   *trimmed = str;
				int			len;

				while (isspace((unsigned char) *trimmed))
					trimmed++;
				len = strlen(trimmed);
				while (len > 0 && isspace((unsigned char) trimmed[len - 1]))
					trimmed[--len] = '\0';
				if (!LooksNumeric(trimmed))
					CAST_FAIL(("The string \"%s\" is not a number.", str));
				r.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(trimmed),
																	ObjectIdGetDatum(InvalidOid),
																	Int32GetDatum(-1)));
			}
			if (s->cast_to == CAST_INTEGER)
				r.val.numeric = DatumGetNumeric(DirectFunctionCall2(numeric_round,
																	NumericGetDatum(r.val.numeric),
																	Int32GetDatum(0)));
			return ScalarJsonb(&r);
		case CAST_BOOLEAN:
			r.type = jbvBool;
			if (v->type == jbvBool)
				return ScalarJsonb(v);
			else if (v->type == jbvNumeric)
				r.val.boolean = !DatumGetBool(DirectFunctionCall2(numeric_eq,
																  NumericGetDatum(v->val.numeric),
																  NumericGetDatum(int64_to_numeric(0))));
			else
			{
				char	   *str = OcxJsonbString(v);

				if (!parse_bool(str, &r.val.boolean))
					CAST_FAIL(("The string \"%s\" is not a boolean.", str));
			}
			return ScalarJsonb(&r);
	}
#undef CAST_FAIL
	return NULL;				/* not reached */
}

/* One declarative step on data. */
static Jsonb *
ApplyStep(OcxUpcastStep *s, Jsonb *data, const char *type)
{
	JsonbValue	v;

	switch (s->op)
	{
		case UP_RENAME:
		case UP_MOVE:
			if (GetPath(data, &s->from, &v))
			{
				Jsonb	   *value = JsonbValueToJsonb(&v);

				data = DeletePath(data, &s->from);
				data = SetPath(data, &s->to, value);
			}
			break;
		case UP_DEFAULT:
			if (!GetPath(data, &s->from, &v))
				data = SetPath(data, &s->from, s->value);
			break;
		case UP_REMOVE:
			if (GetPath(data, &s->from, &v))
				data = DeletePath(data, &s->from);
			break;
		case UP_CAST:
			if (GetPath(data, &s->from, &v))
				data = SetPath(data, &s->from, CastValue(s, &v, type));
			break;
	}
	return data;
}

typedef struct UpcastErrorContext
{
	const char *type;
	int32		from;
} UpcastErrorContext;

/* Errors raised while upcasting (in a transform too) say which type and step. */
static void
UpcastContextCallback(void *arg)
{
	UpcastErrorContext *c = arg;

	errcontext("upcasting event type \"%s\" from schema version %d", c->type, c->from);
}

/*
 * The version an event at from_version reaches: the current version, or
 * less when a link of the chain is missing (the type was moved forward and
 * its upcaster is not defined yet).  Reads then return the event at the
 * version it reached rather than fail the whole read: one misconfigured type
 * must not stop read_all and every projection.
 */
int32
OcxUpcastTarget(OcxEventTypeDef *def, int32 from_version)
{
	int32		v = from_version;

	/* no chain starts below version 1 (the log stores versions > 0) */
	if (from_version < 1)
		return from_version;
	while (v < def->schema_version && v < def->nupcasters && def->upcasters[v] != NULL)
		v++;
	return Max(v, from_version);
}

/*
 * data (at from_version) brought as far as the chain goes (see
 * OcxUpcastTarget).  Raises OX121 when a step fails.
 */
Jsonb *
OcxUpcastData(OcxEventTypeDef *def, int32 from_version, Jsonb *data)
{
	int32		v;
	ErrorContextCallback cb;
	UpcastErrorContext ctx;

	ctx.type = def->type;
	cb.callback = UpcastContextCallback;
	cb.arg = &ctx;
	cb.previous = error_context_stack;
	error_context_stack = &cb;

	for (v = from_version; v < OcxUpcastTarget(def, from_version); v++)
	{
		OcxUpcaster *up = def->upcasters[v];

		ctx.from = v;
		if (up->error != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_UPCAST_FAILED),
					 errmsg("the upcaster spec of event type \"%s\" from version %d in ocx.upcasters is invalid",
							def->type, v),
					 errdetail("%s", up->error),
					 errhint("Define the upcaster again with ocx.define_upcaster.")));
		if (OidIsValid(up->transform))
		{
			LOCAL_FCINFO(fcinfo, 1);
			Datum		result;
			OcxUserCall call;

			if (!up->transform_ok)
				ereport(ERROR,
						(errcode(ERRCODE_OCX_UPCAST_FAILED),
						 up->transform_exists ?
						 errmsg("the upcaster function of event type \"%s\" from version %d is not (jsonb) -> jsonb",
								def->type, v) :
						 errmsg("the upcaster function of event type \"%s\" from version %d no longer exists",
								def->type, v),
						 errhint("Define the upcaster again with ocx.define_upcaster.")));
			/* as its definer, never as the reader (a worker is a superuser) */
			OcxUserCodeCheck(up->definer, up->transform, "upcaster function");
			InitFunctionCallInfoData(*fcinfo, &up->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = JsonbPGetDatum(data);
			fcinfo->args[0].isnull = false;
			OcxUserCodeBegin(up->definer, &call);
			result = FunctionCallInvoke(fcinfo);
			OcxUserCodeEnd(&call);
			if (fcinfo->isnull)
				ereport(ERROR,
						(errcode(ERRCODE_OCX_UPCAST_FAILED),
						 errmsg("upcaster function %s returned null", format_procedure(up->transform)),
						 errhint("An upcaster returns the event's data at the next version, a JSON object.")));
			data = DatumGetJsonbP(result);
			if (!JB_ROOT_IS_OBJECT(data))
				ereport(ERROR,
						(errcode(ERRCODE_OCX_UPCAST_FAILED),
						 errmsg("upcaster function %s returned a JSON value that is not an object",
								format_procedure(up->transform))));
		}
		else
		{
			int			i;

			for (i = 0; i < up->nsteps; i++)
				data = ApplyStep(&up->steps[i], data, def->type);
		}
	}
	error_context_stack = cb.previous;
	return data;
}

/*
 * ocx._upcast(type, schema_version, data) -> jsonb: the read path's hook.
 * The common case returns the argument datum as it came, still toasted.
 */
Datum
ocx_upcast(PG_FUNCTION_ARGS)
{
	text	   *type;
	int32		version = PG_GETARG_INT32(1);
	OcxEventTypeDef *def;
	Jsonb	   *volatile result = NULL;

	if (version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("schema_version must be a positive integer"),
				 errdetail("The event has schema_version %d.", version),
				 errhint("Events in the log have a schema_version of 1 or more.")));
	if (!OcxAnyUpcasting())
		PG_RETURN_DATUM(PG_GETARG_DATUM(2));
	type = PG_GETARG_TEXT_PP(0);
	def = OcxLookupEventType(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (def == NULL || version >= def->schema_version ||
		OcxUpcastTarget(def, version) == version)
		PG_RETURN_DATUM(PG_GETARG_DATUM(2));

	OcxDefCachePin();
	PG_TRY();
	{
		/* pinned: the entry we use cannot be freed under us now */
		def = OcxLookupEventType(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
		result = OcxUpcastData(def, version, PG_GETARG_JSONB_P(2));
	}
	PG_CATCH();
	{
		OcxDefCacheUnpin();
		PG_RE_THROW();
	}
	PG_END_TRY();
	OcxDefCacheUnpin();
	PG_RETURN_JSONB_P(result);
}

/*
 * An ocx.event composite read in its stored form (read_all with upcast =>
 * false) brought as far as its type's chain goes, as ocx._upcast and
 * ocx._upcast_version do on the read path; event itself when nothing is to
 * be done.  The worker upcasts each event of a batch this way, only when the
 * projection wants it and inside that event's subtransaction: an event whose
 * upcaster fails (OX121) is then the projection's failing event, retried and
 * dead-lettered per its retry policy, and never stops a reader that does not
 * need it.
 */
Datum
OcxUpcastEvent(Datum event)
{
	HeapTupleHeader th;
	TupleDesc	desc;
	HeapTuple	tuple;
	Datum	   *values;
	bool	   *nulls;
	char	   *type;
	int32		version;
	int			type_att,
				version_att,
				data_att;
	OcxEventTypeDef *def;
	Jsonb	   *volatile data = NULL;
	volatile int32 target = 0;
	Datum		result;

	if (!OcxAnyUpcasting())
		return event;
	th = DatumGetHeapTupleHeader(event);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th), HeapTupleHeaderGetTypMod(th));
	type_att = SPI_fnumber(desc, "type");
	version_att = SPI_fnumber(desc, "schema_version");
	data_att = SPI_fnumber(desc, "data");
	if (type_att <= 0 || version_att <= 0 || data_att <= 0)
		elog(ERROR, "ocx: OcxUpcastEvent: not an ocx.event");

	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	OcxDeformRow(th, desc, values, nulls);
	if (nulls[type_att - 1] || nulls[version_att - 1] || nulls[data_att - 1])
	{
		ReleaseTupleDesc(desc);
		return event;
	}
	type = TextDatumGetCString(values[type_att - 1]);
	version = DatumGetInt32(values[version_att - 1]);
	def = OcxLookupEventType(type, strlen(type));
	if (def == NULL || version >= def->schema_version ||
		OcxUpcastTarget(def, version) == version)
	{
		ReleaseTupleDesc(desc);
		return event;
	}

	OcxDefCachePin();
	PG_TRY();
	{
		/* pinned: the entry we use cannot be freed under us now */
		def = OcxLookupEventType(type, strlen(type));
		target = OcxUpcastTarget(def, version);
		data = OcxUpcastData(def, version, DatumGetJsonbP(values[data_att - 1]));
	}
	PG_CATCH();
	{
		OcxDefCacheUnpin();
		ReleaseTupleDesc(desc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	OcxDefCacheUnpin();

	values[version_att - 1] = Int32GetDatum(target);
	values[data_att - 1] = JsonbPGetDatum(data);
	tuple = heap_form_tuple(desc, values, nulls);
	result = heap_copy_tuple_as_datum(tuple, desc);
	ReleaseTupleDesc(desc);
	return result;
}

/* ocx._upcast_version(type, schema_version) -> int: where _upcast takes it. */
Datum
ocx_upcast_version(PG_FUNCTION_ARGS)
{
	int32		version = PG_GETARG_INT32(1);
	text	   *type;
	OcxEventTypeDef *def;

	if (version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("schema_version must be a positive integer"),
				 errdetail("The event has schema_version %d.", version),
				 errhint("Events in the log have a schema_version of 1 or more.")));
	if (!OcxAnyUpcasting())
		PG_RETURN_INT32(version);
	type = PG_GETARG_TEXT_PP(0);
	def = OcxLookupEventType(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (def == NULL || version >= def->schema_version)
		PG_RETURN_INT32(version);
	PG_RETURN_INT32(OcxUpcastTarget(def, version));
}

/* ocx._check_upcaster_spec(jsonb): compile and throw away. */
Datum
ocx_check_upcaster_spec(PG_FUNCTION_ARGS)
{
	Jsonb	   *spec = PG_GETARG_JSONB_P(0);
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx upcaster check",
											  ALLOCSET_SMALL_SIZES);
	char	   *text = JsonbToCString(NULL, &spec->root, VARSIZE(spec));

	OcxCompileUpcaster(InvalidOid, text, cxt);
	MemoryContextDelete(cxt);
	PG_RETURN_VOID();
}

/* _PG_init: the definition cache compiles upcasters here. */
void
OcxUpcastInit(void)
{
	ocx_def_compilers.upcaster = OcxCompileUpcaster;
}
