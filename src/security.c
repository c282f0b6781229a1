/*
 * security.c
 *		Who runs what (docs/security.md, "Who runs what").
 *
 * Two rules, kept here so that every subsystem follows the same ones:
 *
 * 1. Only ocx writes ocx tables.  Every table belongs to the role ocx_owner
 *    (NOLOGIN, no attributes, no members); no other role holds INSERT,
 *    UPDATE, DELETE or TRUNCATE on any of them.  The entry points that write
 *    run with ocx_owner's rights: most are SECURITY DEFINER functions owned by
 *    it; those that must know who called them (the define_* functions that
 *    record the author of user code) are C trampolines, ocx_owner_call, into
 *    an internal function ocx._<name> with the same arguments, because a
 *    SECURITY DEFINER function cannot see its caller.  ocx_owner is not a
 *    superuser and has no BYPASSRLS, so the FORCEd row-level security
 *    policies apply to these writes with the caller's ocx.tenant.
 *
 * 2. User code never runs with more rights than its author had.  Upcasters,
 *    apply functions, projection handlers, reset functions and command
 *    handlers run as the role that defined them (recorded by ocx, in tables
 *    only ocx_owner writes), re-checked before each batch or read: a role
 *    that no longer exists, is no longer a member of ocx_admin or may no
 *    longer execute the function runs nothing (OX502).  Each call starts on
 *    a new settings level with search_path = "$user", public, pg_temp (pg_temp
 *    explicitly last, so a session's temporary tables never shadow the
 *    author's) and as a security-restricted operation (no SET ROLE, no new
 *    temporary tables); whatever settings the call changes end with it.  A
 *    function with its own SET search_path that does not end with pg_temp
 *    would look in the caller's pg_temp first: it is refused (OX503) in a
 *    session that has temporary objects.
 *
 * State: OcxCurrentCaller, the caller of the innermost trampoline call (or
 * InvalidOid), backend-local; saved and restored around each call.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_security.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

/* The search_path user code starts with (pg_temp explicitly last). */
#define OCX_USER_SEARCH_PATH "\"$user\", public, pg_temp"

static Oid	OcxCurrentCaller = InvalidOid;

/* The oid of ocx_owner; an error if the role is gone (the install made it). */
Oid
OcxOwnerRole(void)
{
	return get_role_oid(OCX_OWNER_ROLE, false);
}

/* The oid of ocx_worker, or InvalidOid before the upgrade that creates it. */
Oid
OcxWorkerRole(void)
{
	return get_role_oid(OCX_WORKER_ROLE, true);
}

/*
 * The role that called the ocx entry point running now: the caller of the
 * innermost trampoline; in a SECURITY DEFINER entry point (current user
 * ocx_owner) the session's role (after SET ROLE); else the current user.
 */
Oid
OcxCaller(void)
{
	Oid			user = GetUserId();

	if (OidIsValid(OcxCurrentCaller))
		return OcxCurrentCaller;
	if (user == get_role_oid(OCX_OWNER_ROLE, true))
		return GetOuterUserId();
	return user;
}

/* The caller (as ocx._caller()), for privacy.c's reveal rule. */
Oid
OcxCallerRole(void)
{
	return OcxCaller();
}

PG_FUNCTION_INFO_V1(ocx_caller);

/* SQL: ocx._caller() -> regrole, the role recorded as having done something. */
Datum
ocx_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(OcxCaller());
}

/* What a trampoline keeps between calls (in flinfo->fn_extra). */
typedef struct OwnerCallCache
{
	FmgrInfo	impl;
	Oid			impl_owner;
} OwnerCallCache;

/* Find ocx._<name>(same arguments) for the entry point fn; it must belong to ocx_owner. */
static OwnerCallCache *
OwnerCallLookup(FmgrInfo *flinfo)
{
	OwnerCallCache *c;
	HeapTuple	tup;
	Form_pg_proc proc;
	char	   *implname;
	Oid			impl;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(flinfo->fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", flinfo->fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	implname = psprintf("_%s", NameStr(proc->proname));
	impl = LookupFuncName(list_make2(makeString(OCX_SCHEMA), makeString(implname)),
						  proc->pronargs, proc->proargtypes.values, false);
	ReleaseSysCache(tup);

	c = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(OwnerCallCache));
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(impl));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", impl);
	c->impl_owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	if (c->impl_owner != OcxOwnerRole())
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INTERNAL),
				 errmsg("function ocx.%s is not owned by %s", implname, OCX_OWNER_ROLE),
				 errhint("Reinstall the extension: ALTER EXTENSION ocx UPDATE, or drop and create it.")));
	fmgr_info_cxt(impl, &c->impl, flinfo->fn_mcxt);
	return c;
}

