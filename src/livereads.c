/*
 * livereads.c
 *		Reads of the live log planned without the archive (docs/scaling.md,
 *		"A partitioned log").
 *
 * ocx.read_stream and ocx._read_log (which read_all, read_category and every
 * consumer reach) take include_archived.  Each has two forms: one over the
 * live log alone ("_<name>_live") and one over the live log and
 * ocx_archive.events ("_<name>_archived"); the function's own SQL body
 * selects one of the two by a constant column.  A SQL body is inlined whole:
 * parsing its stored tree, rewriting it, and pulling up and preprocessing
 * every branch costs planning time in proportion to its size, even for the
 * branches a constant then cuts.  So a read of the live log through that
 * body would pay for the archive's form on every unprepared call, in every
 * database, partitioned or not.
 *
 * ocx._read_form_support is the planner support function of those reads.
 * When the planner simplifies a call whose last argument, include_archived,
 * is a constant (the default, a literal, or a parameter of a custom plan),
 * it replaces the call by one of the form that constant selects: false or
 * NULL "_<name>_live", true "_<name>_archived" (leading underscores of the
 * name dropped), in the same schema, with the same arguments but the last,
 * the same result type, that the current user may execute.  The planner then
 * inlines that form alone: for the live log exactly the SELECT the read ran
 * before the log could be partitioned.  Anything else (a parameter of a
 * generic plan, an expression) is left to the function's own body, which
 * gives the same rows.  On Citus, ocx.distribute() replaces these functions
 * without the support function (88_citus.sql).
 */
#include "ocx.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/supportnodes.h"
#include "utils/builtins.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ocx_read_form_support);

/*
 * The form ("live" or "archived") of function funcid called with nargs
 * arguments and returning rettype, or InvalidOid when there is none the
 * caller can use.
 */
static Oid
ReadForm(Oid funcid, int nargs, Oid rettype, const char *form)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	const char *base;
	char		name[NAMEDATALEN];
	Oid			found = InvalidOid;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	base = NameStr(proc->proname);
	while (*base == '_')
		base++;
	if (proc->pronargs == nargs && nargs >= 1 &&
		snprintf(name, sizeof(name), "_%s_%s", base, form) < (int) sizeof(name))
	{
		oidvector  *args = buildoidvector(proc->proargtypes.values, nargs - 1);

		found = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
							   CStringGetDatum(name), PointerGetDatum(args),
							   ObjectIdGetDatum(proc->pronamespace));
		pfree(args);
	}
	ReleaseSysCache(tup);

	if (OidIsValid(found) &&
		(get_func_rettype(found) != rettype || !get_func_retset(found) ||
		 pg_proc_aclcheck(found, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK))
		found = InvalidOid;
	return found;
}

/*
 * SupportRequestSimplify: a call with include_archived a constant becomes
 * the call of the form it selects.
 */
Datum
ocx_read_form_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSimplify *req;
	FuncExpr   *call;
	FuncExpr   *form;
	Const	   *archived;
	Oid			formid;
	int			nargs;

	if (!IsA(rawreq, SupportRequestSimplify))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSimplify *) rawreq;
	call = req->fcall;
	nargs = list_length(call->args);
	if (nargs == 0 || !call->funcretset || !IsA(llast(call->args), Const))
		PG_RETURN_POINTER(NULL);
	archived = (Const *) llast(call->args);
	if (archived->consttype != BOOLOID)
		PG_RETURN_POINTER(NULL);

	formid = ReadForm(call->funcid, nargs, call->funcresulttype,
					  !archived->constisnull && DatumGetBool(archived->constvalue) ?
					  "archived" : "live");
	if (!OidIsValid(formid))
		PG_RETURN_POINTER(NULL);

	form = makeFuncExpr(formid, call->funcresulttype,
						list_truncate(list_copy(call->args), nargs - 1),
						call->funccollid, call->inputcollid, call->funcformat);
	form->funcretset = true;
	form->location = call->location;
	PG_RETURN_POINTER(form);
}
