/*
 * defcache.c
 *		The per-backend cache of event types, upcasters and aggregates.
 *
 * Append validates every event against its type's contract and every read
 * upcasts every row, so neither may query the definition tables per event.
 * The first use in a backend reads the three (small) definition tables with
 * SPI, compiles the declarative parts (JSON Schemas, upcaster specs, reducer
 * rules) and keeps the result in a memory context under CacheMemoryContext.
 * The compilers belong to contract.c, upcast.c and reducer.c, which use this
 * cache: each registers its own in ocx_def_compilers at _PG_init, so this
 * file calls none of theirs by name.
 *
 * Invalidation: a statement trigger on each definition table calls
 * CacheInvalidateRelcacheByRelid, and our relcache callback marks the cache
 * stale when it sees one of those tables (or a full reset).  The message is
 * processed locally at the next CommandCounterIncrement and by other backends
 * when they next accept invalidations after our commit; an abort replays it,
 * so a cache built from uncommitted definitions never survives.  A syscache
 * callback on pg_proc does the same for CREATE OR REPLACE / DROP of apply
 * and transform functions.
 *
 * A stale cache is rebuilt at the next lookup, unless it is pinned: load()
 * pins it while it folds a stream, because the apply function may run SQL
 * that processes invalidations and we hold pointers into the cache.  The pin
 * is dropped when the caller finishes or fails, and at transaction end as
 * a backstop.
 *
 * There is no shared state: each backend has its own cache.
 */
#include "ocx.h"
#include "ocx_aggregate.h"
#include "ocx_errors.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ocx_definitions_changed);

static const char *const def_tables[] = {"event_types", "upcasters", "aggregates"};
#define NUM_DEF_TABLES lengthof(def_tables)

static MemoryContext cache_cxt = NULL;
static HTAB *types_hash = NULL;
static HTAB *aggs_hash = NULL;
static bool cache_valid = false;
static bool any_upcasting = false;
static Oid	def_relids[NUM_DEF_TABLES];
static int	pin_count = 0;
static uint64 inval_count = 0;	/* invalidations seen, to detect one during a build */
static uint64 build_count = 0;	/* caches built: lookups remembered per build */
static bool callbacks_registered = false;

/* How to compile each kind of definition (set by its owner, ocx_aggregate.h) */
OcxDefCompilers ocx_def_compilers = {NULL, NULL, NULL};

/* Any change to a definition table (or a full reset) makes the cache stale. */
void
OcxDefCacheRelcacheCallback(Datum arg, Oid relid)
{
	int			i;

	if (relid == InvalidOid)
	{
		cache_valid = false;
		inval_count++;
		return;
	}
	for (i = 0; i < (int) NUM_DEF_TABLES; i++)
		if (def_relids[i] == relid)
		{
			cache_valid = false;
			inval_count++;
		}
}

/* A function changed: its body may be an apply or transform we compiled. */
static void
ProcCallback(Datum arg, int cacheid, uint32 hashvalue)
{
	cache_valid = false;
	inval_count++;
}

/* Pins never outlive the transaction, even if a caller missed an unpin. */
static void
DefCacheXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		pin_count = 0;
}

/* Once per backend: the callbacks that keep the cache honest. */
static void
RegisterCallbacks(void)
{
	if (callbacks_registered)
		return;
	/* the relcache callback is ocx.c's, one for all of ocx */
	CacheRegisterSyscacheCallback(PROCOID, ProcCallback, (Datum) 0);
	RegisterXactCallback(DefCacheXactCallback, NULL);
	callbacks_registered = true;
}

/* Body of a function, hashed: a CREATE OR REPLACE changes the fingerprint. */
static uint64
ProcFingerprint(Oid fn, bool *exists)
{
	HeapTuple	tup;
	uint64		h = 0;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	*exists = HeapTupleIsValid(tup);
	if (*exists)
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);

		if (!isnull)
		{
			text	   *t = DatumGetTextPP(src);

			/* no OID in the seed: snapshots stay usable across dump and restore */
			h = hash_bytes_extended((unsigned char *) VARDATA_ANY(t),
									VARSIZE_ANY_EXHDR(t), 0);
		}
		ReleaseSysCache(tup);
	}
	return h;
}

/*
 * Does fn exist as a plain, non-set-returning function with exactly these
 * argument and result types?  The define functions check this, but the
 * tables can be changed by hand, and calling a function through fmgr with
 * the wrong argument types would read garbage.
 */
