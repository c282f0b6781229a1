/*
 * integrity.c
 *		Tamper evidence: the per-stream hash chain, the worker's Merkle seals
 *		of the log, their Ed25519 signatures and inclusion proofs.
 *
 * Every event's hash is SHA-256 over a canonical encoding of its stored
 * fields and of the previous event's hash in its stream (docs/integrity.md
 * gives the encoding byte by byte); the stream row holds the head.  The
 * single-event append statements compute the hash with ocx._event_hash() in
 * the statement that bumps the stream's version (append.c), a batch has its
 * hashes computed here (OcxChainBatch) from the head read under the stream
 * lock.  Nothing here keeps shared state: the one per-backend object is the
 * OpenSSL digest context (hash_ctx), allocated once and reused, so its size
 * is bounded.  Keys are read from their file for each signature and freed
 * at once.
 *
 * Seals follow the log order (txid, global_position) below the log horizon,
 * so an event is sealed only when nothing can commit before it any more; a
 * seal covers the events after the previous seal's last cursor, at most
 * ocx.seal_max_events of them, read as stored (cursor and hash) through the
 * one reader over the stored rows (reader.c, OcxReadLogStored).  The leaves,
 * root and signature are computed before the seal row is written, so the
 * sealing transaction holds an xid only for its insert.
 *
 * Who runs what: ocx._event_hash() runs as whoever appends (it reads nothing);
 * the worker unit seals as the worker's role; ocx.seal(), ocx.prove() and
 * the seal checks read ocx.events as the bootstrap superuser (row-level
 * security would hide other tenants' events, and a seal covers them all);
 * they are granted to ocx_admin only (docs/integrity.md, "Who may do what").
 */
#include "ocx.h"
#include "ocx_errors.h"

#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/err.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ocx_event_hash);
PG_FUNCTION_INFO_V1(ocx_seal);
PG_FUNCTION_INFO_V1(ocx_seal_problem);
PG_FUNCTION_INFO_V1(ocx_prove);

#define OCX_HASH_LEN	32
#define OCX_SIG_LEN		64

/* settings (docs/integrity.md) */
static bool ocx_chain = true;
static int	ocx_seal_interval = 10000;
static int	ocx_seal_max_events = 10000;
static char *ocx_seal_signing_key_file = NULL;

static EVP_MD_CTX *hash_ctx = NULL;

/* ------------------------------------------------------------------------
 * The canonical encoding
 * ------------------------------------------------------------------------
 */

static void
DigestFailed(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_INTEGRITY_CRYPTO),
			 errmsg("SHA-256 computation failed in libcrypto")));
}

