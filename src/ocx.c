/*
 * ocx.c
 *		Module entry point: _PG_init calls each subsystem's Init.
 *
 * The lower files call nothing of the subsystems above them: the subsystems
 * register what those files need here, through their Inits (the definition
 * cache's compilers, the append path's hooks; ocx.h, ocx_aggregate.h).
 *
 * Everything that does not need a background worker works when the library is
 * loaded on first use; the workers and shared memory need
 * shared_preload_libraries = 'ocx' (OcxWorkerInit and OcxShmemInit check
 * process_shared_preload_libraries_in_progress themselves).
 */
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_bus.h"

#include "utils/guc.h"
#include "utils/inval.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);

/*
 * The one relcache callback of ocx: a backend has room for ten
 * (MAX_RELCACHE_CALLBACKS), shared with every other loaded extension
 * (Citus registers several), so the caches of ocx's subsystems share one.
 */
static void
OcxRelcacheCallback(Datum arg, Oid relid)
{
	OcxDefCacheRelcacheCallback(arg, relid);
	OcxLogSpaceRelcacheCallback(arg, relid);
	OcxPrivacyRelcacheCallback(arg, relid);
	OcxInlineRelcacheCallback(arg, relid);
	OcxCitusRelcacheCallback(arg, relid);
}

void
_PG_init(void)
{
	OcxGucInit();
	CacheRegisterRelcacheCallback(OcxRelcacheCallback, (Datum) 0);
	/* the compilers of definitions and the hooks of the append path */
	OcxContractInit();
	OcxUpcastInit();
	OcxReducerInit();
	OcxProjectionInit();
	OcxBusInit();
	OcxShmemInit();
	OcxWaitForInit();
	OcxMetricsInit();
	OcxWorkerInit();
	OcxAppendersInit();
	OcxIntegrityInit();
	OcxPrivacyInit();

	/* after every subsystem has defined its settings */
	MarkGUCPrefixReserved("ocx");
}
