/*
 * reducer.c
 *		Declarative reducers: aggregate state folded in C from per-event-type
 *		rules (set, add, subtract, append, remove), with no function call
 *		per event.
 *
 * The rules are parsed once with json-c (by the definition cache) into the
 * ReducerRule arrays below.  While a stream is folded the state lives as a
 * mutable tree (RNode) rather than as jsonb, so a rule costs a key lookup and
 * an assignment instead of rebuilding the whole document; the tree becomes
 * jsonb once, at the end.  Replaced values become garbage in the fold's
 * memory context, so when that context grows past a threshold the live tree
 * is copied into a fresh context and the old one deleted: memory stays flat
 * however long the stream.  docs/aggregates.md describes the rule language.
 *
 * No shared state.
 */
/* fmgrprotos.h declares the SQL function json_object: keep it off json-c's type */
#define json_object pg_json_object_sql
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_errors.h"

#include "common/int.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#undef json_object
#include "ocx_jsonc.h"

PG_FUNCTION_INFO_V1(ocx_check_reducer);

typedef enum RuleOp
{
	R_SET,
	R_ADD,
	R_SUBTRACT,
	R_APPEND,
	R_REMOVE
} RuleOp;

static const char *const op_names[] = {"set", "add", "subtract", "append", "remove"};

typedef enum RuleSource
{
	SRC_NONE,					/* remove */
	SRC_DATA,					/* a path in the event's data */
	SRC_VALUE,					/* a constant */
	SRC_TYPE,					/* $type */
	SRC_VERSION,				/* $version */
	SRC_TIME,					/* $time */
	SRC_STREAM,					/* $stream_id */
	SRC_WHOLE_DATA				/* $data */
} RuleSource;

typedef struct ReducerRule
{
	RuleOp		op;
	int			npath;
	char	  **path;			/* in the state */
	int		   *path_lens;
	RuleSource	source;
	int			nfrom;
	char	  **from;			/* in the event's data */
	int		   *from_lens;
	Jsonb	   *value;			/* SRC_VALUE */
} ReducerRule;

typedef struct ReducerType
{
	char	   *type;
	int			len;
	int			nrules;
	ReducerRule *rules;
} ReducerType;

struct OcxReducer
{
	int			ntypes;
	ReducerType *types;
	ReducerType *wildcard;		/* "*": rules for every event, or NULL */
};

static void RuleError(const char *type, int rule, const char *fmt, const char *arg) pg_attribute_noreturn();
static void FoldError(OcxFold *f, struct ReducerRule *r, const char *why) pg_attribute_noreturn();

/* Refuse reducer rules at definition time, naming the event type and rule. */
static void
RuleError(const char *type, int rule, const char *fmt, const char *arg)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_INVALID_AGGREGATE),
			 errmsg("invalid reducer rule %d for event type \"%s\"", rule, type),
			 errdetail(fmt, arg),
			 errhint("Rules look like {\"add\": \"balance\", \"from\": \"amount\"}; see docs/aggregates.md.")));
}