static void
HashBegin(void)
{
	if (hash_ctx == NULL)
	{
		hash_ctx = EVP_MD_CTX_new();
		if (hash_ctx == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	if (EVP_DigestInit_ex(hash_ctx, EVP_sha256(), NULL) != 1)
		DigestFailed();
}

static void
HashBytes(const void *p, size_t len)
{
	if (len > 0 && EVP_DigestUpdate(hash_ctx, p, len) != 1)
		DigestFailed();
}

static void
HashEnd(uint8 *out)
{
	unsigned int len = 0;

	if (EVP_DigestFinal_ex(hash_ctx, out, &len) != 1 || len != OCX_HASH_LEN)
		DigestFailed();
}

/* a field: 0x00 for NULL, else 0x01, its length as 4 bytes big-endian, the bytes */
static void
HashField(const void *p, uint32 len)
{
	uint8		head[5];

	if (p == NULL)
	{
		head[0] = 0;
		HashBytes(head, 1);
		return;
	}
	head[0] = 1;
	head[1] = (uint8) (len >> 24);
	head[2] = (uint8) (len >> 16);
	head[3] = (uint8) (len >> 8);
	head[4] = (uint8) len;
	HashBytes(head, 5);
	HashBytes(p, len);
}

static void
HashInt(uint64 v, int bytes)
{
	uint8		b[8];
	int			i;

	for (i = 0; i < bytes; i++)
		b[i] = (uint8) (v >> (8 * (bytes - 1 - i)));
	HashField(b, bytes);
}

static void
HashJsonb(Jsonb *jb)
{
	char	   *s;

	if (jb == NULL)
	{
		HashField(NULL, 0);
		return;
	}
	s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	HashField(s, strlen(s));
	pfree(s);
}

/* tags: one field whose bytes are a field per element, in stored order */
static void
HashTags(char **tags, int ntags, bool isnull)
{
	uint32		len = 0;
	int			i;

	if (isnull)
	{
		HashField(NULL, 0);
		return;
	}
	for (i = 0; i < ntags; i++)
		len += tags[i] ? 5 + strlen(tags[i]) : 1;
	{
		uint8		head[5] = {1, (uint8) (len >> 24), (uint8) (len >> 16), (uint8) (len >> 8), (uint8) len};

		HashBytes(head, 5);
	}
	for (i = 0; i < ntags; i++)
		HashField(tags[i], tags[i] ? strlen(tags[i]) : 0);
}

/* The stored fields of one event, as ocx_event_hash and the batch path know them. */
typedef struct ChainEvent
{
	const uint8 *prev;			/* NULL: the stream's first event */
	const char *stream_id;
	int64		version;
	const pg_uuid_t *id;
	const char *source;
	const char *type;
	int32		schema_version;
	TimestampTz time;
	Jsonb	   *data;
	Jsonb	   *metadata;
	const pg_uuid_t *correlation_id;	/* NULL = SQL NULL */
	const pg_uuid_t *causation_id;
	const char *tenant_id;
	char	  **tags;
	int			ntags;
	bool		tags_null;
} ChainEvent;

#define OCX_EVENT_DOMAIN "ocx-event-v1"

static void
ChainHash(const ChainEvent *e, uint8 *out)
{
	HashBegin();
	HashBytes(OCX_EVENT_DOMAIN, strlen(OCX_EVENT_DOMAIN));
	HashField(e->prev, OCX_HASH_LEN);
	HashField(e->stream_id, strlen(e->stream_id));
	HashInt((uint64) e->version, 8);
	HashField(e->id->data, UUID_LEN);
	HashField(e->source, strlen(e->source));
	HashField(e->type, strlen(e->type));
	HashInt((uint64) (uint32) e->schema_version, 4);
	/* microseconds since 1970-01-01 00:00:00 UTC */
	HashInt((uint64) (e->time + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY), 8);
	HashJsonb(e->data);
	HashJsonb(e->metadata);
	HashField(e->correlation_id ? e->correlation_id->data : NULL, UUID_LEN);
	HashField(e->causation_id ? e->causation_id->data : NULL, UUID_LEN);
	HashField(e->tenant_id, e->tenant_id ? strlen(e->tenant_id) : 0);
	HashTags(e->tags, e->ntags, e->tags_null);
	HashEnd(out);
}

static bytea *
HashToBytea(const uint8 *h)
{
	bytea	   *b = palloc(VARHDRSZ + OCX_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + OCX_HASH_LEN);
	memcpy(VARDATA(b), h, OCX_HASH_LEN);
	return b;
}

/*
 * ocx._event_hash(prev, stream_id, version, event_id, source, type,
 * schema_version, time, data, metadata, correlation_id, causation_id,
 * tenant_id, tags): what the append stores in ocx.events.hash, and what
 * ocx.verify() recomputes.  Not strict: the NULLs are part of the encoding.
 */
Datum
ocx_event_hash(PG_FUNCTION_ARGS)
{
	ChainEvent	e;
	uint8		out[OCX_HASH_LEN];
	int			i;

	for (i = 1; i <= 7; i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_NULL();	/* a NOT NULL column was NULL: no hash */
	memset(&e, 0, sizeof(e));
	if (!PG_ARGISNULL(0))
	{
		bytea	   *p = PG_GETARG_BYTEA_PP(0);

		if (VARSIZE_ANY_EXHDR(p) != OCX_HASH_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_INTEGRITY_ARGUMENT),
					 errmsg("a previous hash must be %d bytes", OCX_HASH_LEN)));
		e.prev = (const uint8 *) VARDATA_ANY(p);
	}
	e.stream_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	e.version = PG_GETARG_INT64(2);
	e.id = PG_GETARG_UUID_P(3);
	e.source = text_to_cstring(PG_GETARG_TEXT_PP(4));
	e.type = text_to_cstring(PG_GETARG_TEXT_PP(5));
	e.schema_version = PG_GETARG_INT32(6);
	e.time = PG_GETARG_TIMESTAMPTZ(7);
	e.data = PG_ARGISNULL(8) ? NULL : PG_GETARG_JSONB_P(8);
	e.metadata = PG_ARGISNULL(9) ? NULL : PG_GETARG_JSONB_P(9);
	e.correlation_id = PG_ARGISNULL(10) ? NULL : PG_GETARG_UUID_P(10);
	e.causation_id = PG_ARGISNULL(11) ? NULL : PG_GETARG_UUID_P(11);
	e.tenant_id = PG_ARGISNULL(12) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(12));
	e.tags_null = PG_NARGS() < 14 || PG_ARGISNULL(13);
	if (!e.tags_null)
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(13);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		e.tags = palloc(sizeof(char *) * Max(n, 1));
		for (i = 0; i < n; i++)
			e.tags[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
		e.ntags = n;
	}
	ChainHash(&e, out);
	PG_RETURN_BYTEA_P(HashToBytea(out));
}

/*
 * Whether appends chain: the setting is on and ocx.events has the hash
 * column (a library newer than the schema, before ALTER EXTENSION UPDATE,
 * appends without it).  Three syscache probes.
 */
bool
OcxChainOn(void)
{
	Oid			ns;
	Oid			rel;

	if (!ocx_chain)
		return false;
	ns = get_namespace_oid("ocx", true);
	if (!OidIsValid(ns))
		return false;
	rel = get_relname_relid("events", ns);
	return OidIsValid(rel) && get_attnum(rel, "hash") != InvalidAttrNumber;
}

/*
 * The hashes of a batch at versions first .. first + n - 1 after prev (the
 * stream's head, NULL for a new stream): hashes[i] gets event i's as bytea.
 */
