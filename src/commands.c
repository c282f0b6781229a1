/*
 * commands.c
 *		The worker's command task: runs in-server command handlers.
 *
 * The queue itself (send_command, claim_commands, complete_command,
 * fail_command, command_status) is SQL in sql/parts/50_bus.sql.  Here the
 * per-database worker claims ready commands whose type has a handler
 * function, with the same SKIP LOCKED claim clients use, and runs each
 * handler:
 *
 *	- as the role that defined the handler, never as the worker's superuser;
 *	- with ocx.tenant set to the command's tenant (the worker serves every
 *	  tenant), so row-level security shows the handler its tenant's rows and
 *	  what it appends or sends lands in that tenant;
 *	- with ocx.correlation_id set to the command's correlation id and
 *	  ocx.causation_id to the command id, so every event the handler appends
 *	  carries both;
 *	- inside a subtransaction, so a failing handler's writes are rolled back
 *	  while the failure itself (attempt, error, backoff or dead letter) is
 *	  recorded in the worker's transaction.
 *
 * The worker finishes each command with the claim token it claimed it with
 * (claims are fenced, see ocx._running_command); the handler gets the
 * command without the token, so it cannot finish the command itself.
 * complete_command and fail_command run as ocx_owner under the commands'
 * row-level security, so the worker calls them with ocx.tenant set to the
 * command's tenant too.
 *
 * Claim, handler writes and completion commit together: a worker that
 * crashes mid-handler leaves the command pending, never half done.  The row
 * lock the claim takes keeps every other worker and client off the command.
 */
#include "ocx.h"
#include "ocx_bus.h"
#include "ocx_errors.h"
#include "ocx_security.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(ocx_command_tick);

/* Commands one tick runs at most before yielding to the other tasks. */
#define COMMAND_BATCH	16

typedef enum CmdPlan
{
	CMD_PLAN_PEEK,
	CMD_PLAN_CLAIM,
	CMD_PLAN_COMPLETE,
	CMD_PLAN_FAIL,
	CMD_PLAN_TENANT,
	CMD_NUM_PLANS
} CmdPlan;

static const char *const cmd_plan_sql[CMD_NUM_PLANS] = {
	[CMD_PLAN_PEEK] =
	"SELECT EXISTS (SELECT 1 FROM ocx.command_handlers h WHERE h.handler IS NOT NULL AND ("
	"EXISTS (SELECT 1 FROM ocx.commands c WHERE c.status OPERATOR(pg_catalog.=) 'pending' "
	"AND c.type OPERATOR(pg_catalog.=) h.command_type AND c.run_after OPERATOR(pg_catalog.<=) pg_catalog.now()) "
	"OR EXISTS (SELECT 1 FROM ocx.commands c WHERE c.status OPERATOR(pg_catalog.=) 'running' "
	"AND c.type OPERATOR(pg_catalog.=) h.command_type "
	"AND c.claimed_until OPERATOR(pg_catalog.<) pg_catalog.now())))",
	[CMD_PLAN_CLAIM] =
	"SELECT ROW(c.command_id, c.type, c.data, c.metadata, c.correlation_id, c.causation_id, "
	"c.attempt, NULL)::ocx.command, c.command_id, c.correlation_id, h.handler::pg_catalog.oid, "
	"h.handler_role::pg_catalog.oid, c.claim_token "
	"FROM ocx._claim_commands((SELECT pg_catalog.array_agg(x.command_type) "
	"FROM ocx.command_handlers x WHERE x.handler IS NOT NULL), 1, '1 hour', 'ocx worker') c "
	"JOIN ocx.command_handlers h ON h.command_type OPERATOR(pg_catalog.=) c.type",
	[CMD_PLAN_COMPLETE] =
	"SELECT ocx.complete_command($1, $2, $3)",
	[CMD_PLAN_FAIL] =
	"SELECT ocx.fail_command($1, $2, true, $3)",
	/* a query of its own: the claim's snapshot is newer than its caller's */
	[CMD_PLAN_TENANT] =
	"SELECT c.tenant_id FROM ocx.commands c WHERE c.command_id OPERATOR(pg_catalog.=) $1",
};
static const int cmd_plan_nargs[CMD_NUM_PLANS] = {0, 0, 3, 3, 1};
static const Oid cmd_plan_args[CMD_NUM_PLANS][3] = {
	{0}, {0}, {UUIDOID, JSONBOID, UUIDOID}, {UUIDOID, TEXTOID, UUIDOID}, {UUIDOID}
};
static SPIPlanPtr cmd_plans[CMD_NUM_PLANS];