/* Byte lengths of keys, so that per-event lookups need no strlen. */
static int *
KeyLengths(char **keys, int n)
{
	int		   *lens = palloc(sizeof(int) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		lens[i] = strlen(keys[i]);
	return lens;
}

/* "a.b.c" as keys (palloc'd). */
static char **
SplitPath(const char *s, int *n, const char *type, int rule)
{
	char	   *copy = pstrdup(s);
	char	  **keys;
	char	   *c;
	int			k = 1;

	if (copy[0] == '\0')
		RuleError(type, rule, "A path must not be empty%s.", "");
	for (c = copy; *c; c++)
		if (*c == '.')
			k++;
	keys = palloc(sizeof(char *) * k);
	*n = 0;
	keys[(*n)++] = copy;
	for (c = copy; *c; c++)
		if (*c == '.')
		{
			*c = '\0';
			keys[(*n)++] = c + 1;
		}
	for (k = 0; k < *n; k++)
		if (keys[k][0] == '\0')
			RuleError(type, rule, "Path \"%s\" has an empty key.", s);
	return keys;
}

/* One rule from json-c: its operation, state path and source, all checked. */
static void
CompileRule(json_object *o, const char *type, int index, ReducerRule *r)
{
	int			found = 0;
	int			i;
	json_object *from = NULL,
			   *value = NULL;

	if (!json_object_is_type(o, json_type_object))
		RuleError(type, index, "A rule must be a JSON object%s.", "");
	for (i = 0; i < (int) lengthof(op_names); i++)
	{
		json_object *p;

		if (json_object_object_get_ex(o, op_names[i], &p))
		{
			if (!json_object_is_type(p, json_type_string))
				RuleError(type, index, "\"%s\" must name a state path such as \"balance\".", op_names[i]);
			r->op = (RuleOp) i;
			r->path = SplitPath(json_object_get_string(p), &r->npath, type, index);
			r->path_lens = KeyLengths(r->path, r->npath);
			found++;
		}
	}
	if (found != 1)
		RuleError(type, index, "A rule has exactly one of set, add, subtract, append and remove%s.", "");

	{
		json_object_object_foreach(o, key, val)
		{
			(void) val;
			if (strcmp(key, "from") != 0 && strcmp(key, "value") != 0 &&
				strcmp(key, op_names[r->op]) != 0)
				RuleError(type, index, "Unknown key \"%s\".", key);
		}
	}

	json_object_object_get_ex(o, "from", &from);
	if (json_object_object_get_ex(o, "value", &value) && from != NULL)
		RuleError(type, index, "A rule has \"from\" or \"value\", not both%s.", "");

	if (r->op == R_REMOVE)
	{
		if (from != NULL || value != NULL || json_object_object_get_ex(o, "value", &value))
			RuleError(type, index, "A remove rule has no \"from\" or \"value\"%s.", "");
		r->source = SRC_NONE;
		return;
	}
	if (from != NULL)
	{
		const char *f;

		if (!json_object_is_type(from, json_type_string))
			RuleError(type, index, "\"from\" must be a path in the event's data or a $ name%s.", "");
		f = json_object_get_string(from);
		if (strcmp(f, "$type") == 0)
			r->source = SRC_TYPE;
		else if (strcmp(f, "$version") == 0)
			r->source = SRC_VERSION;
		else if (strcmp(f, "$time") == 0)
			r->source = SRC_TIME;
		else if (strcmp(f, "$stream_id") == 0)
			r->source = SRC_STREAM;
		else if (strcmp(f, "$data") == 0)
			r->source = SRC_WHOLE_DATA;
		else if (f[0] == '$')
			RuleError(type, index, "Unknown name \"%s\"; use $type, $version, $time, $stream_id or $data.", f);
		else
		{
			r->source = SRC_DATA;
			r->from = SplitPath(f, &r->nfrom, type, index);
			r->from_lens = KeyLengths(r->from, r->nfrom);
		}
	}
	else if (json_object_object_get_ex(o, "value", &value))
	{
		const char *text = value ? json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN) : "null";

		r->source = SRC_VALUE;
		r->value = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		if ((r->op == R_ADD || r->op == R_SUBTRACT) &&
			!(JB_ROOT_IS_SCALAR(r->value) && value != NULL &&
			  (json_object_is_type(value, json_type_int) || json_object_is_type(value, json_type_double))))
			RuleError(type, index, "The \"value\" of %s must be a number.", op_names[r->op]);
	}
	else
		RuleError(type, index, "The rule needs \"from\" or \"value\"%s.", "");
}