PG_FUNCTION_INFO_V1(ocx_owner_call);

/*
 * The body of the entry points that run with ocx_owner's rights and record
 * their caller: remember the caller, switch to ocx_owner, call ocx._<name>
 * with the same arguments (and the same result set info, for functions that
 * return sets), switch back.
 */
Datum
ocx_owner_call(PG_FUNCTION_ARGS)
{
	OwnerCallCache *c = (OwnerCallCache *) fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(impl_fcinfo, FUNC_MAX_ARGS);
	Oid			save_caller = OcxCurrentCaller;
	Oid			save_user;
	int			save_sec;
	volatile Datum result = (Datum) 0;
	int			i;

	if (c == NULL)
		fcinfo->flinfo->fn_extra = c = OwnerCallLookup(fcinfo->flinfo);

	GetUserIdAndSecContext(&save_user, &save_sec);
	/* a nested entry point (ocx calling itself) keeps the outer caller */
	if (!(save_user == c->impl_owner && OidIsValid(OcxCurrentCaller)))
		OcxCurrentCaller = save_user;

	InitFunctionCallInfoData(*impl_fcinfo, &c->impl, fcinfo->nargs, fcinfo->fncollation,
							 fcinfo->context, fcinfo->resultinfo);
	for (i = 0; i < fcinfo->nargs; i++)
		impl_fcinfo->args[i] = fcinfo->args[i];

	SetUserIdAndSecContext(c->impl_owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		result = FunctionCallInvoke(impl_fcinfo);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
		OcxCurrentCaller = save_caller;
	}
	PG_END_TRY();

	fcinfo->isnull = impl_fcinfo->isnull;
	return result;
}

/* Does the search_path in fn's own SET clause (if any) leave pg_temp out or not last? */
static bool
FunctionPathSearchesTempFirst(Oid fn)
{
	HeapTuple	tup;
	Datum		d;
	bool		isnull;
	bool		unsafe = false;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		return false;
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
	{
		ArrayType  *config = DatumGetArrayTypeP(d);
		Datum	   *items;
		bool	   *nulls;
		int			n;
		int			i;

		deconstruct_array(config, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
		for (i = 0; i < n; i++)
		{
			char	   *item = TextDatumGetCString(items[i]);
			List	   *names;
			bool		last_is_temp = false;

			if (nulls[i] || pg_strncasecmp(item, "search_path=", 12) != 0)
				continue;
			if (SplitIdentifierString(pstrdup(item + 12), ',', &names) && names != NIL)
				last_is_temp = strcmp((char *) llast(names), "pg_temp") == 0;
			unsafe = !last_is_temp;
		}
	}
	ReleaseSysCache(tup);
	return unsafe;
}

/*
 * Is author still a role that may have user code run as it: does it exist,
 * and is it a member of ocx_admin (or a superuser)?  Raises OX502 if not;
 * what names the code for the message ("projection handler public.h(ocx.event)").
 */
static char *
AuthorCheck(Oid author, const char *what)
{
	Oid			admin = get_role_oid(OCX_AUTHOR_ROLE, true);
	char	   *rolename = OidIsValid(author) ? GetUserNameFromId(author, true) : NULL;

	if (rolename == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_AUTHOR_NOT_ALLOWED),
				 errmsg("the role that defined %s no longer exists", what),
				 errhint("Define it again as a member of %s.", OCX_AUTHOR_ROLE)));
	if (!superuser_arg(author) && !(OidIsValid(admin) && has_privs_of_role(author, admin)))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_AUTHOR_NOT_ALLOWED),
				 errmsg("role \"%s\" that defined %s is no longer a member of %s",
						rolename, what, OCX_AUTHOR_ROLE),
				 errdetail("User code runs as the role that defined it, and only while that role may define it."),
				 errhint("Grant %s to \"%s\" again, or define it again as another member of %s.",
						 OCX_AUTHOR_ROLE, rolename, OCX_AUTHOR_ROLE)));
	return rolename;
}

