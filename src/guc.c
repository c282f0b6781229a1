/*
 * guc.c
 *		The ocx.* settings.
 *
 * Correlation and tracing settings are USERSET so that an application can
 * SET LOCAL them per transaction; their check hooks refuse malformed values at
 * SET time, so append never meets a bad one.  The size limit is SUSET: it is a
 * guard an administrator sets, not something a writer may lift.
 * ocx.horizon_warn_after is read by the database workers (horizon.c) and is
 * SIGHUP, like the workers' own settings in worker.c.
 */
#include "ocx.h"

#include <ctype.h>
#include <limits.h>

#include "utils/guc.h"
#include "utils/memutils.h"

int			ocx_max_event_size = 1024 * 1024;
char	   *ocx_correlation_id = NULL;
char	   *ocx_causation_id = NULL;
char	   *ocx_traceparent = NULL;
char	   *ocx_source = NULL;
char	   *ocx_tenant = NULL;
int			ocx_horizon_warn_after = 5 * 60 * 1000;
char	   *ocx_projection_schema = NULL;

/* Empty means unset; anything else must be a UUID. */
static bool
CheckUuidSetting(char **newval, void **extra, GucSource source)
{
	pg_uuid_t	u;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (OcxParseUuid(*newval, &u))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("The value must be a UUID such as 8c1f4f8e-2f7a-4a51-9d2e-6d6c4c1f0b3e, or empty.");
	return false;
}

/*
 * W3C Trace Context: version "-" trace-id "-" parent-id "-" flags, lowercase
 * hex of 2, 32, 16 and 2 digits.  Empty means unset.
 */
static bool
CheckTraceparent(char **newval, void **extra, GucSource source)
{
	const char *s = *newval;
	static const int lens[] = {2, 32, 16, 2};
	int			part;

	if (s == NULL || s[0] == '\0')
		return true;
	for (part = 0; part < 4; part++)
	{
		int			i;

		for (i = 0; i < lens[part]; i++, s++)
			if (!isxdigit((unsigned char) *s) || isupper((unsigned char) *s))
				goto bad;
		if (part < 3 && *s++ != '-')
			goto bad;
	}
	if (*s == '\0')
		return true;
bad:
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("The value must be a W3C traceparent such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01, or empty.");
	return false;
}

void
OcxGucInit(void)
{
	DefineCustomIntVariable("ocx.max_event_size",
							gettext_noop("Largest event (data plus metadata, in bytes) that append accepts."),
							NULL,
							&ocx_max_event_size,
							1024 * 1024, 64, (int) (MaxAllocSize / 2),
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("ocx.correlation_id",
							   gettext_noop("Correlation id stamped on appended events that carry none."),
							   NULL,
							   &ocx_correlation_id, "",
							   PGC_USERSET, 0,
							   CheckUuidSetting, NULL, NULL);

	DefineCustomStringVariable("ocx.causation_id",
							   gettext_noop("Causation id stamped on appended events that carry none."),
							   NULL,
							   &ocx_causation_id, "",
							   PGC_USERSET, 0,
							   CheckUuidSetting, NULL, NULL);

	DefineCustomStringVariable("ocx.traceparent",
							   gettext_noop("W3C traceparent stamped into the metadata of appended events that carry none."),
							   NULL,
							   &ocx_traceparent, "",
							   PGC_USERSET, 0,
							   CheckTraceparent, NULL, NULL);

	DefineCustomStringVariable("ocx.source",
							   gettext_noop("CloudEvents source given to appended events that name none."),
							   gettext_noop("Event ids are unique per source: (source, id) is the idempotency key."),
							   &ocx_source, "ocx",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("ocx.tenant",
							   gettext_noop("Tenant stamped on appended events and streams."),
							   NULL,
							   &ocx_tenant, "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("ocx.horizon_warn_after",
							gettext_noop("Age of the transaction holding the ocx log horizon past which the database worker logs a warning; 0 turns it off."),
							gettext_noop("Every ocx consumer waits for the oldest running transaction id in the cluster; the warning names its process."),
							&ocx_horizon_warn_after,
							5 * 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/* set by ocx around each handler call of a blue/green rebuild (projection.c) */
	DefineCustomStringVariable("ocx.projection_schema",
							   gettext_noop("Schema a projection handler should write its read-model tables in."),
							   gettext_noop("Set by ocx to the shadow schema while a blue/green rebuild replays "
											"the log; empty otherwise (the handler writes its own tables)."),
							   &ocx_projection_schema, "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);
}