void
OcxChainBatch(bytea *prev, const char *sid, int64 first, OcxNewEvent *events, int n,
			  TimestampTz now, Datum *hashes)
{
	uint8		h[OCX_HASH_LEN];
	bool		have = prev != NULL;
	int			i;

	if (have)
	{
		if (VARSIZE_ANY_EXHDR(prev) != OCX_HASH_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_CHAIN_BROKEN),
					 errmsg("the head of stream \"%s\" is not a SHA-256 hash", sid)));
		memcpy(h, VARDATA_ANY(prev), OCX_HASH_LEN);
	}
	for (i = 0; i < n; i++)
	{
		OcxNewEvent *ev = &events[i];
		ChainEvent	e;
		uint8		prevh[OCX_HASH_LEN];

		memcpy(prevh, h, OCX_HASH_LEN);
		e.prev = have ? prevh : NULL;
		e.stream_id = sid;
		e.version = first + i;
		e.id = &ev->id;
		e.source = ev->source;
		e.type = ev->type;
		e.schema_version = ev->schema_version;
		e.time = ev->has_time ? ev->time : now;
		e.data = ev->data;
		e.metadata = ev->metadata;
		e.correlation_id = ev->has_correlation_id ? &ev->correlation_id : NULL;
		e.causation_id = ev->has_causation_id ? &ev->causation_id : NULL;
		e.tenant_id = OcxSessionTenant();
		e.tags = ev->tags;
		e.ntags = ev->ntags;
		e.tags_null = ev->ntags == 0;
		ChainHash(&e, h);
		have = true;
		hashes[i] = PointerGetDatum(HashToBytea(h));
	}
}

/* ------------------------------------------------------------------------
 * Merkle trees
 * ------------------------------------------------------------------------
 */

/* leaf = SHA-256(0x00 || txid (8 bytes BE) || global_position (8 bytes BE) || event hash) */
static void
LeafHash(uint64 txid, int64 position, const uint8 *event_hash, uint8 *out)
{
	uint8		b[1 + 8 + 8];
	static const uint8 zero[OCX_HASH_LEN] = {0};
	int			i;

	b[0] = 0;
	for (i = 0; i < 8; i++)
	{
		b[1 + i] = (uint8) (txid >> (56 - 8 * i));
		b[9 + i] = (uint8) ((uint64) position >> (56 - 8 * i));
	}
	HashBegin();
	HashBytes(b, sizeof(b));
	HashBytes(event_hash ? event_hash : zero, OCX_HASH_LEN);
	HashEnd(out);
}

/* node = SHA-256(0x01 || left || right) */
static void
NodeHash(const uint8 *l, const uint8 *r, uint8 *out)
{
	uint8		one = 1;

	HashBegin();
	HashBytes(&one, 1);
	HashBytes(l, OCX_HASH_LEN);
	HashBytes(r, OCX_HASH_LEN);
	HashEnd(out);
}

static void
AppendHex(StringInfo buf, const uint8 *p, int len)
{
	static const char hex[] = "0123456789abcdef";
	int			i;

	for (i = 0; i < len; i++)
	{
		appendStringInfoChar(buf, hex[p[i] >> 4]);
		appendStringInfoChar(buf, hex[p[i] & 15]);
	}
}

/*
 * Fold n leaves (overwritten) into the root.  A level of odd length carries
 * its last node up unchanged.  With target >= 0 and path != NULL, appends
 * the proof path of leaf target as JSON array elements.
 */
static void
MerkleRoot(uint8 (*nodes)[OCX_HASH_LEN], int n, int target, StringInfo path, uint8 *root)
{
	bool		first = true;

	while (n > 1)
	{
		int			m = 0;
		int			i;

		for (i = 0; i < n; i += 2)
		{
			if (i + 1 < n)
			{
				if (path && (target == i || target == i + 1))
				{
					bool		left = target == i + 1;

					appendStringInfo(path, "%s{\"side\": \"%s\", \"hash\": \"", first ? "" : ", ",
									 left ? "left" : "right");
					AppendHex(path, nodes[left ? i : i + 1], OCX_HASH_LEN);
					appendStringInfoString(path, "\"}");
					first = false;
				}
				NodeHash(nodes[i], nodes[i + 1], nodes[m]);
			}
			else
				memmove(nodes[m], nodes[i], OCX_HASH_LEN);
			m++;
		}
		target /= 2;
		n = m;
	}
	memcpy(root, nodes[0], OCX_HASH_LEN);
}

/* ------------------------------------------------------------------------
 * Signatures
 * ------------------------------------------------------------------------
 */

/* the signed message: "ocx-seal-v1", first txid/position, last txid/position, count (8 bytes BE each), root */
static void
SealMessage(uint64 ft, int64 fp, uint64 lt, int64 lp, int64 count, const uint8 *root, uint8 *msg)
{
	uint64		v[5] = {ft, (uint64) fp, lt, (uint64) lp, (uint64) count};
	int			i,
				k;

	memcpy(msg, "ocx-seal-v1", 11);
	for (k = 0; k < 5; k++)
		for (i = 0; i < 8; i++)
			msg[11 + 8 * k + i] = (uint8) (v[k] >> (56 - 8 * i));
	memcpy(msg + 51, root, OCX_HASH_LEN);
}

