/*
 * subscription.c
 *		Argument checks for durable subscriptions.
 *
 * The subscription functions themselves (define_subscription, poll, ack,
 * drop_subscription) are set-based SQL over ocx.subscriptions and
 * ocx.subscription_partitions in sql/parts/50_bus.sql and 70_vocabulary.sql:
 * each is a handful of indexed statements, and keeping them in SQL keeps the
 * locking visible.  The one lock that matters is the subscription's row,
 * taken FOR NO KEY UPDATE by poll and ack (and by define_subscription when it
 * redefines one): it serializes the consumers of one subscription while
 * partitions change hands, so an event is never delivered to two consumers
 * unless a lease ran out.
 */
#include "ocx.h"
#include "ocx_bus.h"
#include "ocx_errors.h"

#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(ocx_bus_name_arg);

#define OCX_MAX_BUS_NAME	200

/*
 * ocx._bus_name_arg(what text, val text): val when it is a usable name
 * (subscription or consumer), else an OX301 error naming what.
 */
Datum
ocx_bus_name_arg(PG_FUNCTION_ARGS)
{
	const char *what = PG_ARGISNULL(0) ? "name" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *val;
	int			len;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_SUBSCRIPTION),
				 errmsg("%s must not be null", what)));
	val = PG_GETARG_TEXT_PP(1);
	len = VARSIZE_ANY_EXHDR(val);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_SUBSCRIPTION),
				 errmsg("%s must not be empty", what)));
	if (len > OCX_MAX_BUS_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_SUBSCRIPTION),
				 errmsg("%s is too long", what),
				 errdetail("It has %d bytes; the limit is %d.", len, OCX_MAX_BUS_NAME)));
	PG_RETURN_TEXT_P(val);
}