/* Compile reducer rules (JSON text) into cxt; raises OX101 when invalid. */
static OcxReducer *
OcxCompileReducer(const char *json, MemoryContext cxt)
{
	json_object *volatile root = NULL;
	OcxReducer *volatile red = NULL;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		int			t = 0;

		root = OcxParseJsonC(json, ERRCODE_OCX_INVALID_AGGREGATE, "reducer rules");
		if (!json_object_is_type(root, json_type_object) || json_object_object_length(root) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_AGGREGATE),
					 errmsg("reducer must be a non-empty JSON object"),
					 errdetail("Its keys are event types (or \"*\"), its values arrays of rules.")));
		red = palloc0(sizeof(OcxReducer));
		red->types = palloc0(sizeof(ReducerType) * json_object_object_length(root));
		{
			json_object_object_foreach(root, key, val)
			{
				ReducerType *rt;
				size_t		i;

				if (strcmp(key, "*") == 0)
					rt = red->wildcard = palloc0(sizeof(ReducerType));
				else
					rt = &red->types[t++];

				rt->type = pstrdup(key);
				rt->len = strlen(key);
				if (json_object_is_type(val, json_type_object))
				{
					rt->nrules = 1;
					rt->rules = palloc0(sizeof(ReducerRule));
					CompileRule(val, key, 1, &rt->rules[0]);
				}
				else if (json_object_is_type(val, json_type_array))
				{
					rt->nrules = json_object_array_length(val);
					rt->rules = palloc0(sizeof(ReducerRule) * (rt->nrules + 1));
					for (i = 0; i < (size_t) rt->nrules; i++)
						CompileRule(json_object_array_get_idx(val, i), key, i + 1, &rt->rules[i]);
				}
				else
					RuleError(key, 0, "The rules of an event type are an array of rule objects%s.", "");
			}
		}
		red->ntypes = t;
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
	return red;
}

/* ---- the mutable state tree ---- */

typedef enum RNodeKind
{
	RN_SCALAR,
	RN_INT,						/* an integer sum kept as int64 (add/subtract) */
	RN_OBJECT,
	RN_ARRAY
} RNodeKind;

typedef struct RNode
{
	RNodeKind	kind;
	JsonbValue	scalar;			/* RN_SCALAR */
	int64		ival;			/* RN_INT */
	int			n;				/* RN_OBJECT, RN_ARRAY */
	int			cap;
	char	  **keys;			/* RN_OBJECT */
	int		   *keylens;
	struct RNode **vals;
} RNode;

struct OcxFold
{
	OcxReducer *reducer;
	MemoryContext cxt;			/* holds the tree and garbage */
	MemoryContext parent;
	RNode	   *root;
	Size		threshold;
	const char *event_type;		/* of the event being folded, for messages */
	int64		version;
};

/*
 * Compaction threshold, and block sizes, kept below malloc's mmap and trim
 * thresholds: a fold then recycles the same heap memory instead of faulting
 * in fresh pages, which would cost more than the folding itself.
 */
#define FOLD_MIN_THRESHOLD (64 * 1024)
#define FOLD_BLOCK_SIZES 0, 8 * 1024, 64 * 1024

/* An empty node of the state tree. */
static RNode *
NewContainer(RNodeKind kind)
{
	RNode	   *n = palloc0(sizeof(RNode));

	n->kind = kind;
	return n;
}

/* A deep RNode copy of v (scalar or binary container), in the current context. */
static RNode *
FromJsonbValue(JsonbValue *v)
{
	RNode	   *n;

	if (v->type != jbvBinary)
	{
		n = palloc0(sizeof(RNode));
		n->kind = RN_SCALAR;
		n->scalar = *v;
		if (v->type == jbvString)
			n->scalar.val.string.val = pnstrdup(v->val.string.val, v->val.string.len);
		else if (v->type == jbvNumeric)
			n->scalar.val.numeric = DatumGetNumericCopy(NumericGetDatum(v->val.numeric));
		return n;
	}
	else
	{
		JsonbContainer *c = v->val.binary.data;
		JsonbIterator *it = JsonbIteratorInit(c);
		JsonbIteratorToken tok;
		JsonbValue	k,
					e;
		bool		obj = JsonContainerIsObject(c);
		int			count = JsonContainerSize(c);

		if (JsonContainerIsScalar(c))
		{
			while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
				if (tok == WJB_ELEM)
					return FromJsonbValue(&e);
		}
		n = NewContainer(obj ? RN_OBJECT : RN_ARRAY);
		n->cap = Max(count, 4);
		n->vals = palloc(sizeof(RNode *) * n->cap);
		if (obj)
		{
			n->keys = palloc(sizeof(char *) * n->cap);
			n->keylens = palloc(sizeof(int) * n->cap);
		}
		while ((tok = JsonbIteratorNext(&it, obj ? &k : &e, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				n->keys[n->n] = pnstrdup(k.val.string.val, k.val.string.len);
				n->keylens[n->n] = k.val.string.len;
				tok = JsonbIteratorNext(&it, &e, true);
				n->vals[n->n++] = FromJsonbValue(&e);
			}
			else if (tok == WJB_ELEM)
				n->vals[n->n++] = FromJsonbValue(&e);
		}
		return n;
	}
}

/* The state tree of a jsonb document (the initial state or a snapshot). */
static RNode *
FromJsonb(Jsonb *j)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	return FromJsonbValue(&v);
}