#define OCX_SEAL_MSG_LEN (11 + 40 + OCX_HASH_LEN)

static void
CryptoError(int sqlstate, const char *what)
{
	unsigned long e = ERR_get_error();
	char		buf[256];

	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", what),
			 e ? errdetail("libcrypto: %s", buf) : 0));
}

/* key id: the first 8 bytes of SHA-256 of the raw 32-byte public key, in hex */
static bool
KeyIdOf(EVP_PKEY *pkey, char **key_id)
{
	uint8		raw[64];
	size_t		len = sizeof(raw);
	uint8		h[OCX_HASH_LEN];
	unsigned int hlen = 0;
	StringInfoData buf;

	if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 ||
		EVP_Digest(raw, len, h, &hlen, EVP_sha256(), NULL) != 1)
		return false;
	initStringInfo(&buf);
	AppendHex(&buf, h, 8);
	*key_id = buf.data;
	return true;
}

/*
 * Sign msg with the key in ocx.seal_signing_key_file; returns false when no
 * file is set.  The file must be readable by its owner only (0600 or 0400).
 */
static bool
SignSeal(const uint8 *msg, size_t msglen, uint8 *sig, char **key_id)
{
	const char *path = ocx_seal_signing_key_file;
	struct stat st;
	FILE	   *f;
	EVP_PKEY   *pkey;
	EVP_MD_CTX *ctx;
	size_t		siglen = OCX_SIG_LEN;
	bool		ok;

	if (path == NULL || path[0] == '\0')
		return false;
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_SIGNING_KEY),
				 errmsg("could not stat ocx.seal_signing_key_file \"%s\": %m", path)));
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_SIGNING_KEY),
				 errmsg("ocx.seal_signing_key_file \"%s\" is readable by others", path),
				 errdetail("Its mode is %04o; a private key must be readable by its owner only.",
						   (unsigned) (st.st_mode & 07777)),
				 errhint("chmod 0600 the file.")));
	f = AllocateFile(path, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_SIGNING_KEY),
				 errmsg("could not open ocx.seal_signing_key_file \"%s\": %m", path)));
	pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	FreeFile(f);
	/* no ereport while OpenSSL objects are held: they are freed first */
	if (pkey == NULL)
		CryptoError(ERRCODE_OCX_SIGNING_KEY, "ocx.seal_signing_key_file holds no PEM private key");
	if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519)
	{
		EVP_PKEY_free(pkey);
		ereport(ERROR,
				(errcode(ERRCODE_OCX_SIGNING_KEY),
				 errmsg("ocx.seal_signing_key_file holds no Ed25519 key"),
				 errhint("Create one with: openssl genpkey -algorithm ed25519 -out seal.pem")));
	}
	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL &&
		EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, msg, msglen) == 1 && siglen == OCX_SIG_LEN;
	if (ctx)
		EVP_MD_CTX_free(ctx);
	if (ok)
		ok = KeyIdOf(pkey, key_id);
	EVP_PKEY_free(pkey);
	if (!ok)
		CryptoError(ERRCODE_OCX_INTEGRITY_CRYPTO, "could not sign a seal");
	return true;
}

/* Whether sig is msg's Ed25519 signature under the PEM public key pem. */
static bool
CheckSignature(const char *pem, const uint8 *msg, size_t msglen, const uint8 *sig, size_t siglen)
{
	BIO		   *bio;
	EVP_PKEY   *pkey;
	EVP_MD_CTX *ctx;
	bool		ok;

	/* no ereport while OpenSSL objects are held: they are freed first */
	bio = BIO_new_mem_buf(pem, (int) strlen(pem));
	if (bio == NULL)
		CryptoError(ERRCODE_OUT_OF_MEMORY, "out of memory");
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL || EVP_PKEY_id(pkey) != EVP_PKEY_ED25519)
	{
		if (pkey)
			EVP_PKEY_free(pkey);
		ERR_clear_error();
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_INTEGRITY_ARGUMENT),
				 errmsg("public_key is not a PEM Ed25519 public key"),
				 errhint("Give the text of \"openssl pkey -in seal.pem -pubout\".")));
	}
	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		EVP_DigestVerify(ctx, sig, siglen, msg, msglen) == 1;
	if (ctx)
		EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return ok;
}

/* ------------------------------------------------------------------------
 * Sealing
 * ------------------------------------------------------------------------
 */

static SPIPlanPtr plan_last_seal;
static SPIPlanPtr plan_insert_seal;

static uint64
Xid8Value(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;

	return U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, col, &isnull)));
}

/* events from rows of (txid, global_position, hash): leaves into *leaves */
static uint8 (*LeavesOf(SPITupleTable *tt, uint64 n))[OCX_HASH_LEN]
{
	uint8		(*leaves)[OCX_HASH_LEN] = palloc(sizeof(*leaves) * Max(n, 1));
	uint64		i;

	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		h;
		uint64		txid = Xid8Value(tt->vals[i], tt->tupdesc, 1);
		int64		pos = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		const uint8 *hp = NULL;

		h = SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull);
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPP(h);

			if (VARSIZE_ANY_EXHDR(b) == OCX_HASH_LEN)
				hp = (const uint8 *) VARDATA_ANY(b);
		}
		LeafHash(txid, pos, hp, leaves[i]);
	}
	return leaves;
}

