/*
 * contract.c
 *		Event contracts: the current schema version of each event type and
 *		validation of appended events against its JSON Schema.
 *
 * ocx.define_event_type stores a JSON Schema; the definition cache
 * (defcache.c) compiles it once per backend, with json-c, into the OcxSchema
 * tree below (OcxCompileSchema, registered in ocx_def_compilers), and append
 * validates each event's data against the tree in C (CheckNewEvent, set as
 * ocx_check_event_hook): no query, no json-c and no text parsing per event.
 * The supported subset is type, required, properties, enum, minimum/maximum,
 * minLength/maxLength, items and additionalProperties (docs/contracts.md);
 * any other keyword is refused at definition time, so a schema never
 * silently checks less than it says.
 *
 * No shared state.
 */
/* fmgrprotos.h declares the SQL function json_object: keep it off json-c's type */
#define json_object pg_json_object_sql
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_errors.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#undef json_object
#include "ocx_jsonc.h"

PG_FUNCTION_INFO_V1(ocx_check_schema);

/* JSON types a schema may allow (bit set; 0 = any) */
#define JT_NULL		0x01
#define JT_BOOLEAN	0x02
#define JT_STRING	0x04
#define JT_NUMBER	0x08
#define JT_INTEGER	0x10
#define JT_OBJECT	0x20
#define JT_ARRAY	0x40

struct OcxSchema
{
	int			types;
	int			nrequired;
	char	  **required;
	int			nprops;
	char	  **prop_names;
	OcxSchema **props;
	bool		additional;		/* additionalProperties: false makes this false */
	OcxSchema  *additional_schema;	/* or a schema for them */
	OcxSchema  *items;
	Numeric		minimum;		/* NULL: none */
	Numeric		maximum;
	int			min_length;		/* -1: none */
	int			max_length;
	int			nenum;			/* -1: no enum */
	JsonbValue *enums;			/* scalars */
};

static const struct
{
	const char *name;
	int			bit;
}			json_types[] = {
	{"null", JT_NULL}, {"boolean", JT_BOOLEAN}, {"string", JT_STRING},
	{"number", JT_NUMBER}, {"integer", JT_INTEGER}, {"object", JT_OBJECT},
	{"array", JT_ARRAY}
};

static void SchemaError(const char *path, const char *fmt, const char *arg) pg_attribute_noreturn();

/* Refuse a schema at definition time, naming where in it the problem is. */
static void
SchemaError(const char *path, const char *fmt, const char *arg)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_INVALID_SCHEMA),
			 errmsg("invalid event schema at %s", path),
			 errdetail(fmt, arg),
			 errhint("See docs/contracts.md for the supported JSON Schema subset.")));
}

/* The bit of a JSON Schema type name. */
static int
TypeBit(const char *name, const char *path)
{
	int			i;

	for (i = 0; i < (int) lengthof(json_types); i++)
		if (strcmp(json_types[i].name, name) == 0)
			return json_types[i].bit;
	SchemaError(path, "Unknown type \"%s\".", name);
	return 0;
}