/* A deep copy of n into the current context (compaction). */
static RNode *
CopyNode(RNode *n)
{
	RNode	   *c = palloc(sizeof(RNode));
	int			i;

	*c = *n;
	if (n->kind == RN_INT)
		return c;
	if (n->kind == RN_SCALAR)
	{
		if (n->scalar.type == jbvString)
			c->scalar.val.string.val = pnstrdup(n->scalar.val.string.val, n->scalar.val.string.len);
		else if (n->scalar.type == jbvNumeric)
			c->scalar.val.numeric = DatumGetNumericCopy(NumericGetDatum(n->scalar.val.numeric));
		return c;
	}
	c->cap = Max(n->n, 4);
	c->vals = palloc(sizeof(RNode *) * c->cap);
	if (n->kind == RN_OBJECT)
	{
		c->keys = palloc(sizeof(char *) * c->cap);
		c->keylens = palloc(sizeof(int) * c->cap);
	}
	for (i = 0; i < n->n; i++)
	{
		c->vals[i] = CopyNode(n->vals[i]);
		if (n->kind == RN_OBJECT)
		{
			c->keys[i] = pnstrdup(n->keys[i], n->keylens[i]);
			c->keylens[i] = n->keylens[i];
		}
	}
	return c;
}

/* Push n onto the parse state; returns what the last push returned. */
static JsonbValue *
PushNode(JsonbParseState **ps, RNode *n, JsonbIteratorToken as)
{
	int			i;

	if (n->kind == RN_SCALAR)
		return pushJsonbValue(ps, as, &n->scalar);
	if (n->kind == RN_INT)
	{
		JsonbValue	v;

		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(n->ival);
		return pushJsonbValue(ps, as, &v);
	}
	pushJsonbValue(ps, n->kind == RN_OBJECT ? WJB_BEGIN_OBJECT : WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n->n; i++)
	{
		if (n->kind == RN_OBJECT)
		{
			JsonbValue	k;

			k.type = jbvString;
			k.val.string.val = n->keys[i];
			k.val.string.len = n->keylens[i];
			pushJsonbValue(ps, WJB_KEY, &k);
			PushNode(ps, n->vals[i], WJB_VALUE);
		}
		else
			PushNode(ps, n->vals[i], WJB_ELEM);
	}
	return pushJsonbValue(ps, n->kind == RN_OBJECT ? WJB_END_OBJECT : WJB_END_ARRAY, NULL);
}

/* The tree as jsonb (pushJsonbValue sorts object keys as jsonb requires). */
static Jsonb *
ToJsonb(RNode *n)
{
	JsonbParseState *ps = NULL;

	if (n->kind == RN_SCALAR)
		return JsonbValueToJsonb(&n->scalar);
	return JsonbValueToJsonb(PushNode(&ps, n, WJB_VALUE));
}

/* Index of key in an object node, -1 if absent (states are small: linear). */
static int
FindKeyLen(RNode *obj, const char *key, int len)
{
	int			i;

	for (i = 0; i < obj->n; i++)
		if (obj->keylens[i] == len && memcmp(obj->keys[i], key, len) == 0)
			return i;
	return -1;
}

/* Room for one more member in an object or array node. */
static void
Grow(RNode *n)
{
	if (n->n < n->cap)
		return;
	n->cap = Max(4, n->cap * 2);
	n->vals = n->vals ? repalloc(n->vals, sizeof(RNode *) * n->cap) : palloc(sizeof(RNode *) * n->cap);
	if (n->kind == RN_OBJECT)
	{
		n->keys = n->keys ? repalloc(n->keys, sizeof(char *) * n->cap) : palloc(sizeof(char *) * n->cap);
		n->keylens = n->keylens ? repalloc(n->keylens, sizeof(int) * n->cap) : palloc(sizeof(int) * n->cap);
	}
}