bool
OcxFunctionHasSignature(Oid fn, int nargs, const Oid *argtypes, Oid rettype)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc p;
	bool		ok;
	int			i;

	if (!HeapTupleIsValid(tup))
		return false;
	p = (Form_pg_proc) GETSTRUCT(tup);
	ok = p->prokind == PROKIND_FUNCTION && !p->proretset && p->prorettype == rettype &&
		p->pronargs == nargs;
	for (i = 0; ok && i < nargs; i++)
		ok = p->proargtypes.values[i] == argtypes[i];
	ReleaseSysCache(tup);
	return ok;
}

/* Column col of row r of the last SPI result as a C string, or NULL. */
static char *
SpiString(int r, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col);
}

/* Column col of row r of the last SPI result as a datum. */
static Datum
SpiDatum(int r, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col, isnull);
}

/* A read-only query over the definition tables; any failure is a bug. */
static void
SpiRun(const char *sql)
{
	int			rc = SPI_execute(sql, true, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ocx: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
}

/*
 * Compile one stored declarative definition (schema, upcaster spec or
 * reducer rules).  The define functions refuse definitions that do not
 * compile, but the tables can be changed by hand or restored from another
 * version: one bad row must fail only the uses of that definition, not every
 * append and read in the database.  So the compile runs in a subtransaction
 * and an error becomes a message kept in the cache (*error).  In parallel
 * mode, where subtransactions are not allowed, errors propagate.
 */
typedef void *(*CompileFn) (const char *text, MemoryContext cxt, void *arg);

typedef struct CompileRun
{
	CompileFn	fn;
	const char *text;
	MemoryContext cxt;
	void	   *arg;
	void	   *result;
} CompileRun;

static void
CompileOnce(void *arg)
{
	CompileRun *run = (CompileRun *) arg;

	run->result = run->fn(run->text, run->cxt, run->arg);
}

static void *
TryCompile(CompileFn fn, const char *text, MemoryContext cxt, void *arg, char **error)
{
	CompileRun	run = {fn, text, cxt, arg, NULL};
	ErrorData  *edata;

	*error = NULL;
	if (IsInParallelMode())
		return fn(text, cxt, arg);

	edata = OcxInSubtransaction(CompileOnce, &run);
	if (edata == NULL)
		return run.result;
	*error = MemoryContextStrdup(cxt, edata->detail ?
								 psprintf("%s: %s", edata->message, edata->detail) :
								 edata->message);
	FreeErrorData(edata);
	return NULL;
}

static void *
CompileSchemaFn(const char *text, MemoryContext cxt, void *arg)
{
	return ocx_def_compilers.schema(text, cxt);
}

static void *
CompileUpcasterFn(const char *text, MemoryContext cxt, void *arg)
{
	return ocx_def_compilers.upcaster(InvalidOid, text, cxt);
}

static void *
CompileReducerFn(const char *text, MemoryContext cxt, void *arg)
{
	return ocx_def_compilers.reducer(text, cxt);
}

/* A string-keyed hash table in cxt, so that it goes with the cache. */
static HTAB *
MakeHash(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	ctl.keysize = OCX_TYPE_KEYSIZE;
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * Read and compile every definition.  Built in a context under the caller's
 * context and moved under CacheMemoryContext only when complete, so an error
 * (a definition that no longer compiles) leaves nothing behind.
 */
static void
BuildCache(void)
{
	MemoryContext cxt,
				old;
	HTAB	   *types,
			   *aggs;
	Oid			nsp;
	uint64		upcaster_hash = 0;
	bool		upcasting = false;
	int			i;
	uint64		r;
	uint64		start_count;
	Oid			event_typid;

	/* set by contract.c, upcast.c and reducer.c from _PG_init */
	if (ocx_def_compilers.schema == NULL || ocx_def_compilers.upcaster == NULL ||
		ocx_def_compilers.reducer == NULL)
		elog(ERROR, "ocx: definition cache built before its compilers were registered");

	RegisterCallbacks();
	start_count = inval_count;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "ocx definition cache",
								ALLOCSET_SMALL_SIZES);
	types = MakeHash("ocx event types", sizeof(OcxEventTypeDef), cxt);
	aggs = MakeHash("ocx aggregates", sizeof(OcxAggregateDef), cxt);

	nsp = get_namespace_oid(OCX_SCHEMA, true);
	event_typid = OidIsValid(nsp) ?
		GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("event"),
						ObjectIdGetDatum(nsp)) : InvalidOid;
	for (i = 0; i < (int) NUM_DEF_TABLES; i++)
		def_relids[i] = OidIsValid(nsp) ? get_relname_relid(def_tables[i], nsp) : InvalidOid;

	if (OidIsValid(def_relids[0]) && OidIsValid(def_relids[1]) && OidIsValid(def_relids[2]))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "ocx: SPI_connect failed");

		SpiRun("SELECT type, schema_version, schema::pg_catalog.text FROM ocx.event_types");
		for (r = 0; r < SPI_processed; r++)
		{
			char	   *type = SpiString(r, 1);
			char	   *schema = SpiString(r, 3);
			bool		isnull;
			int32		version = DatumGetInt32(SpiDatum(r, 2, &isnull));
			OcxEventTypeDef *def;

			if (strlen(type) >= OCX_TYPE_KEYSIZE)
				continue;		/* longer than any appendable type */
			def = hash_search(types, type, HASH_ENTER, NULL);
			/* dynahash fills in only the key */
			memset((char *) def + offsetof(OcxEventTypeDef, schema_version), 0,
				   sizeof(OcxEventTypeDef) - offsetof(OcxEventTypeDef, schema_version));
			def->schema_version = version;
			def->schema = schema ?
				TryCompile(CompileSchemaFn, schema, cxt, NULL, &def->schema_error) : NULL;
			/* sized by the upcasters found below, not by the version */
			def->upcasters = NULL;
			def->nupcasters = 0;
			if (version > 1)
				upcasting = true;
			upcaster_hash = hash_combine64(upcaster_hash,
										   hash_bytes_extended((unsigned char *) type, strlen(type), version));
		}

		SpiRun("SELECT type, from_schema_version, transform::pg_catalog.oid, spec::pg_catalog.text, "
			   "definer::pg_catalog.oid FROM ocx.upcasters ORDER BY type, from_schema_version");
		for (r = 0; r < SPI_processed; r++)
		{
			char	   *type = SpiString(r, 1);
			bool		isnull;
			int32		from = DatumGetInt32(SpiDatum(r, 2, &isnull));
			Datum		fn = SpiDatum(r, 3, &isnull);
			Oid			transform = isnull ? InvalidOid : DatumGetObjectId(fn);
			char	   *spec = SpiString(r, 4);
			OcxEventTypeDef *def;
			OcxUpcaster *up;

			if (strlen(type) >= OCX_TYPE_KEYSIZE)
				continue;
			def = hash_search(types, type, HASH_FIND, NULL);
			if (def == NULL || from < 1 || from >= def->schema_version)
				continue;		/* dormant: beyond the current version */
			if (from > OCX_MAX_SCHEMA_VERSION)
				continue;		/* out of bounds: only a hand edit writes one */
			if (from >= def->nupcasters)
			{
				/* rows come in from_schema_version order: grow to fit */
				int32		n = from + 1;
				OcxUpcaster **arr = MemoryContextAllocZero(cxt, sizeof(OcxUpcaster *) * n);

				if (def->upcasters != NULL)
					memcpy(arr, def->upcasters, sizeof(OcxUpcaster *) * def->nupcasters);
				def->upcasters = arr;
				def->nupcasters = n;
			}
			if (OidIsValid(transform))
				up = ocx_def_compilers.upcaster(transform, NULL, cxt);
			else
			{
				char	   *error;

				up = TryCompile(CompileUpcasterFn, spec, cxt, NULL, &error);
				if (up == NULL)
				{
					up = MemoryContextAllocZero(cxt, sizeof(OcxUpcaster));
					up->error = error;
				}
			}
			up->definer = DatumGetObjectId(SpiDatum(r, 5, &isnull));
			def->upcasters[from] = up;
			if (OidIsValid(transform))
			{
				bool		exists;

				upcaster_hash = hash_combine64(upcaster_hash, ProcFingerprint(transform, &exists));
			}
			else
				upcaster_hash = hash_combine64(upcaster_hash,
											   hash_bytes_extended((unsigned char *) spec, strlen(spec), from));
		}

		SpiRun("SELECT aggregate_type, apply::pg_catalog.oid, reducer::pg_catalog.text, initial_state, "
			   "snapshot_every, definition_version, definer::pg_catalog.oid FROM ocx.aggregates");
		for (r = 0; r < SPI_processed; r++)
		{
			char	   *name = SpiString(r, 1);
			char	   *reducer = SpiString(r, 3);
			bool		isnull;
			Datum		d;
			OcxAggregateDef *def;
			uint64		fp = upcaster_hash;

			if (strlen(name) >= OCX_AGG_KEYSIZE)
				continue;
			def = hash_search(aggs, name, HASH_ENTER, NULL);
			memset((char *) def + offsetof(OcxAggregateDef, apply), 0,
				   sizeof(OcxAggregateDef) - offsetof(OcxAggregateDef, apply));
			d = SpiDatum(r, 2, &isnull);
			def->apply = isnull ? InvalidOid : DatumGetObjectId(d);
			def->apply_exists = false;
			def->apply_ok = false;
			if (OidIsValid(def->apply))
			{
				Oid			argtypes[2] = {JSONBOID, event_typid};

				fp = hash_combine64(fp, ProcFingerprint(def->apply, &def->apply_exists));
				def->apply_ok = def->apply_exists &&
					OcxFunctionHasSignature(def->apply, 2, argtypes, JSONBOID);
				if (def->apply_ok)
					fmgr_info_cxt(def->apply, &def->apply_flinfo, cxt);
			}
			def->reducer = reducer ?
				TryCompile(CompileReducerFn, reducer, cxt, NULL, &def->reducer_error) : NULL;
			d = SpiDatum(r, 4, &isnull);
			old = MemoryContextSwitchTo(cxt);
			def->initial_state = DatumGetJsonbPCopy(d);
			MemoryContextSwitchTo(old);
			d = SpiDatum(r, 5, &isnull);
			def->snapshot_every = isnull ? 0 : DatumGetInt32(d);
			def->definition_version = DatumGetInt64(SpiDatum(r, 6, &isnull));
			def->definer = DatumGetObjectId(SpiDatum(r, 7, &isnull));
			def->fingerprint = (int64) fp;
		}
		SPI_finish();
	}

	/* complete: replace the old cache */
	MemoryContextSetParent(cxt, CacheMemoryContext);
	if (cache_cxt != NULL)
		MemoryContextDelete(cache_cxt);
	cache_cxt = cxt;
	build_count++;
	types_hash = types;
	aggs_hash = aggs;
	any_upcasting = upcasting;
	/* a definition that changed while we read stays stale: rebuild next time */
	cache_valid = (inval_count == start_count);
}