/*
 * May author still run fn?  Raises OX502 when the role is gone, is no
 * longer a member of ocx_admin or may no longer execute fn, and OX503 when
 * fn's own search_path would let this session's temporary objects shadow
 * the author's.  what names the code for the message ("projection handler").
 */
void
OcxUserCodeCheck(Oid author, Oid fn, const char *what)
{
	/*
	 * The last check that passed, valid for the rest of its statement: a
	 * read path calls this per event that needs a transform, and neither
	 * role membership, grants nor the session's temporary objects change in
	 * the middle of a statement.
	 */
	static Oid	passed_author = InvalidOid;
	static Oid	passed_fn = InvalidOid;
	static LocalTransactionId passed_lxid = InvalidLocalTransactionId;
	static CommandId passed_cid = InvalidCommandId;
	char	   *rolename;
	Oid			temp_ns;
	Oid			temp_toast_ns;

	if (author == passed_author && fn == passed_fn && MyProc->lxid == passed_lxid &&
		GetCurrentCommandId(false) == passed_cid)
		return;
	rolename = AuthorCheck(author, psprintf("%s %s", what, format_procedure(fn)));

	if (pg_proc_aclcheck(fn, author, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_AUTHOR_NOT_ALLOWED),
				 errmsg("role \"%s\" that defined %s %s may no longer execute it",
						rolename, what, format_procedure(fn)),
				 errhint("GRANT EXECUTE on the function to \"%s\" again.", rolename)));

	GetTempNamespaceState(&temp_ns, &temp_toast_ns);
	if (OidIsValid(temp_ns) && FunctionPathSearchesTempFirst(fn))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_UNSAFE_SEARCH_PATH),
				 errmsg("%s %s would look up names in this session's temporary objects first",
						what, format_procedure(fn)),
				 errdetail("Its SET search_path does not end with pg_temp, and this session has temporary objects; "
						   "it runs as role \"%s\".", rolename),
				 errhint("Put pg_temp last in the function's search_path, e.g. ALTER FUNCTION ... SET search_path = public, pg_temp.")));
	passed_author = author;
	passed_fn = fn;
	passed_lxid = MyProc->lxid;
	passed_cid = GetCurrentCommandId(false);
}

/*
 * The search_path user code starts with: ocx's, or during a blue/green
 * rebuild's replay the shadow schema first (OcxUserCodeSchemaFirst), so that
 * a handler's unqualified table names find the shadow tables.
 */
static char *user_search_path = NULL;

/* Put schema first in user code's search_path from now on (NULL: ocx's again). */
void
OcxUserCodeSchemaFirst(const char *schema)
{
	if (user_search_path)
		pfree(user_search_path);
	user_search_path = NULL;
	if (schema)
		user_search_path = MemoryContextStrdup(TopMemoryContext,
											   psprintf("%s, %s", quote_identifier(schema),
														OCX_USER_SEARCH_PATH));
}

