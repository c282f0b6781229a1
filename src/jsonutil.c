/*
 * jsonutil.c
 *		Small helpers over PostgreSQL's jsonb API, UUID and timestamp parsing,
 *		and the json-c parse that the compilers of definitions share.
 *
 * The parsers of UUIDs and timestamps return false instead of raising, so that
 * callers can raise an ocx error that names the offending field (the datatype
 * input functions would raise 22P02/22007 with no context, and catching those
 * needs a subtransaction).
 */
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_errors.h"

#include <ctype.h>

#include "utils/datetime.h"

#include "ocx_jsonc.h"

/* Hex value of c, or -1. */
static int
HexValue(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parse a UUID in the canonical 8-4-4-4-12 form or as 32 bare hex digits
 * (what clients actually send); braces and other variants are refused.
 */
bool
OcxParseUuid(const char *str, pg_uuid_t *out)
{
	size_t		len = strlen(str);
	bool		hyphens;
	int			i,
				j = 0;

	if (len == 36)
		hyphens = true;
	else if (len == 32)
		hyphens = false;
	else
		return false;

	for (i = 0; i < (int) len;)
	{
		int			hi,
					lo;

		if (hyphens && (i == 8 || i == 13 || i == 18 || i == 23))
		{
			if (str[i] != '-')
				return false;
			i++;
			continue;
		}
		hi = HexValue(str[i]);
		lo = HexValue(str[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out->data[j++] = (unsigned char) ((hi << 4) | lo);
		i += 2;
	}
	return j == UUID_LEN;
}

/* n decimal digits at s, within [lo, hi]. */
static bool
Digits(const char *s, int n, int lo, int hi)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	return v >= lo && v <= hi;
}

/*
 * Is str an RFC 3339 date-time (section 5.6)?  YYYY-MM-DD, "T" (or "t", or
 * the space RFC 3339 allows), hh:mm:ss, an optional fraction of one or more
 * digits, and a zone: "Z" (or "z") or +hh:mm / -hh:mm.  The zone is required.
 * Calendar checks (February 30) are left to the decoder.
 */
static bool
IsRfc3339(const char *s)
{
	if (!Digits(s, 4, 0, 9999) || s[4] != '-' || !Digits(s + 5, 2, 1, 12) ||
		s[7] != '-' || !Digits(s + 8, 2, 1, 31))
		return false;
	s += 10;
	if (*s != 'T' && *s != 't' && *s != ' ')
		return false;
	s++;
	if (!Digits(s, 2, 0, 23) || s[2] != ':' || !Digits(s + 3, 2, 0, 59) ||
		s[5] != ':' || !Digits(s + 6, 2, 0, 60))
		return false;
	s += 8;
	if (*s == '.')
	{
		s++;
		if (*s < '0' || *s > '9')
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'Z' || *s == 'z')
		return s[1] == '\0';
	if (*s != '+' && *s != '-')
		return false;
	return Digits(s + 1, 2, 0, 23) && s[3] == ':' && Digits(s + 4, 2, 0, 59) && s[6] == '\0';
}

/*
 * Parse an RFC 3339 timestamp (see IsRfc3339) without raising; anything
 * else (PostgreSQL's "yesterday", "J2451187", a missing zone) is refused.
 * Only finite timestamps are accepted.
 */
bool
OcxParseTimestamp(const char *str, TimestampTz *out)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	int			tz = 0;
	struct pg_tm tt,
			   *tm = &tt;
	fsec_t		fsec;

	if (strlen(str) >= MAXDATELEN || !IsRfc3339(str))
		return false;
	if (ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nf) != 0)
		return false;
	if (DecodeDateTime(field, ftype, nf, &dtype, tm, &fsec, &tz) != 0)
		return false;
	if (dtype != DTK_DATE)
		return false;
	if (tm2timestamp(tm, fsec, &tz, out) != 0)
		return false;
	return !TIMESTAMP_NOT_FINITE(*out);
}

