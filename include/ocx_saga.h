/*
 * ocx_saga.h
 *		Sagas: the worker's saga task (saga.c).  The state machine, its
 *		tables and the SQL API are in sql/parts/60_sagas.sql; docs/sagas.md
 *		describes them.
 */
#ifndef OCX_SAGA_H
#define OCX_SAGA_H

#include "ocx.h"

/* The states of a saga, as stored in ocx.saga_instances.state. */
#define OCX_SAGA_RUNNING		"running"
#define OCX_SAGA_COMPENSATING	"compensating"
#define OCX_SAGA_COMPLETED		"completed"
#define OCX_SAGA_COMPENSATED	"compensated"
#define OCX_SAGA_FAILED			"failed"

/*
 * One round of the saga task in the caller's transaction (declared in ocx.h
 * too, for the worker loop): true when the round was cut short by the batch
 * size or made transitions, so the worker should come back at once.
 */
extern bool OcxSagaWorkerTick(void);

#endif							/* OCX_SAGA_H */
