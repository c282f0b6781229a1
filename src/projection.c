/*
 * projection.c
 *		What happens in the appending transaction after events are stored:
 *		inline projections run and the projection workers are woken at commit.
 *
 * Placeholder until projections exist.
 */
#include "ocx.h"

void
OcxAfterAppend(const char *stream_id, int64 first_version, int nevents)
{
}
