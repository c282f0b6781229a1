/*
 * bus.c
 *		Placeholder: the worker's bus task does nothing yet.
 */
#include "ocx.h"

bool
OcxBusWorkerTick(void)
{
	return false;
}
