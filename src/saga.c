/*
 * saga.c
 *		Placeholder: the worker's saga task does nothing yet.
 */
#include "ocx.h"

bool
OcxSagaWorkerTick(void)
{
	return false;
}