/* A json-c number as a Numeric (exact: from its text). */
static Numeric
JsonNumber(json_object *o, const char *path, const char *keyword)
{
	const char *s;

	if (!json_object_is_type(o, json_type_int) && !json_object_is_type(o, json_type_double))
		SchemaError(path, "\"%s\" must be a number.", keyword);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/* A non-negative int (minLength/maxLength) from json-c. */
static int
JsonLength(json_object *o, const char *path, const char *keyword)
{
	int64		n;

	if (!json_object_is_type(o, json_type_int) || (n = json_object_get_int64(o)) < 0 ||
		n > PG_INT32_MAX)
		SchemaError(path, "\"%s\" must be a non-negative integer.", keyword);
	return (int) json_object_get_int64(o);
}

/* A scalar json-c value as a JsonbValue (for enum). */
static void
JsonScalar(json_object *o, JsonbValue *out, const char *path)
{
	switch (json_object_get_type(o))
	{
		case json_type_null:
			out->type = jbvNull;
			break;
		case json_type_boolean:
			out->type = jbvBool;
			out->val.boolean = json_object_get_boolean(o);
			break;
		case json_type_int:
		case json_type_double:
			out->type = jbvNumeric;
			out->val.numeric = JsonNumber(o, path, "enum");
			break;
		case json_type_string:
			out->type = jbvString;
			out->val.string.len = json_object_get_string_len(o);
			out->val.string.val = pnstrdup(json_object_get_string(o), out->val.string.len);
			break;
		default:
			SchemaError(path, "\"%s\" values must be strings, numbers, booleans or null.", "enum");
	}
}

/* Compile one schema object (palloc'd in the current context). */
static OcxSchema *
CompileNode(json_object *o, const char *path)
{
	OcxSchema  *s = palloc0(sizeof(OcxSchema));

	s->additional = true;
	s->min_length = s->max_length = -1;
	s->nenum = -1;

	if (!json_object_is_type(o, json_type_object))
		SchemaError(path, "A schema must be a JSON object%s.", "");

	{
		json_object_object_foreach(o, key, val)
		{
			if (strcmp(key, "type") == 0)
			{
				if (json_object_is_type(val, json_type_string))
					s->types = TypeBit(json_object_get_string(val), path);
				else if (json_object_is_type(val, json_type_array))
				{
					size_t		i,
								n = json_object_array_length(val);

					for (i = 0; i < n; i++)
					{
						json_object *t = json_object_array_get_idx(val, i);

						if (!json_object_is_type(t, json_type_string))
							SchemaError(path, "\"%s\" must be a string or an array of strings.", "type");
						s->types |= TypeBit(json_object_get_string(t), path);
					}
				}
				else
					SchemaError(path, "\"%s\" must be a string or an array of strings.", "type");
			}
			else if (strcmp(key, "required") == 0)
			{
				size_t		i;

				if (!json_object_is_type(val, json_type_array))
					SchemaError(path, "\"%s\" must be an array of strings.", "required");
				s->nrequired = json_object_array_length(val);
				s->required = palloc(sizeof(char *) * (s->nrequired + 1));
				for (i = 0; i < (size_t) s->nrequired; i++)
				{
					json_object *t = json_object_array_get_idx(val, i);

					if (!json_object_is_type(t, json_type_string))
						SchemaError(path, "\"%s\" must be an array of strings.", "required");
					s->required[i] = pstrdup(json_object_get_string(t));
				}
			}
			else if (strcmp(key, "properties") == 0)
			{
				int			i = 0;

				if (!json_object_is_type(val, json_type_object))
					SchemaError(path, "\"%s\" must be an object of schemas.", "properties");
				s->nprops = json_object_object_length(val);
				s->prop_names = palloc(sizeof(char *) * (s->nprops + 1));
				s->props = palloc(sizeof(OcxSchema *) * (s->nprops + 1));
				{
					json_object_object_foreach(val, pkey, pval)
					{
						s->prop_names[i] = pstrdup(pkey);
						s->props[i] = CompileNode(pval, psprintf("%s.%s", path, pkey));
						i++;
					}
				}
			}
			else if (strcmp(key, "additionalProperties") == 0)
			{
				if (json_object_is_type(val, json_type_boolean))
					s->additional = json_object_get_boolean(val);
				else
					s->additional_schema = CompileNode(val, psprintf("%s.*", path));
			}
			else if (strcmp(key, "items") == 0)
				s->items = CompileNode(val, psprintf("%s[*]", path));
			else if (strcmp(key, "minimum") == 0)
				s->minimum = JsonNumber(val, path, key);
			else if (strcmp(key, "maximum") == 0)
				s->maximum = JsonNumber(val, path, key);
			else if (strcmp(key, "minLength") == 0)
				s->min_length = JsonLength(val, path, key);
			else if (strcmp(key, "maxLength") == 0)
				s->max_length = JsonLength(val, path, key);
			else if (strcmp(key, "enum") == 0)
			{
				size_t		i;

				if (!json_object_is_type(val, json_type_array))
					SchemaError(path, "\"%s\" must be an array.", "enum");
				s->nenum = json_object_array_length(val);
				s->enums = palloc(sizeof(JsonbValue) * (s->nenum + 1));
				for (i = 0; i < (size_t) s->nenum; i++)
					JsonScalar(json_object_array_get_idx(val, i), &s->enums[i], path);
			}
			else if (strcmp(key, "$schema") == 0 || strcmp(key, "$id") == 0 ||
					 strcmp(key, "title") == 0 || strcmp(key, "description") == 0 ||
					 strcmp(key, "examples") == 0 || strcmp(key, "default") == 0 ||
					 strcmp(key, "$comment") == 0)
				 /* annotations: no effect on validation */ ;
			else
				SchemaError(path, "Keyword \"%s\" is not supported.", key);
		}
	}
	return s;
}

/* Compile a JSON Schema text into cxt; raises OX111 when it is not valid. */
static OcxSchema *
OcxCompileSchema(const char *json, MemoryContext cxt)
{
	json_object *volatile root = NULL;
	OcxSchema  *volatile result = NULL;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		root = OcxParseJsonC(json, ERRCODE_OCX_INVALID_SCHEMA, "event schema");
		result = CompileNode(root, "$");
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
	return result;
}

/* The state of one validation, for messages. */
typedef struct Validation
{
	const char *type;
	int32		version;
	int			index;
	StringInfoData path;
} Validation;

static void Violation(Validation *v, const char *rule, const char *why) pg_attribute_noreturn();

/* Refuse an event, naming its index, the path and the rule it breaks. */
static void
Violation(Validation *v, const char *rule, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_CONTRACT_VIOLATION),
			 errmsg("event %d violates the contract of event type \"%s\" at %s",
					v->index, v->type, v->path.data),
			 errdetail("Rule \"%s\": %s.", rule, why),
			 errhint("Schema version %d of \"%s\" is registered in ocx.event_types; "
					 "send data that matches it.", v->version, v->type)));
}

