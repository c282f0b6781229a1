/*
 * commands.c
 *		Placeholder: the worker's commands task does nothing yet.
 */
#include "ocx.h"

bool
OcxCommandWorkerTick(void)
{
	return false;
}