/*
 * Seal the next events in log order; returns the number sealed (0: nothing
 * to seal, or not due).  force: seal whatever is below the horizon now.
 * *full: the seal took ocx.seal_max_events (more may wait).  Runs inside
 * SPI, as the bootstrap superuser for its reads and writes.
 */
static int64
SealNow(bool force, bool *full, int64 *seal_id)
{
	Datum		horizon;
	uint64		ft = 0,
				lt;
	int64		fp = 0,
				lp;
	uint64		n;
	bool		isnull;
	uint8		(*leaves)[OCX_HASH_LEN];
	uint8		root[OCX_HASH_LEN];
	uint8		msg[OCX_SEAL_MSG_LEN];
	uint8		sig[OCX_SIG_LEN];
	char	   *key_id = NULL;
	bool		signed_ = false;
	Datum		iargs[9];
	char		inulls[9];
	int			max = Max(ocx_seal_max_events, 1);

	*full = false;
	*seal_id = 0;
	/*
	 * Not read-only: a fresh snapshot after a command counter increment, so
	 * that a seal made earlier in the same statement (SELECT ocx.seal() FROM
	 * generate_series(1, 3)) is seen and its range is not sealed again.
	 */
	if (SPI_execute_plan(OcxKeptPlan(&plan_last_seal,
									 "SELECT ocx.txid(last_cursor), ocx.global_position(last_cursor), "
									 "pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) sealed_at "
									 "OPERATOR(pg_catalog.>=) pg_catalog.make_interval(secs => $1::float8 / 1000), "
									 "events OPERATOR(pg_catalog.>=) $2 "
									 "FROM ocx.seals ORDER BY seal_id DESC LIMIT 1",
									 2, (Oid[]) {INT4OID, INT8OID}),
						 (Datum[]) {Int32GetDatum(ocx_seal_interval), Int64GetDatum(max)},
						 NULL, false, 1) < 0)
		elog(ERROR, "ocx: reading the last seal failed");
	if (SPI_processed > 0)
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		due = DatumGetBool(SPI_getbinval(t, d, 3, &isnull));
		bool		was_full = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));

		ft = Xid8Value(t, d, 1);
		fp = DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
		if (!force && !due && !was_full)
			return 0;
	}

	/*
	 * The horizon first, as a value: on a distributed log (Citus) a call of
	 * ocx.log_horizon() inside the read would be sent to the workers and
	 * evaluated there, against each worker's own transaction ids.
	 */
	if (SPI_execute("SELECT ocx.log_horizon()", true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "ocx: taking the log horizon failed");
	horizon = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

	/* the one reader over the stored rows (reader.c): cursor and hash as stored */
	n = OcxReadLogStored(ft, fp, max, U64FromFullTransactionId(DatumGetFullTransactionId(horizon)));
	if (n == 0)
		return 0;
	*full = n >= (uint64) max;
	ft = Xid8Value(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	fp = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	lt = Xid8Value(SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc, 1);
	lp = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc, 2, &isnull));
	leaves = LeavesOf(SPI_tuptable, n);
	MerkleRoot(leaves, (int) n, -1, NULL, root);
	pfree(leaves);
	SealMessage(ft, fp, lt, lp, (int64) n, root, msg);
	signed_ = SignSeal(msg, sizeof(msg), sig, &key_id);

	/* the seal transaction takes its xid here, for the insert and the commit only */
	memset(inulls, ' ', sizeof(inulls));
	iargs[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(ft));
	iargs[1] = Int64GetDatum(fp);
	iargs[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(lt));
	iargs[3] = Int64GetDatum(lp);
	iargs[4] = Int64GetDatum((int64) n);
	iargs[5] = PointerGetDatum(HashToBytea(root));
	if (signed_)
	{
		bytea	   *s = palloc(VARHDRSZ + OCX_SIG_LEN);

		SET_VARSIZE(s, VARHDRSZ + OCX_SIG_LEN);
		memcpy(VARDATA(s), sig, OCX_SIG_LEN);
		iargs[6] = PointerGetDatum(s);
		iargs[7] = CStringGetTextDatum(key_id);
	}
	else
		inulls[6] = inulls[7] = 'n';
	if (SPI_execute_plan(OcxKeptPlan(&plan_insert_seal,
									 "INSERT INTO ocx.seals (first_cursor, last_cursor, events, root, signature, key_id) "
									 "VALUES (ocx.cursor($1, $2), ocx.cursor($3, $4), $5, $6, $7, $8) RETURNING seal_id",
									 8, (Oid[]) {XID8OID, INT8OID, XID8OID, INT8OID, INT8OID, BYTEAOID, BYTEAOID, TEXTOID}),
						 iargs, inulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "ocx: writing a seal failed");
	*seal_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return (int64) n;
}

