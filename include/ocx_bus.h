/*
 * ocx_bus.h
 *		The message bus: NOTIFY wake-ups, ephemeral messages, durable
 *		subscriptions and the command queue (bus.c, subscription.c,
 *		commands.c).  The SQL side is sql/parts/50_bus.sql.
 */
#ifndef OCX_BUS_H
#define OCX_BUS_H

#include "ocx.h"

/* ocx.notify_mode */
typedef enum OcxNotifyMode
{
	OCX_NOTIFY_OFF,				/* no wake-ups at all */
	OCX_NOTIFY_WORKER,			/* the worker notifies, batched (default) */
	OCX_NOTIFY_IMMEDIATE		/* also from the appending transaction */
} OcxNotifyMode;

extern int	ocx_notify_mode;

/* Channels the bus sends on. */
#define OCX_EVENTS_CHANNEL		"ocx_events"
#define OCX_COMMANDS_CHANNEL	"ocx_commands"
#define OCX_CHANNEL_PREFIX		"ocx_"

/*
 * The largest payload ocx.publish accepts, in bytes: PostgreSQL refuses
 * payloads of BLCKSZ - NAMEDATALEN - 128 bytes or more (async.c).
 */
#define OCX_MAX_PUBLISH_PAYLOAD	(BLCKSZ - NAMEDATALEN - 128 - 1)

extern void OcxBusInit(void);

#endif							/* OCX_BUS_H */