/* The JSON type bit of a jsonb value. */
static int
ValueTypeBit(JsonbValue *jv)
{
	switch (jv->type)
	{
		case jbvNull:
			return JT_NULL;
		case jbvBool:
			return JT_BOOLEAN;
		case jbvString:
			return JT_STRING;
		case jbvNumeric:
			return JT_NUMBER;
		case jbvBinary:
			return JsonContainerIsObject(jv->val.binary.data) ? JT_OBJECT : JT_ARRAY;
		default:
			return JT_ARRAY;
	}
}

/* "string or null" for a type bit set. */
static char *
TypeNames(int types)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	for (i = 0; i < (int) lengthof(json_types); i++)
		if (types & json_types[i].bit)
			appendStringInfo(&s, "%s%s", s.len ? " or " : "", json_types[i].name);
	return s.data;
}

/* For "integer": a number without a fractional part (1.0 counts). */
static bool
NumericIsIntegral(Numeric n)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
	char	   *dot = strchr(s, '.');

	if (dot == NULL)
		return true;
	for (dot++; *dot; dot++)
		if (*dot != '0')
			return false;
	return true;
}

/* Exact comparison, so bounds like 0.1 behave as written. */
static int
CompareNumeric(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

/* A number as text, for messages. */
static char *
NumericText(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

/* enum membership: same type and same value (numbers by value). */
static bool
ScalarEquals(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return CompareNumeric(a->val.numeric, b->val.numeric) == 0;
		default:
			return false;
	}
}

static void ValidateValue(Validation *v, OcxSchema *s, JsonbValue *jv);

/* required, properties and additionalProperties of one object. */
static void
ValidateObject(Validation *v, OcxSchema *s, JsonbContainer *obj)
{
	int			base = v->path.len;
	int			i;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k,
				val;

	for (i = 0; i < s->nrequired; i++)
	{
		if (!OcxJsonbGet(obj, s->required[i], &val))
		{
			appendStringInfo(&v->path, ".%s", s->required[i]);
			Violation(v, "required", "the key is missing");
		}
	}
	if (s->nprops == 0 && s->additional && s->additional_schema == NULL)
		return;

	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		OcxSchema  *ps = NULL;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &val, true);
		for (i = 0; i < s->nprops; i++)
			if (strlen(s->prop_names[i]) == (size_t) k.val.string.len &&
				memcmp(s->prop_names[i], k.val.string.val, k.val.string.len) == 0)
			{
				ps = s->props[i];
				break;
			}
		appendStringInfoChar(&v->path, '.');
		appendBinaryStringInfo(&v->path, k.val.string.val, k.val.string.len);
		if (ps == NULL)
		{
			if (!s->additional)
				Violation(v, "additionalProperties", "the key is not allowed");
			ps = s->additional_schema;
		}
		if (ps != NULL)
			ValidateValue(v, ps, &val);
		v->path.len = base;
		v->path.data[base] = '\0';
	}
}