/* A rule that cannot be applied to this event: OX103 naming rule and version. */
static void
FoldError(OcxFold *f, ReducerRule *r, const char *why)
{
	StringInfoData p;
	int			i;

	initStringInfo(&p);
	for (i = 0; i < r->npath; i++)
		appendStringInfo(&p, "%s%s", i ? "." : "", r->path[i]);
	ereport(ERROR,
			(errcode(ERRCODE_OCX_APPLY_FAILED),
			 errmsg("reducer rule \"%s\" on \"%s\" failed at stream version " INT64_FORMAT,
					op_names[r->op], p.data, f->version),
			 errdetail("Event type \"%s\": %s.", f->event_type, why),
			 errhint("Fix the reducer with ocx.define_aggregate.")));
}

/*
 * The slot for the rule's state path: the parent object (created on the
 * way when create) and the key's index in it (-1 when absent).
 */
static RNode *
StateParent(OcxFold *f, ReducerRule *r, bool create, int *idx)
{
	RNode	   *cur = f->root;
	int			i;

	for (i = 0; i < r->npath - 1; i++)
	{
		int			k;

		if (cur->kind != RN_OBJECT)
			FoldError(f, r, "the state on the path is not an object");
		k = FindKeyLen(cur, r->path[i], r->path_lens[i]);
		if (k < 0)
		{
			if (!create)
				return NULL;
			Grow(cur);
			cur->keys[cur->n] = pstrdup(r->path[i]);
			cur->keylens[cur->n] = strlen(r->path[i]);
			cur->vals[cur->n] = NewContainer(RN_OBJECT);
			k = cur->n++;
		}
		cur = cur->vals[k];
	}
	if (cur->kind != RN_OBJECT)
		FoldError(f, r, "the state on the path is not an object");
	*idx = FindKeyLen(cur, r->path[r->npath - 1], r->path_lens[r->npath - 1]);
	return cur;
}

/* Replace the member at idx, or add key when idx is -1. */
static void
SetSlot(RNode *parent, int idx, const char *key, RNode *val)
{
	if (idx >= 0)
	{
		parent->vals[idx] = val;
		return;
	}
	Grow(parent);
	parent->keys[parent->n] = pstrdup(key);
	parent->keylens[parent->n] = strlen(key);
	parent->vals[parent->n++] = val;
}

/* A scalar node holding v (no copy: v is already in the fold context). */
static RNode *
ScalarNode(JsonbValue *v)
{
	RNode	   *n = palloc0(sizeof(RNode));

	n->kind = RN_SCALAR;
	n->scalar = *v;
	return n;
}

/* The rule's source value for this event as a JsonbValue; false if absent. */
static bool
SourceValue(ReducerRule *r, Jsonb *data, text *type, int64 version, TimestampTz time,
			text *stream_id, JsonbValue *out)
{
	int			i;
	JsonbContainer *c;

	switch (r->source)
	{
		case SRC_NONE:
			return false;
		case SRC_VALUE:
			out->type = jbvBinary;
			out->val.binary.data = &r->value->root;
			out->val.binary.len = VARSIZE(r->value) - VARHDRSZ;
			return true;
		case SRC_WHOLE_DATA:
			out->type = jbvBinary;
			out->val.binary.data = &data->root;
			out->val.binary.len = VARSIZE(data) - VARHDRSZ;
			return true;
		case SRC_TYPE:
		case SRC_STREAM:
			{
				text	   *t = r->source == SRC_TYPE ? type : stream_id;

				out->type = jbvString;
				out->val.string.val = VARDATA_ANY(t);
				out->val.string.len = VARSIZE_ANY_EXHDR(t);
				return true;
			}
		case SRC_VERSION:
			out->type = jbvNumeric;
			out->val.numeric = int64_to_numeric(version);
			return true;
		case SRC_TIME:
			out->type = jbvString;
			out->val.string.val = OcxFormatTimestamp(time);
			out->val.string.len = strlen(out->val.string.val);
			return true;
		case SRC_DATA:
			c = &data->root;
			for (i = 0; i < r->nfrom; i++)
			{
				if (!JsonContainerIsObject(c) ||
					getKeyJsonValueFromContainer(c, r->from[i], r->from_lens[i], out) == NULL)
					return false;
				if (i < r->nfrom - 1)
				{
					if (out->type != jbvBinary)
						return false;
					c = out->val.binary.data;
				}
			}
			return true;
	}
	return false;
}

