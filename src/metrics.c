/*
 * metrics.c
 *		Counters behind ocx.stats and ocx.metrics().
 *
 * Placeholder: counting is a no-op until the metrics subsystem lands.
 */
#include "ocx.h"

void
OcxCount(OcxCounter counter, int64 delta)
{
}
