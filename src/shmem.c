/*
 * shmem.c
 *		ocx's shared memory.
 *
 * Placeholder: nothing is requested yet.
 */
#include "ocx.h"

void
OcxShmemInit(void)
{
}
