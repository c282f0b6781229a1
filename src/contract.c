/*
 * contract.c
 *		Event contracts: the current schema version of each event type and
 *		validation of appended events against it.
 *
 * Placeholder until event types are defined (issue: aggregates, contracts,
 * upcasters): every type is at version 1 and every event is accepted.
 */
#include "ocx.h"

/* The current schema version of type (1 when the type is not registered). */
int32
OcxCurrentSchemaVersion(const char *type)
{
	return 1;
}

/* Raise an ocx error if ev breaks its type's contract. */
void
OcxValidateNewEvent(OcxNewEvent *ev, int index)
{
}
