/*
 * ocx_security.h
 *		Who runs what: the owner-rights entry points and user code run as its
 *		author (src/security.c, docs/security.md).
 */
#ifndef OCX_SECURITY_H
#define OCX_SECURITY_H

#include "postgres.h"

/* The role that owns every ocx table and runs the entry points that write. */
#define OCX_OWNER_ROLE "ocx_owner"
/* The role the workers read the log as (every tenant, nothing but SELECT). */
#define OCX_WORKER_ROLE "ocx_worker"
/* The role an author of user code must still have the privileges of. */
#define OCX_AUTHOR_ROLE "ocx_admin"

extern Oid	OcxOwnerRole(void);
extern Oid	OcxWorkerRole(void);
extern Oid	OcxCaller(void);
extern Oid	OcxCallerRole(void);
extern Oid	OcxResolveFunctionAs(const char *signature, Oid role);

/*
 * Calling user code (upcasters, apply functions, projection and command
 * handlers, reset functions) as its author:
 *
 *	OcxUserCodeCheck(author, fn, what)   once per batch/read: may author still
 *										 run fn?  ERROR (OX502) if not
 *	OcxUserCodeBegin(author, &call)      before each call: a new settings
 *										 level with ocx's search_path, the
 *										 author as current user
 *	OcxUserCodeEnd(&call)                after it returns: settings the call
 *										 made are undone, the user restored
 *
 * A loop that calls user code per event may open a scope around it
 * (OcxUserCodeScopeBegin/End): ocx's search_path is then set once, and each
 * call's own level still undoes what that call changed.
 *
 * An error between Begin and End is cleaned up by the (sub)transaction abort
 * that follows it (it restores the user id and the settings levels).
 */
typedef struct OcxUserCall
{
	Oid			save_user;
	int			save_sec;
	int			nest_level;
} OcxUserCall;

extern void OcxUserCodeCheck(Oid author, Oid fn, const char *what);
extern int	OcxUserCodeScopeBegin(void);
extern void OcxUserCodeScopeEnd(int nest_level);
extern void OcxUserCodeBegin(Oid author, OcxUserCall *call);
extern void OcxUserCodeEnd(OcxUserCall *call);
extern void OcxUserCodeSchemaFirst(const char *schema);

#endif							/* OCX_SECURITY_H */