/* Check one value against its schema node; recurses into objects and arrays. */
static void
ValidateValue(Validation *v, OcxSchema *s, JsonbValue *jv)
{
	int			bit = ValueTypeBit(jv);

	if (s->types != 0)
	{
		bool		ok = (s->types & bit) != 0;

		if (!ok && bit == JT_NUMBER && (s->types & JT_INTEGER))
			ok = NumericIsIntegral(jv->val.numeric);
		if (ok && bit == JT_NUMBER && !(s->types & JT_NUMBER) && (s->types & JT_INTEGER))
			ok = NumericIsIntegral(jv->val.numeric);
		if (!ok)
			Violation(v, "type", psprintf("expected %s, got %s",
										  TypeNames(s->types), OcxJsonbTypeName(jv)));
	}
	if (s->nenum >= 0)
	{
		int			i;
		bool		found = false;

		for (i = 0; i < s->nenum && !found; i++)
			found = ScalarEquals(&s->enums[i], jv);
		if (!found)
			Violation(v, "enum", "the value is not one of the allowed values");
	}
	if (bit == JT_NUMBER)
	{
		if (s->minimum && CompareNumeric(jv->val.numeric, s->minimum) < 0)
			Violation(v, "minimum", psprintf("%s is less than %s", NumericText(jv->val.numeric),
											 NumericText(s->minimum)));
		if (s->maximum && CompareNumeric(jv->val.numeric, s->maximum) > 0)
			Violation(v, "maximum", psprintf("%s is greater than %s", NumericText(jv->val.numeric),
											 NumericText(s->maximum)));
	}
	else if (bit == JT_STRING && (s->min_length >= 0 || s->max_length >= 0))
	{
		int			len = pg_mbstrlen_with_len(jv->val.string.val, jv->val.string.len);

		if (s->min_length >= 0 && len < s->min_length)
			Violation(v, "minLength", psprintf("the string has %d characters, fewer than %d",
											   len, s->min_length));
		if (s->max_length >= 0 && len > s->max_length)
			Violation(v, "maxLength", psprintf("the string has %d characters, more than %d",
											   len, s->max_length));
	}
	else if (bit == JT_OBJECT)
		ValidateObject(v, s, jv->val.binary.data);
	else if (bit == JT_ARRAY && s->items != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(jv->val.binary.data);
		JsonbIteratorToken tok;
		JsonbValue	elem;
		int			base = v->path.len;
		int			i = 0;

		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			appendStringInfo(&v->path, "[%d]", i++);
			ValidateValue(v, s->items, &elem);
			v->path.len = base;
			v->path.data[base] = '\0';
		}
	}
}

/* Raise OX110 naming the path and rule where data breaks schema. */
static void
OcxValidateData(OcxSchema *schema, Jsonb *data, const char *type, int32 version, int index)
{
	Validation	v;
	JsonbValue	root;

	v.type = type;
	v.version = version;
	v.index = index;
	initStringInfo(&v.path);
	appendStringInfoChar(&v.path, '$');
	root.type = jbvBinary;
	root.val.binary.data = &data->root;
	root.val.binary.len = VARSIZE(data) - VARHDRSZ;
	ValidateValue(&v, schema, &root);
	pfree(v.path.data);
}

static OcxCheckEventHook prev_check_event_hook = NULL;

/*
 * ocx_check_event_hook: an event with no schema version (0) gets its type's
 * current one (append.c makes it 1 when the type has no contract), and an
 * ocx error is raised if ev breaks its type's contract.  Events written at an
 * older schema version (by producers not yet upgraded) are stored as they
 * are and upcast on read; a version newer than the contract is refused.
 */
static void
CheckNewEvent(OcxNewEvent *ev, int index)
{
	OcxEventTypeDef *def;

	if (prev_check_event_hook)
		prev_check_event_hook(ev, index);

	def = OcxLookupEventType(ev->type, strlen(ev->type));
	if (def == NULL)
		return;
	if (ev->schema_version == 0)
		ev->schema_version = def->schema_version;
	if (ev->schema_version > def->schema_version)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_CONTRACT_VIOLATION),
				 errmsg("event %d has schema version %d, newer than the contract of event type \"%s\"",
						index, ev->schema_version, ev->type),
				 errdetail("The current schema version of \"%s\" is %d.", ev->type, def->schema_version),
				 errhint("Move the event type forward with ocx.define_event_type first.")));
	if (def->schema_error != NULL && ev->schema_version == def->schema_version)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_SCHEMA),
				 errmsg("the schema of event type \"%s\" in ocx.event_types is invalid", ev->type),
				 errdetail("%s", def->schema_error),
				 errhint("Define the event type again with ocx.define_event_type.")));
	if (def->schema != NULL && ev->schema_version == def->schema_version)
		OcxValidateData(def->schema, ev->data, ev->type, def->schema_version, index);
}

/* ocx._check_schema(jsonb): compile and throw away, for define_event_type. */
Datum
ocx_check_schema(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx schema check",
											  ALLOCSET_SMALL_SIZES);
	char	   *text = JsonbToCString(NULL, &schema->root, VARSIZE(schema));

	OcxCompileSchema(text, cxt);
	MemoryContextDelete(cxt);
	PG_RETURN_VOID();
}

/* _PG_init: the definition cache compiles schemas, append checks events here. */
void
OcxContractInit(void)
{
	ocx_def_compilers.schema = OcxCompileSchema;
	prev_check_event_hook = ocx_check_event_hook;
	ocx_check_event_hook = CheckNewEvent;
}
