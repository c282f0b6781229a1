/*
 * ocx_jsonc.h
 *		json-c, with which the compilers of declarative definitions (contract.c,
 *		upcast.c, reducer.c) read their JSON text once per backend.
 *
 * fmgrprotos.h declares the SQL function json_object, which clashes with
 * json-c's type: a file that includes it defines json_object to another name
 * before its PostgreSQL headers, undefines it after them, and includes this
 * header last.
 */
#ifndef OCX_JSONC_H
#define OCX_JSONC_H

#include <json-c/json.h>

/*
 * jsonutil.c: parse JSON text with json-c within the bounds of definitions
 * (OCX_MAX_DEFINITION_SIZE and _DEPTH, raising OX112); malformed text raises
 * errcode, naming what.  The caller owns the result (json_object_put).
 */
extern json_object *OcxParseJsonC(const char *json, int errcode, const char *what);

#endif							/* OCX_JSONC_H */