/* Does ocx.seals exist (the schema may predate it, before ALTER EXTENSION UPDATE)? */
static bool
SealsExist(void)
{
	Oid			ns = get_namespace_oid("ocx", true);

	return OidIsValid(ns) && OidIsValid(get_relname_relid("seals", ns));
}

typedef struct SealRun
{
	bool		force;
	bool		full;
	int64		sealed;
	int64		seal_id;
} SealRun;

static void
SealAsSuperuser(SealRun *run)
{
	Oid			save_user;
	int			save_sec;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "ocx: SPI_connect failed");
		run->sealed = SealNow(run->force, &run->full, &run->seal_id);
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
}

/*
 * The worker unit (pool.c, UNIT_INTEGRITY): seal when due.  Returns whether
 * it sealed a full batch (call again at once).
 */
bool
OcxIntegrityTick(void)
{
	SealRun		run = {false, false, 0, 0};

	if (ocx_seal_interval <= 0 || !SealsExist())
		return false;
	/* bookkeeping only: the seal's xid holds back no reader (appenders.c) */
	OcxBystanderEnter();
	SealAsSuperuser(&run);
	return run.full;
}

/* ocx.seal(): seal what is below the horizon now; returns the seal id or NULL */
Datum
ocx_seal(PG_FUNCTION_ARGS)
{
	SealRun		run = {true, false, 0, 0};

	SealAsSuperuser(&run);
	if (run.sealed == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(run.seal_id);
}

/* ------------------------------------------------------------------------
 * Checking seals and proving inclusion
 * ------------------------------------------------------------------------
 */

typedef struct SealRow
{
	int64		seal_id;
	uint64		ft,
				lt;
	int64		fp,
				lp;
	int64		events;
	bytea	   *root;
	bytea	   *signature;		/* NULL: unsigned */
	char	   *key_id;
	char	   *sealed_at;
} SealRow;

static bool
FetchSeal(const char *where, Datum arg, Oid argtype, SealRow *s)
{
	char	   *sql = psprintf("SELECT s.seal_id, ocx.txid(s.first_cursor), ocx.global_position(s.first_cursor), "
							   "ocx.txid(s.last_cursor), ocx.global_position(s.last_cursor), s.events, s.root, "
							   "s.signature, s.key_id, s.sealed_at::text FROM ocx.seals s WHERE %s "
							   "ORDER BY s.seal_id LIMIT 1", where);
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;
	Datum		v;

	if (SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "ocx: reading a seal failed");
	if (SPI_processed == 0)
		return false;
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	s->seal_id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
	s->ft = Xid8Value(t, d, 2);
	s->fp = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
	s->lt = Xid8Value(t, d, 4);
	s->lp = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
	s->events = DatumGetInt64(SPI_getbinval(t, d, 6, &isnull));
	s->root = DatumGetByteaPCopy(SPI_getbinval(t, d, 7, &isnull));
	v = SPI_getbinval(t, d, 8, &isnull);
	s->signature = isnull ? NULL : DatumGetByteaPCopy(v);
	s->key_id = SPI_getvalue(t, d, 9);
	s->sealed_at = SPI_getvalue(t, d, 10);
	return true;
}

/* the seal's events, in log order, into SPI_tuptable (txid, global_position, hash) */
static uint64
FetchSealRange(SealRow *s)
{
	Oid			types[4] = {XID8OID, INT8OID, XID8OID, INT8OID};
	Datum		args[4];

	/*
	 * A partitioned log's archive holds the events of the partitions that
	 * ocx.archive moved: a seal covers them still.
	 */
	const char *from = OcxLogPartitioned()
		? "(SELECT l.txid, l.global_position, l.hash FROM ocx.events l UNION ALL "
		"SELECT a.txid, a.global_position, a.hash FROM ocx_archive.events a)"
		: "ocx.events";
	char	   *sql = psprintf("SELECT e.txid, e.global_position, e.hash FROM %s e "
							   "WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>=) ($1, $2) "
							   "AND (e.txid, e.global_position) OPERATOR(pg_catalog.<=) ($3, $4) "
							   "ORDER BY e.txid, e.global_position", from);

	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(s->ft));
	args[1] = Int64GetDatum(s->fp);
	args[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(s->lt));
	args[3] = Int64GetDatum(s->lp);
	if (SPI_execute_with_args(sql, 4, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "ocx: reading a seal's events failed");
	return SPI_processed;
}

/*
 * What is wrong with seal seal_id, or NULL: its events no longer give its
 * count or root, or (with a public key) its signature does not verify.
 */
static char *
SealProblem(int64 seal_id, const char *pem)
{
	SealRow		s;
	uint64		n;
	uint8		(*leaves)[OCX_HASH_LEN];
	uint8		root[OCX_HASH_LEN];
	uint8		msg[OCX_SEAL_MSG_LEN];

	if (!FetchSeal("s.seal_id OPERATOR(pg_catalog.=) $1", Int64GetDatum(seal_id), INT8OID, &s))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_UNKNOWN_SEAL),
				 errmsg("seal %lld does not exist", (long long) seal_id)));
	n = FetchSealRange(&s);
	if ((int64) n != s.events)
		return psprintf("seal holds %lld events, the log has %llu in its range",
						(long long) s.events, (unsigned long long) n);
	if (VARSIZE_ANY_EXHDR(s.root) != OCX_HASH_LEN)
		return pstrdup("seal root is not a SHA-256 hash");
	leaves = LeavesOf(SPI_tuptable, n);
	MerkleRoot(leaves, (int) n, -1, NULL, root);
	pfree(leaves);
	if (memcmp(root, VARDATA_ANY(s.root), OCX_HASH_LEN) != 0)
		return pstrdup("seal root does not match its events");
	if (pem == NULL)
		return NULL;
	if (s.signature == NULL)
		return pstrdup("seal is not signed");
	SealMessage(s.ft, s.fp, s.lt, s.lp, s.events, root, msg);
	if (!CheckSignature(pem, msg, sizeof(msg), (const uint8 *) VARDATA_ANY(s.signature),
						VARSIZE_ANY_EXHDR(s.signature)))
		return pstrdup("seal signature does not verify with the public key");
	return NULL;
}

