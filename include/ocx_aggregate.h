/*
 * ocx_aggregate.h
 *		Aggregates, snapshots, event contracts, upcasters: the per-backend
 *		definition cache and the compiled forms of declarative definitions.
 *
 * Declarative definitions (JSON Schemas, upcaster specs, reducer rules) are
 * parsed once with json-c into the C structures below, kept in the
 * definition cache (defcache.c) and used without touching json-c again.
 */
#ifndef OCX_AGGREGATE_H
#define OCX_AGGREGATE_H

#include "ocx.h"

#include "nodes/pg_list.h"

#define OCX_TYPE_KEYSIZE	257		/* event types: up to 256 bytes + NUL */
#define OCX_AGG_KEYSIZE		257		/* aggregate types likewise */

/* contract.c: a compiled JSON Schema (the subset in docs/contracts.md) */
typedef struct OcxSchema OcxSchema;

/* upcast.c: one compiled upcaster (a function or declarative steps) */
typedef struct OcxUpcaster
{
	Oid			transform;		/* InvalidOid for declarative steps */
	Oid			definer;		/* the transform runs as this role */
	bool		transform_exists;
	bool		transform_ok;	/* exists and is (jsonb) -> jsonb */
	FmgrInfo	flinfo;
	int			nsteps;
	struct OcxUpcastStep *steps;
	char	   *error;			/* set when the stored spec does not compile */
} OcxUpcaster;

/* reducer.c: compiled reducer rules */
typedef struct OcxReducer OcxReducer;

typedef struct OcxEventTypeDef
{
	char		type[OCX_TYPE_KEYSIZE]; /* hash key */
	int32		schema_version;
	OcxSchema  *schema;			/* NULL: no validation */
	char	   *schema_error;	/* set when the stored schema does not compile */
	OcxUpcaster **upcasters;	/* [v] upcasts v -> v + 1, v = 1 .. nupcasters - 1 */
	int32		nupcasters;		/* length of upcasters: sized by the upcasters
								 * that exist, never by schema_version */
} OcxEventTypeDef;

/*
 * Bounds of definitions (docs/contracts.md#bounds), refused with
 * OX112 definition_out_of_bounds.
 */
#define OCX_MAX_SCHEMA_VERSION		10000
#define OCX_MAX_DEFINITION_SIZE		(1024 * 1024)	/* bytes of JSON text */
#define OCX_MAX_DEFINITION_DEPTH	32	/* JSON nesting levels */

typedef struct OcxAggregateDef
{
	char		name[OCX_AGG_KEYSIZE];	/* hash key */
	Oid			apply;			/* InvalidOid with a reducer */
	Oid			definer;		/* apply runs as this role */
	bool		apply_exists;
	bool		apply_ok;		/* exists and is (jsonb, ocx.event) -> jsonb */
	FmgrInfo	apply_flinfo;
	OcxReducer *reducer;
	char	   *reducer_error;	/* set when the stored rules do not compile */
	Jsonb	   *initial_state;
	int32		snapshot_every; /* 0: no automatic snapshots */
	int64		definition_version;
	int64		fingerprint;	/* of the apply function's body and the upcasters */
} OcxAggregateDef;

/*
 * defcache.c keeps the compiled forms of definitions but does not compile
 * them: it stands below the subsystems whose definitions it keeps, and each of
 * them sets its compiler here from its Init (_PG_init), as PostgreSQL's hooks
 * are set.  A cache built before all three are set is a bug (elog ERROR).
 */
typedef struct OcxDefCompilers
{
	OcxSchema  *(*schema) (const char *json, MemoryContext cxt);	/* contract.c */
	OcxUpcaster *(*upcaster) (Oid transform, const char *spec,
							  MemoryContext cxt);	/* upcast.c */
	OcxReducer *(*reducer) (const char *json, MemoryContext cxt);	/* reducer.c */
} OcxDefCompilers;

extern PGDLLIMPORT OcxDefCompilers ocx_def_compilers;

/* defcache.c */
extern bool OcxFunctionHasSignature(Oid fn, int nargs, const Oid *argtypes, Oid rettype);
extern void OcxDefCachePin(void);
extern void OcxDefCacheUnpin(void);
extern OcxEventTypeDef *OcxLookupEventType(const char *type, int len);
extern OcxAggregateDef *OcxLookupAggregate(const char *name, int len);
extern bool OcxAnyUpcasting(void);

/* contract.c */
extern void OcxContractInit(void);

/* upcast.c */
extern void OcxUpcastInit(void);
extern int32 OcxUpcastTarget(OcxEventTypeDef *def, int32 from_version);
extern Jsonb *OcxUpcastData(OcxEventTypeDef *def, int32 from_version, Jsonb *data);
extern Datum OcxUpcastEvent(Datum event);

/* reducer.c */
extern void OcxReducerInit(void);
typedef struct OcxFold OcxFold;
extern OcxFold *OcxFoldBegin(OcxReducer *reducer, Jsonb *state);
extern void OcxFoldEvent(OcxFold *fold, text *type, Jsonb *data, int64 version,
						 TimestampTz time, text *stream_id);
extern Jsonb *OcxFoldEnd(OcxFold *fold);

#endif							/* OCX_AGGREGATE_H */
