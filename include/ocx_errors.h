/*
 * ocx_errors.h
 *		The SQLSTATE class "OX" used by every error ocx raises.
 *
 * One code per kind of failure, so that clients can branch on the code and
 * never on message text.  docs/errors.md lists each code with when it happens
 * and what to do; keep the two in step.  Ranges:
 *		OX0xx	the event log (append, read, CloudEvents)
 *		OX1xx	aggregates, snapshots, event contracts, upcasters, modules
 *		OX2xx	projections and background workers
 *		OX3xx	message bus, subscriptions, commands
 *		OX4xx	sagas
 *		OX5xx	security, tenancy, operations
 */
#ifndef OCX_ERRORS_H
#define OCX_ERRORS_H

#include "utils/elog.h"

/* OX0xx: the event log */
#define ERRCODE_OCX_INTERNAL				MAKE_SQLSTATE('O','X','0','0','0')
#define ERRCODE_OCX_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('O','X','0','0','1')
#define ERRCODE_OCX_INVALID_EVENT			MAKE_SQLSTATE('O','X','0','0','2')
#define ERRCODE_OCX_INVALID_STREAM_ID		MAKE_SQLSTATE('O','X','0','0','3')
#define ERRCODE_OCX_DUPLICATE_EVENT			MAKE_SQLSTATE('O','X','0','0','4')
#define ERRCODE_OCX_EVENT_TOO_LARGE			MAKE_SQLSTATE('O','X','0','0','5')
#define ERRCODE_OCX_INVALID_CLOUDEVENT		MAKE_SQLSTATE('O','X','0','0','6')
#define ERRCODE_OCX_INVALID_EXPECTED_VERSION MAKE_SQLSTATE('O','X','0','0','7')
#define ERRCODE_OCX_EMPTY_BATCH				MAKE_SQLSTATE('O','X','0','0','8')
#define ERRCODE_OCX_IMMUTABLE_LOG			MAKE_SQLSTATE('O','X','0','0','9')
#define ERRCODE_OCX_INVALID_ARGUMENT		MAKE_SQLSTATE('O','X','0','1','0')
#define ERRCODE_OCX_INVALID_SETTING			MAKE_SQLSTATE('O','X','0','1','1')
#define ERRCODE_OCX_STREAM_OF_ANOTHER_TENANT MAKE_SQLSTATE('O','X','0','1','2')
#define ERRCODE_OCX_HORIZON_PASSED			MAKE_SQLSTATE('O','X','0','1','3')
#define ERRCODE_OCX_APPEND_CONDITION_FAILED	MAKE_SQLSTATE('O','X','0','1','4')
#define ERRCODE_OCX_INVALID_TAGS			MAKE_SQLSTATE('O','X','0','1','5')
#define ERRCODE_OCX_INVALID_APPEND_CONDITION MAKE_SQLSTATE('O','X','0','1','6')

/* OX1xx: aggregates, snapshots, contracts, upcasters, modules */
#define ERRCODE_OCX_UNKNOWN_AGGREGATE		MAKE_SQLSTATE('O','X','1','0','0')
#define ERRCODE_OCX_INVALID_AGGREGATE		MAKE_SQLSTATE('O','X','1','0','1')
#define ERRCODE_OCX_STREAM_NOT_FOUND		MAKE_SQLSTATE('O','X','1','0','2')
#define ERRCODE_OCX_APPLY_FAILED			MAKE_SQLSTATE('O','X','1','0','3')
#define ERRCODE_OCX_SNAPSHOT_READ_ONLY		MAKE_SQLSTATE('O','X','1','0','4')
#define ERRCODE_OCX_CONTRACT_VIOLATION		MAKE_SQLSTATE('O','X','1','1','0')
#define ERRCODE_OCX_INVALID_SCHEMA			MAKE_SQLSTATE('O','X','1','1','1')
#define ERRCODE_OCX_DEFINITION_OUT_OF_BOUNDS MAKE_SQLSTATE('O','X','1','1','2')
#define ERRCODE_OCX_INVALID_UPCASTER		MAKE_SQLSTATE('O','X','1','2','0')
#define ERRCODE_OCX_UPCAST_FAILED			MAKE_SQLSTATE('O','X','1','2','1')
#define ERRCODE_OCX_INVALID_MODULE			MAKE_SQLSTATE('O','X','1','3','0')

