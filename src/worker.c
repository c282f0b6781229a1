/*
 * worker.c
 *		The launcher and per-database background workers.
 *
 * Placeholder until projection workers exist: nothing is registered.
 */
#include "ocx.h"

void
OcxWorkerInit(void)
{
}

void
OcxWakeWorkerAtCommit(void)
{
}
