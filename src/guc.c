/*
 * guc.c
 *		The ocx.* settings.
 *
 * Correlation and tracing settings are USERSET so that an application can
 * SET LOCAL them per transaction; their check hooks refuse malformed values at
 * SET time, so append never meets a bad one.  The size limit is SUSET: it is a
 * guard an administrator sets, not something a writer may lift.
 * ocx.horizon_warn_after is read by the database workers (horizon.c) and is
 * SIGHUP, like the workers' own settings (ocx.naptime, ocx.batch_size,
 * ocx.databases, ocx.max_workers), defined here too so that the workers'
 * code (worker.c, pool.c) and what it runs read them from below.
 */
#include "ocx.h"

#include <ctype.h>
#include <limits.h>

#include "ocx_worker.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"
#include "utils/memutils.h"

int			ocx_max_event_size = 1024 * 1024;
char	   *ocx_correlation_id = NULL;
char	   *ocx_causation_id = NULL;
char	   *ocx_traceparent = NULL;
char	   *ocx_source = NULL;
char	   *ocx_tenant = NULL;
int			ocx_horizon_warn_after = 5 * 60 * 1000;
static char *ocx_projection_schema = NULL;

/* the workers' settings (worker.c, pool.c) */
int			ocx_naptime = 5000;
int			ocx_batch_size = 1000;
static char *ocx_databases = NULL;
int			ocx_max_workers = 4;

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

	/* the workers' settings: read by worker.c and pool.c, defined with or without preloading */
	DefineCustomIntVariable("ocx.naptime",
							gettext_noop("Longest time an ocx worker sleeps when nothing wakes it."),
							gettext_noop("Appends wake the worker at commit; this is the fallback."),
							&ocx_naptime,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ocx.batch_size",
							gettext_noop("Events an async projection applies per transaction."),
							NULL,
							&ocx_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ocx.max_workers",
							gettext_noop("Most ocx processes per database (its worker and helpers) that run projections, the bus, commands and sagas."),
							gettext_noop("Helpers start only while every process of the database is busy on a slow unit; each is a background worker: count them in max_worker_processes."),
							&ocx_max_workers,
							4, 1, OCX_MAX_POOL,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("ocx.databases",
							   gettext_noop("Databases the ocx workers serve (comma-separated); empty means every database with ocx installed."),
							   NULL,
							   &ocx_databases, "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   NULL, NULL, NULL);

}

/* Whether ocx.databases names this database (empty: every database). */
bool
OcxDatabaseServed(void)
{
	char	   *list;
	List	   *names;
	ListCell   *lc;
	char	   *me;
	bool		found = false;

	if (ocx_databases == NULL || ocx_databases[0] == '\0')
		return true;
	me = get_database_name(MyDatabaseId);
	if (me == NULL)
		return false;
	list = pstrdup(ocx_databases);
	if (!SplitIdentifierString(list, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), me) == 0)
			found = true;
	return found;
}

/* The session's tenant as stored in tenant_id: NULL for none (ocx.tenant unset or ''). */
const char *
OcxSessionTenant(void)
{
	return (ocx_tenant && ocx_tenant[0] != '\0') ? ocx_tenant : NULL;
}

/*
 * Whether a row's tenant_id is the session's, as the tenant policies read
 * it: COALESCE(tenant_id, '') = COALESCE(ocx.tenant, '').
 */
bool
OcxTenantIsSessions(Datum tenant, bool isnull)
{
	const char *mine = OcxSessionTenant();
	text	   *t;

	if (isnull)
		return mine == NULL;
	t = DatumGetTextPP(tenant);
	if (mine == NULL)
		return VARSIZE_ANY_EXHDR(t) == 0;
	return VARSIZE_ANY_EXHDR(t) == strlen(mine) &&
		memcmp(VARDATA_ANY(t), mine, VARSIZE_ANY_EXHDR(t)) == 0;
}