/* OX2xx: projections and workers */
#define ERRCODE_OCX_UNKNOWN_PROJECTION		MAKE_SQLSTATE('O','X','2','0','0')
#define ERRCODE_OCX_INVALID_PROJECTION		MAKE_SQLSTATE('O','X','2','0','1')
#define ERRCODE_OCX_PROJECTION_STOPPED		MAKE_SQLSTATE('O','X','2','0','2')
#define ERRCODE_OCX_PROJECTION_CHANGED		MAKE_SQLSTATE('O','X','2','0','3')
#define ERRCODE_OCX_DEPRECATED_RETRY_POLICY MAKE_SQLSTATE('O','X','2','0','5')	/* a WARNING */
#define ERRCODE_OCX_WORKERS_NOT_LOADED		MAKE_SQLSTATE('O','X','2','1','0')
#define ERRCODE_OCX_LOG_HORIZON_HELD		MAKE_SQLSTATE('O','X','2','1','1')
#define ERRCODE_OCX_UNKNOWN_DEAD_LETTER		MAKE_SQLSTATE('O','X','2','2','0')
#define ERRCODE_OCX_CANNOT_WAIT				MAKE_SQLSTATE('O','X','2','3','0')
#define ERRCODE_OCX_SHADOW_REFUSED			MAKE_SQLSTATE('O','X','2','3','2')
#define ERRCODE_OCX_SHADOW_LIVE_WRITE		MAKE_SQLSTATE('O','X','2','3','3')

/* OX3xx: message bus, subscriptions, commands */
#define ERRCODE_OCX_UNKNOWN_SUBSCRIPTION	MAKE_SQLSTATE('O','X','3','0','0')
#define ERRCODE_OCX_INVALID_SUBSCRIPTION	MAKE_SQLSTATE('O','X','3','0','1')
#define ERRCODE_OCX_DUPLICATE_SUBSCRIPTION	MAKE_SQLSTATE('O','X','3','0','2')
#define ERRCODE_OCX_SUBSCRIPTION_LEASE_LOST	MAKE_SQLSTATE('O','X','3','0','3')
#define ERRCODE_OCX_PAYLOAD_TOO_LARGE		MAKE_SQLSTATE('O','X','3','1','0')
#define ERRCODE_OCX_INVALID_CHANNEL			MAKE_SQLSTATE('O','X','3','1','1')
#define ERRCODE_OCX_INVALID_PAYLOAD			MAKE_SQLSTATE('O','X','3','1','2')
#define ERRCODE_OCX_UNKNOWN_COMMAND			MAKE_SQLSTATE('O','X','3','2','0')
#define ERRCODE_OCX_DUPLICATE_HANDLER		MAKE_SQLSTATE('O','X','3','2','1')
#define ERRCODE_OCX_INVALID_COMMAND			MAKE_SQLSTATE('O','X','3','2','2')
#define ERRCODE_OCX_COMMAND_NOT_CLAIMED		MAKE_SQLSTATE('O','X','3','2','3')
#define ERRCODE_OCX_CLAIM_LOST				MAKE_SQLSTATE('O','X','3','2','4')
#define ERRCODE_OCX_COMMAND_NOT_CANCELLABLE	MAKE_SQLSTATE('O','X','3','2','5')

/* OX4xx: sagas */
#define ERRCODE_OCX_UNKNOWN_SAGA			MAKE_SQLSTATE('O','X','4','0','0')
#define ERRCODE_OCX_INVALID_SAGA			MAKE_SQLSTATE('O','X','4','0','1')
#define ERRCODE_OCX_SAGA_STATE				MAKE_SQLSTATE('O','X','4','0','2')
#define ERRCODE_OCX_INVALID_SAGA_ARGUMENT	MAKE_SQLSTATE('O','X','4','0','3')
#define ERRCODE_OCX_UNKNOWN_SAGA_INSTANCE	MAKE_SQLSTATE('O','X','4','0','4')
#define ERRCODE_OCX_DUPLICATE_SAGA_ID		MAKE_SQLSTATE('O','X','4','0','5')

/* OX5xx: security, tenancy, operations */
#define ERRCODE_OCX_INVALID_NAME			MAKE_SQLSTATE('O','X','5','0','0')
#define ERRCODE_OCX_DEPRECATED_NAME			MAKE_SQLSTATE('O','X','5','0','1')	/* a WARNING */
#define ERRCODE_OCX_AUTHOR_NOT_ALLOWED		MAKE_SQLSTATE('O','X','5','0','2')
#define ERRCODE_OCX_UNSAFE_SEARCH_PATH		MAKE_SQLSTATE('O','X','5','0','3')

