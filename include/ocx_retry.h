/*
 * ocx_retry.h
 *		The one backoff of ocx's retry policies (src/retry.c).
 */
#ifndef OCX_RETRY_H
#define OCX_RETRY_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern Interval *OcxRetryDelay(const Interval *base_delay, const Interval *max_delay,
							   int32 attempt);
extern int64 OcxBackoffMs(int64 base_ms, int64 max_ms, int32 attempt);

#endif							/* OCX_RETRY_H */
