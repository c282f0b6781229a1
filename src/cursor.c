/*
 * cursor.c
 *		The ocx.cursor type: a place in log order, the pair (txid, position).
 *
 * A fixed-size base type rather than a composite: every row a read returns
 * carries one, and a composite costs a heap tuple to build and record_out to
 * print per row (reads measured 35% slower).  Its text form is
 * "txid/global_position" (like pg_lsn's "X/Y"), so clients can store and pass
 * it as a plain string; ocx.txid() and ocx.global_position() take it apart,
 * ocx.cursor(txid, position) builds one, and btree operators order it the way
 * the log is ordered.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/xid8.h"

typedef struct OcxCursor
{
	uint64		txid;
	int64		position;
} OcxCursor;

#define DatumGetOcxCursor(d)	((OcxCursor *) DatumGetPointer(d))
#define PG_GETARG_OCX_CURSOR(n) DatumGetOcxCursor(PG_GETARG_DATUM(n))

PG_FUNCTION_INFO_V1(ocx_cursor_in);
PG_FUNCTION_INFO_V1(ocx_cursor_out);
PG_FUNCTION_INFO_V1(ocx_cursor_recv);
PG_FUNCTION_INFO_V1(ocx_cursor_send);
PG_FUNCTION_INFO_V1(ocx_cursor_make);
PG_FUNCTION_INFO_V1(ocx_cursor_txid);
PG_FUNCTION_INFO_V1(ocx_cursor_position);
PG_FUNCTION_INFO_V1(ocx_cursor_cmp);
PG_FUNCTION_INFO_V1(ocx_cursor_lt);
PG_FUNCTION_INFO_V1(ocx_cursor_le);
PG_FUNCTION_INFO_V1(ocx_cursor_eq);
PG_FUNCTION_INFO_V1(ocx_cursor_ne);
PG_FUNCTION_INFO_V1(ocx_cursor_ge);
PG_FUNCTION_INFO_V1(ocx_cursor_gt);

static OcxCursor *
MakeCursor(uint64 txid, int64 position)
{
	OcxCursor  *c;

	/* what ocx_cursor_in accepts: the text form must read back */
	if (position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("global position of a cursor must not be negative"),
				 errdetail("Got " INT64_FORMAT ".", position),
				 errhint("Global positions start at 1; 0 is before the first event.")));
	c = palloc(sizeof(OcxCursor));

	c->txid = txid;
	c->position = position;
	return c;
}

/* A cursor for C callers: ocx.last_append_cursor(), ocx.wait_for(). */
Datum
OcxCursorGetDatum(uint64 txid, int64 position)
{
	return PointerGetDatum(MakeCursor(txid, position));
}

/* The two halves of a cursor datum. */
void
OcxCursorParts(Datum cursor, uint64 *txid, int64 *position)
{
	OcxCursor  *c = DatumGetOcxCursor(cursor);

	*txid = c->txid;
	*position = c->position;
}

/* Parse an unsigned decimal; *p advances past it.  False if none or overflow. */
static bool
ParseDigits(const char **p, uint64 *out)
{
	const char *s = *p;
	uint64		v = 0;

	if (*s < '0' || *s > '9')
		return false;
	while (*s >= '0' && *s <= '9')
	{
		if (v > (PG_UINT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
		s++;
	}
	*p = s;
	*out = v;
	return true;
}

Datum
ocx_cursor_in(PG_FUNCTION_ARGS)
{
	const char *str = PG_GETARG_CSTRING(0);
	const char *p = str;
	uint64		txid,
				pos;

	if (!ParseDigits(&p, &txid) || *p++ != '/' || !ParseDigits(&p, &pos) ||
		*p != '\0' || pos > (uint64) PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_ARGUMENT),
				 errmsg("invalid input syntax for type ocx.cursor: \"%s\"", str),
				 errdetail("A cursor is written txid/global_position, such as 742/1051.")));
	PG_RETURN_POINTER(MakeCursor(txid, (int64) pos));
}

Datum
ocx_cursor_out(PG_FUNCTION_ARGS)
{
	OcxCursor  *c = PG_GETARG_OCX_CURSOR(0);
	char	   *buf = palloc(2 * MAXINT8LEN + 2);
	int			n;

	n = pg_ulltoa_n(c->txid, buf);
	buf[n++] = '/';
	n += pg_lltoa(c->position, buf + n);
	buf[n] = '\0';
	PG_RETURN_CSTRING(buf);
}

Datum
ocx_cursor_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	uint64		txid = (uint64) pq_getmsgint64(buf);
	int64		pos = pq_getmsgint64(buf);

	PG_RETURN_POINTER(MakeCursor(txid, pos));
}

Datum
ocx_cursor_send(PG_FUNCTION_ARGS)
{
	OcxCursor  *c = PG_GETARG_OCX_CURSOR(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint64(&buf, (int64) c->txid);
	pq_sendint64(&buf, c->position);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* ocx.cursor(txid xid8, global_position bigint) */
Datum
ocx_cursor_make(PG_FUNCTION_ARGS)
{
	PG_RETURN_POINTER(MakeCursor(U64FromFullTransactionId(PG_GETARG_FULLTRANSACTIONID(0)),
								 PG_GETARG_INT64(1)));
}

Datum
ocx_cursor_txid(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(FullTransactionIdFromU64(PG_GETARG_OCX_CURSOR(0)->txid));
}

Datum
ocx_cursor_position(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(PG_GETARG_OCX_CURSOR(0)->position);
}

/* Log order: by transaction, then by position within it. */
static int
CursorCmp(OcxCursor *a, OcxCursor *b)
{
	if (a->txid != b->txid)
		return a->txid < b->txid ? -1 : 1;
	if (a->position != b->position)
		return a->position < b->position ? -1 : 1;
	return 0;
}

#define CURSOR_CMP() CursorCmp(PG_GETARG_OCX_CURSOR(0), PG_GETARG_OCX_CURSOR(1))

Datum
ocx_cursor_cmp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(CURSOR_CMP());
}

Datum
ocx_cursor_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CURSOR_CMP() < 0);
}

Datum
ocx_cursor_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CURSOR_CMP() <= 0);
}

Datum
ocx_cursor_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CURSOR_CMP() == 0);
}

Datum
ocx_cursor_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CURSOR_CMP() != 0);
}

Datum
ocx_cursor_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CURSOR_CMP() >= 0);
}

Datum
ocx_cursor_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(CURSOR_CMP() > 0);
}