/* Is n an integer in int32 range?  Then *out is its value. */
static bool
NumericIsSmallInt(Numeric n, int32 *out)
{
	bool		err = false;

	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(n))) != 0)
		return false;
	*out = numeric_int4_opt_error(n, &err);
	return !err;
}

/* A scalar number out of v (unwrapping a raw-scalar container), or NULL. */
static Numeric
NumberOf(JsonbValue *v)
{
	if (v->type == jbvNumeric)
		return v->val.numeric;
	if (v->type == jbvBinary && JsonContainerIsScalar(v->val.binary.data))
	{
		JsonbValue	s;

		if (JsonbExtractScalar(v->val.binary.data, &s) && s.type == jbvNumeric)
			return s.val.numeric;
	}
	return NULL;
}

/* One rule on the state for one event. */
static void
ApplyRule(OcxFold *f, ReducerRule *r, Jsonb *data, text *type, int64 version,
		  TimestampTz time, text *stream_id)
{
	JsonbValue	src;
	RNode	   *parent;
	int			idx;
	const char *last = r->path[r->npath - 1];

	if (r->op == R_REMOVE)
	{
		parent = StateParent(f, r, false, &idx);
		if (parent != NULL && idx >= 0)
		{
			memmove(&parent->keys[idx], &parent->keys[idx + 1], sizeof(char *) * (parent->n - idx - 1));
			memmove(&parent->keylens[idx], &parent->keylens[idx + 1], sizeof(int) * (parent->n - idx - 1));
			memmove(&parent->vals[idx], &parent->vals[idx + 1], sizeof(RNode *) * (parent->n - idx - 1));
			parent->n--;
		}
		return;
	}
	if (!SourceValue(r, data, type, version, time, stream_id, &src))
		return;					/* the event does not carry it: nothing to do */

	parent = StateParent(f, r, true, &idx);
	switch (r->op)
	{
		case R_SET:
			SetSlot(parent, idx, last, FromJsonbValue(&src));
			break;
		case R_ADD:
		case R_SUBTRACT:
			{
				Numeric		n = NumberOf(&src);
				RNode	   *node = idx >= 0 ? parent->vals[idx] : NULL;
				Numeric		cur;
				JsonbValue	res;
				int32		delta;
				int32		state_value = 0;
				bool		small_state;

				if (n == NULL)
					FoldError(f, r, psprintf("the event's value is %s, not a number", OcxJsonbTypeName(&src)));
				if (node != NULL && node->kind != RN_INT &&
					!(node->kind == RN_SCALAR &&
					  (node->scalar.type == jbvNumeric || node->scalar.type == jbvNull)))
					FoldError(f, r, "the state value is not a number");

				/*
				 * Integer sums, the common case, are kept as int64 until the
				 * end: numeric arithmetic and its allocation per event would
				 * cost more than everything else in the fold.
				 */
				if (node == NULL || node->kind == RN_INT || node->scalar.type == jbvNull)
					small_state = true;
				else
					small_state = NumericIsSmallInt(node->scalar.val.numeric, &state_value);
				if (small_state && NumericIsSmallInt(n, &delta))
				{
					int64		base = (node != NULL && node->kind == RN_INT) ? node->ival : state_value;
					int64		sum;

					if (!(r->op == R_ADD ? pg_add_s64_overflow(base, delta, &sum) :
						  pg_sub_s64_overflow(base, delta, &sum)))
					{
						if (node == NULL)
						{
							node = NewContainer(RN_INT);
							SetSlot(parent, idx, last, node);
						}
						node->kind = RN_INT;
						node->ival = sum;
						break;
					}
				}

				/* numeric arithmetic */
				if (node == NULL || (node->kind == RN_SCALAR && node->scalar.type == jbvNull))
					cur = int64_to_numeric(0);
				else if (node->kind == RN_INT)
					cur = int64_to_numeric(node->ival);
				else
					cur = node->scalar.val.numeric;
				res.type = jbvNumeric;
				res.val.numeric = r->op == R_ADD ?
					numeric_add_opt_error(cur, n, NULL) :
					numeric_sub_opt_error(cur, n, NULL);
				if (node != NULL)
				{
					node->kind = RN_SCALAR;		/* in place: no new node */
					node->scalar = res;
				}
				else
					SetSlot(parent, idx, last, ScalarNode(&res));
				break;
			}
		case R_APPEND:
			{
				RNode	   *arr;

				if (idx < 0)
				{
					arr = NewContainer(RN_ARRAY);
					SetSlot(parent, idx, last, arr);
				}
				else
				{
					arr = parent->vals[idx];
					if (arr->kind != RN_ARRAY)
						FoldError(f, r, "the state value is not an array");
				}
				Grow(arr);
				arr->vals[arr->n++] = FromJsonbValue(&src);
				break;
			}
		case R_REMOVE:
			break;
	}
}