/*
 * RFC 3339 in UTC ("2024-05-01T12:00:00.5Z"), trailing zero fractions
 * dropped: the form CloudEvents and most JSON clients expect.
 */
char *
OcxFormatTimestamp(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char		frac[16] = "";

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	if (fsec != 0)
	{
		int			n;

		snprintf(frac, sizeof(frac), ".%06d", (int) fsec);
		n = strlen(frac);
		while (frac[n - 1] == '0')
			frac[--n] = '\0';
	}
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d%sZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* A palloc'd, NUL-terminated copy of a jbvString. */
char *
OcxJsonbString(JsonbValue *v)
{
	Assert(v->type == jbvString);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A jsonb datum holding the value v (a scalar or a jbvBinary container). */
Jsonb *
OcxJsonbFromBinary(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

Jsonb *
OcxEmptyObject(void)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* Look up key in an object container; false when absent. */
bool
OcxJsonbGet(JsonbContainer *obj, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), out) != NULL;
}

/* A copy of object obj with key set to val (added or replaced). */
Jsonb *
OcxJsonbSetKey(Jsonb *obj, const char *key, JsonbValue *val)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	size_t		keylen = strlen(key);

	Assert(JB_ROOT_IS_OBJECT(obj));
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(&obj->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (k.val.string.len == (int) keylen &&
			memcmp(k.val.string.val, key, keylen) == 0)
			continue;
		pushJsonbValue(&state, WJB_KEY, &k);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	OcxPushValue(&state, key, val);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

const char *
OcxJsonbTypeName(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvArray:
			return "array";
		case jbvObject:
			return "object";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "object" :
				(JsonContainerIsScalar(v->val.binary.data) ? "scalar" : "array");
		default:
			return "unknown";
	}
}

void
OcxPushValue(JsonbParseState **state, const char *key, JsonbValue *val)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_VALUE, val);
}

void
OcxPushString(JsonbParseState **state, const char *key, const char *val)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) val;
	v.val.string.len = strlen(val);
	OcxPushValue(state, key, &v);
}

/*
 * Parse the JSON text of a definition with json-c; the caller owns (and must
 * put) the result.  code is raised on malformed text.
 */
json_object *
OcxParseJsonC(const char *json, int code, const char *what)
{
	enum json_tokener_error err;
	json_tokener *tok;
	json_object *o;
	size_t		len = strlen(json);

	/* bounds first: a definition never costs more than they allow */
	if (len > OCX_MAX_DEFINITION_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_DEFINITION_OUT_OF_BOUNDS),
				 errmsg("JSON of %s is too large", what),
				 errdetail("It takes %zu bytes as JSON text; the limit is %d bytes.",
						   len, OCX_MAX_DEFINITION_SIZE),
				 errhint("Split the definition or simplify it.")));
	tok = json_tokener_new_ex(OCX_MAX_DEFINITION_DEPTH);
	if (tok == NULL)
		elog(ERROR, "ocx: out of memory in json_tokener_new_ex");
	o = json_tokener_parse_ex(tok, json, (int) len);
	err = json_tokener_get_error(tok);
	if (err == json_tokener_continue)
		err = json_tokener_error_parse_eof;
	json_tokener_free(tok);
	if (err == json_tokener_error_depth)
	{
		if (o != NULL)
			json_object_put(o);
		ereport(ERROR,
				(errcode(ERRCODE_OCX_DEFINITION_OUT_OF_BOUNDS),
				 errmsg("JSON of %s is nested too deeply", what),
				 errdetail("JSON nesting is limited to %d levels.", OCX_MAX_DEFINITION_DEPTH),
				 errhint("Flatten the definition.")));
	}
	if (err != json_tokener_success)
	{
		if (o != NULL)
			json_object_put(o);
		ereport(ERROR,
				(errcode(code),
				 errmsg("could not parse %s", what),
				 errdetail("%s.", json_tokener_error_desc(err))));
	}
	return o;
}