/*
 * The cache, rebuilt first if stale and not pinned.  Unpinned, it first takes
 * in the invalidations other backends sent: a backend that already holds
 * every lock it needs (the worker's long transactions) processes none until
 * its next new lock, while each statement's new snapshot already sees the
 * definitions they committed, so a definition committed with an event was
 * missing when that event was read (t/194: the saga got an old event
 * without its upcast).  The check is one read of a shared flag when nothing
 * was sent.
 */
static void
EnsureCache(void)
{
	if (pin_count == 0)
		AcceptInvalidationMessages();
	if (!cache_valid && (pin_count == 0 || cache_cxt == NULL))
		BuildCache();
}

/* Keep the cache's memory in place while the caller holds pointers into it. */
void
OcxDefCachePin(void)
{
	EnsureCache();
	pin_count++;
}

/* Undo one OcxDefCachePin; a stale cache is rebuilt at the next lookup. */
void
OcxDefCacheUnpin(void)
{
	if (pin_count > 0)
		pin_count--;
}

/*
 * The registered event type (len bytes, not NUL-terminated), or NULL.
 * Reads call this twice per row (data and version) and streams are runs of
 * few types, so the last answer is remembered until the cache is rebuilt.
 */
OcxEventTypeDef *
OcxLookupEventType(const char *type, int len)
{
	static char last_key[OCX_TYPE_KEYSIZE];
	static int	last_len = -1;
	static uint64 last_build = 0;
	static OcxEventTypeDef *last_def = NULL;

	EnsureCache();
	if (len >= OCX_TYPE_KEYSIZE || hash_get_num_entries(types_hash) == 0)
		return NULL;
	if (len == last_len && last_build == build_count && memcmp(type, last_key, len) == 0)
		return last_def;
	memcpy(last_key, type, len);
	last_key[len] = '\0';
	last_len = len;
	last_build = build_count;
	last_def = hash_search(types_hash, last_key, HASH_FIND, NULL);
	return last_def;
}

/* The defined aggregate (len bytes), or NULL. */
OcxAggregateDef *
OcxLookupAggregate(const char *name, int len)
{
	char		key[OCX_AGG_KEYSIZE];

	EnsureCache();
	if (len >= OCX_AGG_KEYSIZE)
		return NULL;
	memcpy(key, name, len);
	key[len] = '\0';
	return hash_search(aggs_hash, key, HASH_FIND, NULL);
}

/* False when no event type is past version 1: nothing can need upcasting. */
bool
OcxAnyUpcasting(void)
{
	EnsureCache();
	return any_upcasting;
}

/*
 * Statement trigger on the definition tables: tell every backend (this one
 * at the next command) that its cache is stale.
 */
Datum
ocx_definitions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ocx._definitions_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	/* the current backend may also read definitions later in this command */
	cache_valid = false;
	PG_RETURN_POINTER(NULL);
}
