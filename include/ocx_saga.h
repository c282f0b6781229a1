/*
 * ocx_saga.h
 *		Sagas: the worker's saga task (saga.c).  The state machine, its
 *		tables and the SQL API are in sql/parts/60_sagas.sql; docs/sagas.md
 *		describes them.
 */
#ifndef OCX_SAGA_H
#define OCX_SAGA_H

#include "ocx.h"

/*
 * One round of the saga task in the caller's transaction (declared in ocx.h
 * too, for the worker loop): true when the round was cut short by the batch
 * size or made transitions, so the worker should come back at once.
 */
extern bool OcxSagaWorkerTick(void);

#endif							/* OCX_SAGA_H */