/* Run a kept plan of the command task, preparing it on first use. */
static uint64
RunCmdPlan(CmdPlan which, Datum *values, const char *nulls)
{
	return OcxRunKeptPlan(OcxKeptPlan(&cmd_plans[which], cmd_plan_sql[which],
									  cmd_plan_nargs[which], cmd_plan_args[which]),
						  values, nulls, false);
}

/* Set an ocx.* string setting for the rest of the transaction. */
static void
SetLocal(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * Set an ocx.* setting for the handler, on the settings level
 * OcxUserCodeBegin opened (undone by OcxUserCodeEnd or the subtransaction's
 * abort).  NULL sets it empty.
 */
static void
SetHandlerSetting(const char *name, const char *value)
{
	(void) set_config_option(name, value ? value : "", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, DEBUG1, false);
}

/* The text form of a uuid datum, for the settings. */
static char *
UuidText(Datum d)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, d));
}

/*
 * Run one handler on cmd in a subtransaction, as role.  Returns true on
 * success with *result set (NULL for void handlers or a NULL result), false
 * with *error set when the handler raised an error.
 */
typedef struct HandlerRun
{
	Oid			handler;
	Oid			role;
	Datum		cmd;
	const char *tenant;			/* the command's tenant_id, NULL for none */
	Jsonb	   *result;
} HandlerRun;

/* The body of RunHandler's subtransaction: the call as the handler's role. */
static void
CallCommandHandler(void *arg)
{
	HandlerRun *run = (HandlerRun *) arg;
	OcxUserCall call;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);
	Datum		d;

	OcxUserCodeCheck(run->role, run->handler, "command handler");
	fmgr_info(run->handler, &flinfo);
	OcxUserCodeBegin(run->role, &call);
	/* the command's tenant, whatever the worker's own setting */
	SetHandlerSetting("ocx.tenant", run->tenant);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = run->cmd;
	fcinfo->args[0].isnull = false;
	d = FunctionCallInvoke(fcinfo);
	if (!fcinfo->isnull && get_func_rettype(run->handler) == JSONBOID)
		run->result = DatumGetJsonbPCopy(d);
	OcxUserCodeEnd(&call);
}

static bool
RunHandler(Oid handler, Oid role, Datum cmd, const char *tenant, Jsonb **result, char **error)
{
	HandlerRun	run = {handler, role, cmd, tenant, NULL};
	ErrorData  *edata;

	*result = NULL;
	*error = NULL;
	/* the rollback of a failed call also restores the user id */
	edata = OcxInSubtransaction(CallCommandHandler, &run);
	if (edata == NULL)
	{
		*result = run.result;
		return true;
	}
	*error = edata->sqlerrcode ?
		psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode), edata->message) :
		pstrdup(edata->message);
	FreeErrorData(edata);
	return false;
}

/*
 * The worker's command task: runs up to COMMAND_BATCH ready commands with
 * in-server handlers in the worker's transaction; true when there may be
 * more.
 */