/* ocx._seal_problem(seal_id bigint, public_key text): NULL when the seal checks out */
Datum
ocx_seal_problem(PG_FUNCTION_ARGS)
{
	int64		seal_id = PG_GETARG_INT64(0);
	char	   *pem = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *volatile problem = NULL;
	Oid			save_user;
	int			save_sec;
	MemoryContext cxt = CurrentMemoryContext;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		char	   *p;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "ocx: SPI_connect failed");
		p = SealProblem(seal_id, pem);
		if (p)
			problem = MemoryContextStrdup(cxt, p);
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

static void
JsonString(StringInfo buf, const char *key, const char *val, bool comma)
{
	if (comma)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	if (val == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, val);
}

static void
JsonHex(StringInfo buf, const char *key, bytea *b)
{
	appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	if (b == NULL)
		appendStringInfoString(buf, "null");
	else
	{
		appendStringInfoChar(buf, '"');
		AppendHex(buf, (const uint8 *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
		appendStringInfoChar(buf, '"');
	}
}

/*
 * The proof of one event as JSON text (docs/integrity.md, "Proofs"): the
 * event's stored fields, its previous hash, its hash, leaf, the path of
 * sibling hashes up to the root and the seal.
 */
static char *
Prove(pg_uuid_t *event_id)
{
	StringInfoData buf;
	Oid			uuidtype = UUIDOID;
	Datum		arg = UUIDPGetDatum(event_id);
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;
	uint64		txid,
				n,
				i;
	int64		pos;
	int64		target = -1;
	SealRow		s;
	Datum		cur;
	uint8		(*leaves)[OCX_HASH_LEN];
	uint8		root[OCX_HASH_LEN];
	uint8		leaf[OCX_HASH_LEN];
	uint8		msg[OCX_SEAL_MSG_LEN];
	StringInfoData path;
	const char *names[] = {"stream_id", "stream_version", "event_id", "source", "type",
		"schema_version", "time_us", "data", "metadata", "correlation_id",
	"causation_id", "tenant_id", "tags", "txid", "global_position"};
	int			c;

	if (SPI_execute_with_args(
							  "SELECT e.stream_id, e.stream_version::text, e.event_id::text, e.source, e.type, "
							  "e.schema_version::text, "
							  "(pg_catalog.extract('epoch'::text, e.time) OPERATOR(pg_catalog.*) 1000000)::bigint::text, "
							  "e.data::text, e.metadata::text, e.correlation_id::text, e.causation_id::text, "
							  "e.tenant_id, pg_catalog.to_jsonb(e.tags)::text, e.txid::text, e.global_position::text, "
							  "e.hash, ocx.cursor(e.txid, e.global_position), "
							  "(SELECT p.hash FROM ocx.events p WHERE p.stream_id OPERATOR(pg_catalog.=) e.stream_id "
							  " AND p.stream_version OPERATOR(pg_catalog.=) (e.stream_version OPERATOR(pg_catalog.-) 1)), "
							  "(SELECT r.last_hash FROM ocx.removals r WHERE r.stream_id OPERATOR(pg_catalog.=) e.stream_id "
							  " AND r.last_version OPERATOR(pg_catalog.=) (e.stream_version OPERATOR(pg_catalog.-) 1) LIMIT 1) "
							  "FROM ocx.events e WHERE e.event_id OPERATOR(pg_catalog.=) $1 "
							  "ORDER BY e.global_position LIMIT 1",
							  1, &uuidtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "ocx: reading the event to prove failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_UNKNOWN_EVENT),
				 errmsg("event %s does not exist", DatumGetCString(DirectFunctionCall1(uuid_out, arg)))));
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"event\": {");
	for (c = 0; c < 15; c++)
	{
		char	   *v = SPI_getvalue(t, d, c + 1);

		if (c == 1 || c == 5 || c == 6 || c == 12 || c == 14)
		{
			/* numbers and the tags array as JSON values */
			appendStringInfo(&buf, "%s\"%s\": %s", c ? ", " : "", names[c], v ? v : "null");
		}
		else
			JsonString(&buf, names[c], v, c > 0);
	}
	appendStringInfoChar(&buf, '}');
	{
		Datum		h = SPI_getbinval(t, d, 16, &isnull);
		bytea	   *hash = isnull ? NULL : DatumGetByteaPCopy(h);
		Datum		p = SPI_getbinval(t, d, 18, &isnull);
		bytea	   *prev = isnull ? NULL : DatumGetByteaPCopy(p);

		if (prev == NULL)
		{
			p = SPI_getbinval(t, d, 19, &isnull);
			prev = isnull ? NULL : DatumGetByteaPCopy(p);
		}
		JsonHex(&buf, "prev", prev);
		JsonHex(&buf, "hash", hash);
	}
	txid = strtou64(SPI_getvalue(t, d, 14), NULL, 10);
	pos = strtoi64(SPI_getvalue(t, d, 15), NULL, 10);
	cur = SPI_getbinval(t, d, 17, &isnull);
	cur = PointerGetDatum(DatumGetPointer(datumCopy(cur, false, 16)));

	if (!FetchSeal("s.first_cursor OPERATOR(ocx.<=) $1 AND s.last_cursor OPERATOR(ocx.>=) $1",
				   cur, SPI_gettypeid(d, 17), &s))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_NOT_SEALED),
				 errmsg("event %s is not sealed yet", DatumGetCString(DirectFunctionCall1(uuid_out, arg))),
				 errhint("The worker seals the log every ocx.seal_interval; ocx.seal() seals now.")));
	n = FetchSealRange(&s);
	for (i = 0; i < n; i++)
	{
		HeapTuple	r = SPI_tuptable->vals[i];

		if (Xid8Value(r, SPI_tuptable->tupdesc, 1) == txid &&
			DatumGetInt64(SPI_getbinval(r, SPI_tuptable->tupdesc, 2, &isnull)) == pos)
			target = (int64) i;
	}
	if (target < 0)
		elog(ERROR, "ocx: the event is not in its seal's range");
	leaves = LeavesOf(SPI_tuptable, n);
	memcpy(leaf, leaves[target], OCX_HASH_LEN);
	initStringInfo(&path);
	MerkleRoot(leaves, (int) n, (int) target, &path, root);
	pfree(leaves);
	appendStringInfoString(&buf, ", \"leaf\": \"");
	AppendHex(&buf, leaf, OCX_HASH_LEN);
	appendStringInfo(&buf, "\", \"index\": %lld, \"path\": [%s], \"root\": \"", (long long) target, path.data);
	AppendHex(&buf, root, OCX_HASH_LEN);
	appendStringInfo(&buf, "\", \"seal\": {\"seal_id\": %lld, \"first_txid\": \"%llu\", \"first_position\": %lld, "
					 "\"last_txid\": \"%llu\", \"last_position\": %lld, \"events\": %lld",
					 (long long) s.seal_id, (unsigned long long) s.ft, (long long) s.fp,
					 (unsigned long long) s.lt, (long long) s.lp, (long long) s.events);
	JsonHex(&buf, "root", s.root);
	JsonString(&buf, "sealed_at", s.sealed_at, true);
	JsonHex(&buf, "signature", s.signature);
	JsonString(&buf, "key_id", s.key_id, true);
	if (VARSIZE_ANY_EXHDR(s.root) == OCX_HASH_LEN)
	{
		bytea	   *m = palloc(VARHDRSZ + OCX_SEAL_MSG_LEN);

		SealMessage(s.ft, s.fp, s.lt, s.lp, s.events, (const uint8 *) VARDATA_ANY(s.root), msg);
		SET_VARSIZE(m, VARHDRSZ + OCX_SEAL_MSG_LEN);
		memcpy(VARDATA(m), msg, OCX_SEAL_MSG_LEN);
		JsonHex(&buf, "message", m);
	}
	appendStringInfoString(&buf, "}}");
	return buf.data;
}