/* Start folding from state (copied). */
OcxFold *
OcxFoldBegin(OcxReducer *reducer, Jsonb *state)
{
	OcxFold    *f = palloc0(sizeof(OcxFold));
	MemoryContext old;

	f->reducer = reducer;
	f->parent = CurrentMemoryContext;
	f->cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx reducer state",
								   FOLD_BLOCK_SIZES);
	f->threshold = FOLD_MIN_THRESHOLD;
	old = MemoryContextSwitchTo(f->cxt);
	f->root = FromJsonb(state);
	MemoryContextSwitchTo(old);
	if (f->root->kind != RN_OBJECT)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_APPLY_FAILED),
				 errmsg("reducer state must be a JSON object")));
	return f;
}

/* Copy the live tree out of the garbage when the context has grown. */
static void
MaybeCompact(OcxFold *f)
{
	MemoryContext fresh,
				old;
	Size		live;

	if (MemoryContextMemAllocated(f->cxt, false) < f->threshold)
		return;
	fresh = AllocSetContextCreate(f->parent, "ocx reducer state", FOLD_BLOCK_SIZES);
	old = MemoryContextSwitchTo(fresh);
	f->root = CopyNode(f->root);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(f->cxt);
	f->cxt = fresh;
	live = MemoryContextMemAllocated(fresh, false);
	f->threshold = Max(FOLD_MIN_THRESHOLD, live * 4);
}

/* Fold one event: the rules of its type, then the "*" rules. */
void
OcxFoldEvent(OcxFold *f, text *type, Jsonb *data, int64 version, TimestampTz time,
			 text *stream_id)
{
	OcxReducer *red = f->reducer;
	const char *t = VARDATA_ANY(type);
	int			len = VARSIZE_ANY_EXHDR(type);
	MemoryContext old;
	int			i,
				j;

	old = MemoryContextSwitchTo(f->cxt);
	f->version = version;
	for (i = 0; i < red->ntypes; i++)
	{
		ReducerType *rt = &red->types[i];

		if (rt->len == len && memcmp(rt->type, t, len) == 0)
		{
			f->event_type = rt->type;
			for (j = 0; j < rt->nrules; j++)
				ApplyRule(f, &rt->rules[j], data, type, version, time, stream_id);
			break;
		}
	}
	if (red->wildcard)
	{
		f->event_type = "*";
		for (j = 0; j < red->wildcard->nrules; j++)
			ApplyRule(f, &red->wildcard->rules[j], data, type, version, time, stream_id);
	}
	MemoryContextSwitchTo(old);
	MaybeCompact(f);
}

/* The folded state as jsonb (in the caller's context); frees the fold. */
Jsonb *
OcxFoldEnd(OcxFold *f)
{
	Jsonb	   *result = ToJsonb(f->root);

	MemoryContextDelete(f->cxt);
	pfree(f);
	return result;
}

/* ocx._check_reducer(jsonb): compile and throw away, for define_aggregate. */
Datum
ocx_check_reducer(PG_FUNCTION_ARGS)
{
	Jsonb	   *rules = PG_GETARG_JSONB_P(0);
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx reducer check",
											  ALLOCSET_SMALL_SIZES);
	char	   *text = JsonbToCString(NULL, &rules->root, VARSIZE(rules));

	OcxCompileReducer(text, cxt);
	MemoryContextDelete(cxt);
	PG_RETURN_VOID();
}

/* _PG_init: the definition cache compiles reducer rules here. */
void
OcxReducerInit(void)
{
	ocx_def_compilers.reducer = OcxCompileReducer;
}
