/*
 * names.c
 *		The one name rule of every object ocx defines by name.
 *
 * Projections, subscriptions, sagas, modules, event types, command types and
 * aggregate types are all named by the same rule (docs/reference.md,
 * "Vocabulary"): 1 to 63 bytes, the first a letter (A-Z, a-z) or "_", the
 * others letters, digits, "_", ".", ":" or "-".  Only ASCII is allowed, so
 * bytes and characters are the same count, and a name fits a PostgreSQL
 * identifier (NAMEDATALEN - 1) and a LISTEN channel.  Every define_X calls
 * ocx._check_name(kind, name) before it writes anything; a name that breaks
 * the rule is OX500 invalid_name, the same code for every kind.  No shared
 * state here.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(ocx_check_name);

#define OCX_MAX_NAME	63

#define OCX_NAME_RULE_DETAIL \
	"A name is 1 to 63 bytes: letters, digits, \"_\", \".\", \":\" or \"-\", starting with a letter or \"_\"."

/* ASCII only: isalpha() would follow the locale and let other bytes in. */
static inline bool
NameStartChar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static inline bool
NameChar(unsigned char c)
{
	return NameStartChar(c) || (c >= '0' && c <= '9') || c == '.' || c == ':' || c == '-';
}

/*
 * Raise OX500 unless name (len bytes, not NUL-terminated) follows the rule.
 * kind ("projection", "saga", ...) only words the message.
 */
static void
OcxCheckName(const char *kind, const char *name, int len)
{
	int			i;

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_NAME),
				 errmsg("%s name must not be empty", kind),
				 errdetail(OCX_NAME_RULE_DETAIL)));
	if (len > OCX_MAX_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_NAME),
				 errmsg("%s name is too long", kind),
				 errdetail("It has %d bytes; the limit is %d.", len, OCX_MAX_NAME)));
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (i == 0 ? !NameStartChar(c) : !NameChar(c))
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_NAME),
					 errmsg("invalid %s name \"%s\"", kind,
							pnstrdup(name, len)),
					 errdetail(OCX_NAME_RULE_DETAIL),
					 errhint("Byte %d is not allowed there.", i + 1)));
	}
}

/*
 * ocx._check_name(kind text, name text) returns name when it follows the
 * rule, else raises OX500 (also for NULL).  Called by every define_X.
 */
Datum
ocx_check_name(PG_FUNCTION_ARGS)
{
	const char *kind = PG_ARGISNULL(0) ? "object" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *name;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_NAME),
				 errmsg("%s name must not be null", kind),
				 errdetail(OCX_NAME_RULE_DETAIL)));
	name = PG_GETARG_TEXT_PP(1);
	OcxCheckName(kind, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	PG_RETURN_TEXT_P(name);
}