bool
OcxCommandWorkerTick(void)
{
	MemoryContext ctx,
				old;
	int			done = 0;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "ocx command tick", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(ctx);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");

	/* one cheap look first: usually there is nothing for a server handler */
	{
		bool		isnull;

		RunCmdPlan(CMD_PLAN_PEEK, NULL, NULL);
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			done = -1;
		else
			OcxAppenderEnter();	/* handlers append: before the claim's xid (appenders.c) */
	}

	while (done >= 0 && done < COMMAND_BATCH)
	{
		HeapTuple	tup;
		TupleDesc	desc;
		bool		isnull;
		Datum		cmd,
					id,
					token;
		Oid			handler,
					role;
		char	   *correlation;
		char	   *old_corr,
				   *old_cause,
				   *old_trace,
				   *old_tenant,
				   *tenant = NULL,
				   *traceparent = NULL;
		Jsonb	   *result;
		char	   *error = NULL;
		bool		ok;
		Datum		args[3];
		char		nulls[3] = {' ', ' ', ' '};
		MemoryContext spictx;

		CHECK_FOR_INTERRUPTS();
		if (RunCmdPlan(CMD_PLAN_CLAIM, NULL, NULL) == 0)
			break;
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;

		/* keep what we need beyond the next SPI call in our context */
		spictx = MemoryContextSwitchTo(ctx);
		cmd = datumCopy(SPI_getbinval(tup, desc, 1, &isnull), false, -1);
		id = datumCopy(SPI_getbinval(tup, desc, 2, &isnull), false, UUID_LEN);
		correlation = UuidText(SPI_getbinval(tup, desc, 3, &isnull));
		handler = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		role = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		token = datumCopy(SPI_getbinval(tup, desc, 6, &isnull), false, UUID_LEN);
		old_corr = pstrdup(ocx_correlation_id ? ocx_correlation_id : "");
		old_cause = pstrdup(ocx_causation_id ? ocx_causation_id : "");
		old_trace = pstrdup(ocx_traceparent ? ocx_traceparent : "");
		old_tenant = pstrdup(ocx_tenant ? ocx_tenant : "");
		{
			Datum		md = GetAttributeByName(DatumGetHeapTupleHeader(cmd), "metadata", &isnull);
			JsonbValue	v;

			if (!isnull && OcxJsonbGet(&DatumGetJsonbP(md)->root, "traceparent", &v) &&
				v.type == jbvString)
				traceparent = OcxJsonbString(&v);
		}
		MemoryContextSwitchTo(spictx);

		/* the command's tenant (the claim above returns the command type only) */
		args[0] = id;
		if (RunCmdPlan(CMD_PLAN_TENANT, args, nulls) == 1)
		{
			Datum		t = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
			{
				spictx = MemoryContextSwitchTo(ctx);
				tenant = TextDatumGetCString(t);
				MemoryContextSwitchTo(spictx);
			}
		}
		SetLocal("ocx.correlation_id", correlation);
		SetLocal("ocx.causation_id", UuidText(id));
		/* a malformed traceparent in metadata is ignored, not fatal */
		(void) set_config_option("ocx.traceparent", traceparent ? traceparent : "",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, DEBUG1, false);
		if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		{
			/* never run a handler as a role that is gone */
			result = NULL;
			error = psprintf("the role (oid %u) that defined the handler no longer exists", role);
		}
		/* the handler gets the command's tenant on its own settings level */
		ok = error == NULL && RunHandler(handler, role, cmd, tenant, &result, &error);
		/*
		 * complete_command and fail_command run as ocx_owner under row-level
		 * security: they see the command with its tenant only
		 */
		SetLocal("ocx.tenant", tenant ? tenant : "");
		if (ok)
		{
			args[0] = id;
			args[1] = result ? JsonbPGetDatum(result) : (Datum) 0;
			nulls[1] = result ? ' ' : 'n';
			args[2] = token;
			RunCmdPlan(CMD_PLAN_COMPLETE, args, nulls);
		}
		else
		{
			args[0] = id;
			args[1] = CStringGetTextDatum(error);
			args[2] = token;
			RunCmdPlan(CMD_PLAN_FAIL, args, nulls);
		}
		SetLocal("ocx.correlation_id", old_corr);
		SetLocal("ocx.causation_id", old_cause);
		SetLocal("ocx.traceparent", old_trace);
		SetLocal("ocx.tenant", old_tenant);
		done++;
	}

	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return done == COMMAND_BATCH;
}

/* ocx._command_tick(): the worker's command task, for tests and worker-less setups. */
Datum
ocx_command_tick(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(OcxCommandWorkerTick());
}
