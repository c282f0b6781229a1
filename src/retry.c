/*
 * retry.c
 *		The one backoff of every ocx retry policy.
 *
 * A retry policy is {"max_attempts": n, "base_delay": interval,
 * "max_delay": interval} wherever ocx retries (projections, command
 * handlers; docs/projections.md, docs/bus.md).  After failed attempt k
 * (k = 1, 2, ...) the next attempt waits
 *
 *		min(max_delay, base_delay * 2^(k-1))
 *
 * where base_delay * 2^(k-1) multiplies each field of the interval (months,
 * days, microseconds) as PostgreSQL's interval * integer does, and min
 * compares as intervals compare (a month is 30 days, a day 24 hours).  The
 * doubling stops as soon as it reaches max_delay, and a field that would
 * overflow means "beyond max_delay", so no attempt number overflows.
 *
 * The projection worker (projection.c) calls OcxRetryDelay; SQL callers
 * (ocx.fail_command for command handlers) call ocx.retry_delay(policy,
 * attempt), which is the same function.  ocx's own waits after repeated
 * failures (the pool's per-projection and per-pass backoff and its look
 * again for events held under the horizon, pool.c; the launcher's restart
 * of a failed database worker, worker.c) use fixed internal policies in
 * milliseconds through OcxBackoffMs, which calls OcxRetryDelay: there is no
 * other backoff formula in ocx.  No shared state here.
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_retry.h"

#include "common/int.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ocx_retry_delay);

/* a - b as intervals compare (-1, 0, 1) */
static int
IntervalCompare(const Interval *a, const Interval *b)
{
	return DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(a),
											 IntervalPGetDatum(b)));
}

/*
 * The delay before the attempt after failed attempt `attempt` (>= 1), per the
 * formula above.  base_delay and max_delay are non-negative, base <= max (the
 * policy checks say so); the result is palloc'd.
 */
Interval *
OcxRetryDelay(const Interval *base_delay, const Interval *max_delay, int32 attempt)
{
	Interval   *d = palloc(sizeof(Interval));
	Interval	zero = {0, 0, 0};
	int32		k;

	*d = *base_delay;
	for (k = 1; k < attempt; k++)
	{
		Interval	next;

		if (IntervalCompare(d, max_delay) >= 0 || IntervalCompare(d, &zero) == 0)
			break;
		if (pg_mul_s32_overflow(d->month, 2, &next.month) ||
			pg_mul_s32_overflow(d->day, 2, &next.day) ||
			pg_mul_s64_overflow(d->time, 2, &next.time))
		{
			*d = *max_delay;	/* far beyond any max_delay */
			break;
		}
		*d = next;
	}
	if (IntervalCompare(d, max_delay) > 0)
		*d = *max_delay;
	return d;
}

/*
 * OcxRetryDelay for a fixed internal policy in milliseconds: the wait after
 * failed attempt `attempt` (1, 2, ...; less than 1 counts as 1) for
 * base_ms <= max_ms, both >= 0.  Allocates nothing that outlives the call.
 */
int64
OcxBackoffMs(int64 base_ms, int64 max_ms, int32 attempt)
{
	Interval	base = {0, 0, 0};
	Interval	max = {0, 0, 0};
	Interval   *d;
	int64		ms;

	Assert(base_ms >= 0 && base_ms <= max_ms);
	base.time = base_ms * INT64CONST(1000);
	max.time = max_ms * INT64CONST(1000);
	d = OcxRetryDelay(&base, &max, Max(attempt, 1));
	ms = d->time / INT64CONST(1000);
	pfree(d);
	return ms;
}

/* An interval key of a policy, parsed; errors name the key. */
static Interval *
PolicyInterval(Jsonb *policy, const char *key)
{
	JsonbValue	v;
	Interval   *i;

	if (!OcxJsonbGet(&policy->root, key, &v) || v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("retry policy \"%s\" must be an interval string", key),
				 errhint("Pass a policy such as {\"max_attempts\": 5, \"base_delay\": \"1 second\", \"max_delay\": \"5 minutes\"}.")));
	i = DatumGetIntervalP(DirectFunctionCall3(interval_in,
											  CStringGetDatum(OcxJsonbString(&v)),
											  ObjectIdGetDatum(InvalidOid),
											  Int32GetDatum(-1)));
	return i;
}

/*
 * SQL: ocx.retry_delay(policy jsonb, attempt integer) -> interval, the wait
 * after failed attempt `attempt` under policy (its base_delay and max_delay).
 */
Datum
ocx_retry_delay(PG_FUNCTION_ARGS)
{
	Jsonb	   *policy = PG_GETARG_JSONB_P(0);
	int32		attempt = PG_GETARG_INT32(1);
	Interval   *base;
	Interval   *max;
	Interval	zero = {0, 0, 0};

	if (!JB_ROOT_IS_OBJECT(policy) || JB_ROOT_IS_SCALAR(policy))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("retry policy must be a JSON object")));
	if (attempt < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("attempt must be 1 or more"),
				 errdetail("Got %d.", attempt)));
	base = PolicyInterval(policy, "base_delay");
	max = PolicyInterval(policy, "max_delay");
	if (IntervalCompare(base, &zero) < 0 || IntervalCompare(max, base) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("retry policy delays must satisfy 0 <= base_delay <= max_delay")));
	PG_RETURN_INTERVAL_P(OcxRetryDelay(base, max, attempt));
}