/* Set ocx's search_path at the current settings level, unless it is set already. */
static void
SetUserSearchPath(void)
{
	const char *path = user_search_path ? user_search_path : OCX_USER_SEARCH_PATH;

	if (namespace_search_path == NULL || strcmp(namespace_search_path, path) != 0)
		(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * A settings level with ocx's search_path around a loop of user code calls
 * (a load's fold, a projection batch), so that each call finds it set.
 */
int
OcxUserCodeScopeBegin(void)
{
	int			nest_level = NewGUCNestLevel();

	SetUserSearchPath();
	return nest_level;
}

void
OcxUserCodeScopeEnd(int nest_level)
{
	AtEOXact_GUC(false, nest_level);
}

/* Before a call of user code: a new settings level, ocx's search_path, the author as user. */
void
OcxUserCodeBegin(Oid author, OcxUserCall *call)
{
	call->nest_level = NewGUCNestLevel();
	SetUserSearchPath();
	GetUserIdAndSecContext(&call->save_user, &call->save_sec);
	SetUserIdAndSecContext(author, call->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/* After it returned: back to the caller, and every setting it changed undone. */
void
OcxUserCodeEnd(OcxUserCall *call)
{
	SetUserIdAndSecContext(call->save_user, call->save_sec);
	AtEOXact_GUC(false, call->nest_level);
}

/*
 * The function a stored signature (text, as ocx.projections keeps handlers)
 * names, looked up with role's rights: ocx_owner has no USAGE on the schemas
 * of user code, its author has.  A role that is gone or no longer a member
 * of ocx_admin gets OX502 here already.
 */
Oid
OcxResolveFunctionAs(const char *signature, Oid role)
{
	Oid			save_user;
	int			save_sec;
	volatile Datum d = (Datum) 0;

	/* a role that may no longer be an author does not even look it up */
	(void) AuthorCheck(role, signature);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		d = DirectFunctionCall1(regprocedurein, CStringGetDatum(signature));
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	return DatumGetObjectId(d);
}

/*
 * Only ocx's entry points (running as ocx_owner) may name a role to act as;
 * with allow_superuser, a superuser (the database worker) too.
 */
static void
RequireOwner(const char *fname, bool allow_superuser)
{
	if (GetUserId() != OcxOwnerRole() && !(allow_superuser && superuser()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", fname),
				 errdetail("Only ocx's entry points may act as another role.")));
}

PG_FUNCTION_INFO_V1(ocx_regprocedure_as);

/* SQL: ocx._regprocedure_as(signature text, role regrole): the function, looked up as role. */
Datum
ocx_regprocedure_as(PG_FUNCTION_ARGS)
{
	RequireOwner("ocx._regprocedure_as", false);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_OID(OcxResolveFunctionAs(text_to_cstring(PG_GETARG_TEXT_PP(0)),
									   PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1)));
}

PG_FUNCTION_INFO_V1(ocx_call_as_author);

/*
 * SQL: ocx._call_as_author(fn, author, e DEFAULT NULL) calls fn() (e NULL) or
 * fn(e) as author (fn: a stored signature, looked up as author), for the SQL entry points that run user code (a
 * projection's reset function in rebuild_projection, its handler in
 * retry_dead_letter).  Only ocx_owner, that is an entry point, may call it:
 * anyone else could name any author.
 */
Datum
ocx_call_as_author(PG_FUNCTION_ARGS)
{
	Oid			fn;
	Oid			author;
	int			nargs = PG_ARGISNULL(2) ? 0 : 1;
	FmgrInfo	flinfo;
	OcxUserCall call;
	LOCAL_FCINFO(ufcinfo, 1);

	RequireOwner("ocx._call_as_author", false);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("function must not be null")));
	/* NULL: the recorded author no longer exists */
	author = PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1);
	fn = OcxResolveFunctionAs(text_to_cstring(PG_GETARG_TEXT_PP(0)), author);
	OcxUserCodeCheck(author, fn, "function");
	fmgr_info(fn, &flinfo);
	if (flinfo.fn_nargs != nargs)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("function %s does not take %d arguments", format_procedure(fn), nargs)));
	InitFunctionCallInfoData(*ufcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	if (nargs == 1)
	{
		ufcinfo->args[0].value = PG_GETARG_DATUM(2);
		ufcinfo->args[0].isnull = false;
	}
	OcxUserCodeBegin(author, &call);
	(void) FunctionCallInvoke(ufcinfo);
	OcxUserCodeEnd(&call);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(ocx_execute_as_author);

/*
 * SQL: ocx._execute_as_author(author, statements) runs statements (SQL that
 * ocx built: a blue/green rebuild's DDL on the author's read-model tables,
 * names quoted) one by one as author, on a settings level of their own with
 * search_path = pg_catalog, pg_temp, as a security-restricted operation.
 * ocx's entry points and the database worker only; the role must exist.
 */
Datum
ocx_execute_as_author(PG_FUNCTION_ARGS)
{
	Oid			author;
	Datum	   *items;
	bool	   *nulls;
	int			n;
	int			i;
	int			nest_level;
	Oid			save_user;
	int			save_sec;

	RequireOwner("ocx._execute_as_author", true);
	author = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	if (!OidIsValid(author) || GetUserNameFromId(author, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_AUTHOR_NOT_ALLOWED),
				 errmsg("the role that defined the projection no longer exists")));
	if (PG_ARGISNULL(1))
		PG_RETURN_VOID();
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &items, &nulls, &n);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(author, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		if (SPI_execute(TextDatumGetCString(items[i]), false, 0) < 0)
			elog(ERROR, "ocx: SPI_execute failed");
	}
	/* an error above is cleaned up by the (sub)transaction abort */
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(true, nest_level);
	SPI_finish();
	PG_RETURN_VOID();
}