/* ocx.prove(event_id uuid) returns jsonb */
Datum
ocx_prove(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id = PG_GETARG_UUID_P(0);
	char	   *volatile json = NULL;
	Oid			save_user;
	int			save_sec;
	MemoryContext cxt = CurrentMemoryContext;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "ocx: SPI_connect failed");
		json = MemoryContextStrdup(cxt, Prove(id));
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

/* ------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------
 */

void
OcxIntegrityInit(void)
{
	DefineCustomBoolVariable("ocx.chain",
							 gettext_noop("Whether appends hash and chain their events (a benchmark and test switch)."),
							 gettext_noop("Events appended with it off carry no hash, and ocx.verify() reports each of them."),
							 &ocx_chain, true,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ocx.seal_interval",
							gettext_noop("How often the worker seals the log into a Merkle checkpoint; 0 turns worker sealing off."),
							NULL,
							&ocx_seal_interval,
							10000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ocx.seal_max_events",
							gettext_noop("Most events one seal covers; a full seal is followed by the next at once."),
							NULL,
							&ocx_seal_max_events,
							10000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ocx.seal_signing_key_file",
							   gettext_noop("PEM file of the Ed25519 private key seals are signed with; empty: seals are not signed."),
							   gettext_noop("The file must be readable by its owner only (mode 0600 or 0400)."),
							   &ocx_seal_signing_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
}