/* OX600-OX619: tamper evidence (integrity.c, docs/integrity.md) */
#define ERRCODE_OCX_CHAIN_BROKEN			MAKE_SQLSTATE('O','X','6','0','0')
#define ERRCODE_OCX_INVALID_INTEGRITY_ARGUMENT	MAKE_SQLSTATE('O','X','6','0','1')
#define ERRCODE_OCX_SIGNING_KEY				MAKE_SQLSTATE('O','X','6','0','2')
#define ERRCODE_OCX_INTEGRITY_CRYPTO		MAKE_SQLSTATE('O','X','6','0','3')
#define ERRCODE_OCX_NOT_SEALED				MAKE_SQLSTATE('O','X','6','0','4')
#define ERRCODE_OCX_UNKNOWN_SEAL			MAKE_SQLSTATE('O','X','6','0','5')
#define ERRCODE_OCX_UNKNOWN_EVENT			MAKE_SQLSTATE('O','X','6','0','6')
/* OX62x: personal data (privacy.c, docs/privacy.md) */
#define ERRCODE_OCX_UNKNOWN_PERSONAL_DATA	MAKE_SQLSTATE('O','X','6','2','0')
#define ERRCODE_OCX_INVALID_PERSONAL_DATA	MAKE_SQLSTATE('O','X','6','2','1')
#define ERRCODE_OCX_PRIVACY_KEY_UNAVAILABLE	MAKE_SQLSTATE('O','X','6','2','2')
#define ERRCODE_OCX_PRIVACY_NO_SUBJECT		MAKE_SQLSTATE('O','X','6','2','3')
#define ERRCODE_OCX_PRIVACY_DECRYPT_FAILED	MAKE_SQLSTATE('O','X','6','2','4')
#define ERRCODE_OCX_INVALID_SUBJECT			MAKE_SQLSTATE('O','X','6','2','5')
#define ERRCODE_OCX_PRIVACY_NOT_ALLOWED		MAKE_SQLSTATE('O','X','6','2','6')
/* OX64x: what leaves the log, stream deletion and retention (removal.c) */
#define ERRCODE_OCX_UNKNOWN_RETENTION		MAKE_SQLSTATE('O','X','6','4','0')
#define ERRCODE_OCX_STREAM_DELETED			MAKE_SQLSTATE('O','X','6','4','1')
#define ERRCODE_OCX_EVENTS_REMOVED			MAKE_SQLSTATE('O','X','6','4','2')
#define ERRCODE_OCX_INVALID_RETENTION		MAKE_SQLSTATE('O','X','6','4','3')
/* OX66x: bulk import (import.c, 89a_import.sql; docs/migrating.md) */
#define ERRCODE_OCX_IMPORT_NOT_BEGUN		MAKE_SQLSTATE('O','X','6','6','0')
#define ERRCODE_OCX_IMPORT_UNSUPPORTED		MAKE_SQLSTATE('O','X','6','6','1')
/* OX68x: a partitioned log and its archive (logparts.c, 88p_partitioned_log.sql; docs/scaling.md) */
#define ERRCODE_OCX_LOG_NOT_PARTITIONED		MAKE_SQLSTATE('O','X','6','8','0')
#define ERRCODE_OCX_LOG_ALREADY_PARTITIONED	MAKE_SQLSTATE('O','X','6','8','1')
#define ERRCODE_OCX_ARCHIVE_NOT_CONSUMED	MAKE_SQLSTATE('O','X','6','8','2')
#define ERRCODE_OCX_EVENTS_ARCHIVED			MAKE_SQLSTATE('O','X','6','8','3')
#define ERRCODE_OCX_CANNOT_PARTITION		MAKE_SQLSTATE('O','X','6','8','4')
#define ERRCODE_OCX_NO_LOG_PARTITION		MAKE_SQLSTATE('O','X','6','8','5')
/* OX7xx: scaling out (Citus; docs/scaling.md) */
#define ERRCODE_OCX_NOT_DISTRIBUTABLE		MAKE_SQLSTATE('O','X','7','0','0')
#define ERRCODE_OCX_CITUS_MISSING			MAKE_SQLSTATE('O','X','7','0','1')
#define ERRCODE_OCX_ALREADY_DISTRIBUTED		MAKE_SQLSTATE('O','X','7','0','2')
#define ERRCODE_OCX_CONSUMERS_EXIST			MAKE_SQLSTATE('O','X','7','0','3')
#define ERRCODE_OCX_SUBSCRIBER_ON_CITUS		MAKE_SQLSTATE('O','X','7','0','4')

#endif							/* OCX_ERRORS_H */
