/*
 * privacy.c
 *		Crypto-shredding of personal data (issue 14; docs/privacy.md).
 *
 * ocx.define_personal_data(type, subject, fields) names, for one event type,
 * the path of the data subject's id and the paths of personal fields.  On
 * append (OcxPrivacyProtect, called by OcxAppend once the event ids are
 * final) each personal field's value is replaced by a marker string
 *
 *		ocx:pd1:<key id>:<base64(nonce | ciphertext | tag)>
 *
 * AES-256-GCM under the subject's data key; the plaintext is the value's
 * jsonb serialisation, the associated data is event id | key id | path, so
 * a marker copied into another event or field does not decrypt.  Data keys
 * (one per subject, created on first use) live in ocx.subject_keys
 * (owner-only), wrapped by the key-encryption key read from the file named
 * by ocx.privacy_key_file.
 *
 * Every reader passes data through ocx._reveal (and metadata through
 * ocx._reveal_metadata): markers become the clear values for roles with
 * the privileges of ocx_personal_data (and superusers and ocx_worker), JSON
 * null for others; a marker whose key was destroyed (ocx.forget_subject)
 * reads as null and the event's metadata gains "erased": true.
 *
 * Per-backend state, all bounded: the definitions of ocx.personal_data, up
 * to PD_MAX_KEYS data keys (by key id and by subject), one EVP context, the
 * key-encryption key.  Both caches are dropped by a relcache invalidation
 * of ocx.personal_data or ocx.subject_keys (define/drop/forget send one),
 * and the key caches on the abort of a transaction that created a key.
 *
 * As whom: the append runs as ocx_owner (the append entry points are
 * SECURITY DEFINER); the reveal runs as the reader and reads
 * ocx.subject_keys as ocx_owner (SetUserIdAndSecContext) only to unwrap a
 * key.  A subject's append and its forget_subject serialise on a lock on
 * the subject (an advisory lock tag of ocx's own, field4 PD_LOCK_FIELD4).
 */
#include "ocx.h"
#include "ocx_errors.h"
#include "ocx_security.h"

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#define PD_MARKER_PREFIX "ocx:pd1:"
#define PD_MARKER_PREFIX_LEN 8
#define PD_UUID_TEXT_LEN 36
#define PD_KEY_LEN 32
#define PD_NONCE_LEN 12
#define PD_TAG_LEN 16
#define PD_WRAPPED_LEN (PD_NONCE_LEN + PD_KEY_LEN + PD_TAG_LEN)
#define PD_MAX_KEYS 1024
#define PD_MAX_PATH 16			/* segments in a path */
#define PD_MAX_FIELDS 64
#define PD_LOCK_FIELD4 0x6f70	/* ocx's own advisory lock space ("op") */
#define PD_ROLE "ocx_personal_data"

static char *ocx_privacy_key_file = NULL;

/* A definition of ocx.personal_data (key: the type). */
typedef struct PdDef
{
	char		type[NAMEDATALEN];
	bool		active;			/* not dropped: new events are protected */
	char	   *subject;		/* dotted path */
	int			nfields;
	char	  **fields;			/* dotted paths */
} PdDef;

/* A data key (key: its id). */
typedef struct PdKey
{
	pg_uuid_t	id;
	bool		exists;			/* false: destroyed (or never there) */
	uint8		dek[PD_KEY_LEN];
	void	   *dec;			/* EVP_CIPHER_CTX with the key set, or NULL */
} PdKey;

/* The key of a subject (key: SHA-256 of the subject). */
typedef struct PdSubject
{
	uint8		hash[32];
	pg_uuid_t	key_id;
} PdSubject;

static MemoryContext pd_cxt = NULL;	/* the definitions */
static HTAB *pd_defs = NULL;	/* NULL: not loaded */
static bool pd_defs_stale = false;
static bool pd_keys_stale = false;
static bool pd_any = false;		/* some type has (or had) a definition */
static HTAB *pd_keys = NULL;
static PdKey *pd_last_key = NULL;	/* the last key looked up, in pd_keys */
static HTAB *pd_subjects = NULL;
static Oid	pd_defs_relid = InvalidOid;
static Oid	pd_keys_relid = InvalidOid;
static bool pd_created_in_xact = false;
static Oid	pd_role = InvalidOid;

static bool kek_loaded = false;
static uint8 kek[PD_KEY_LEN];
static char kek_id[17];

static EVP_CIPHER *pd_aes = NULL;	/* fetched once */
static EVP_CIPHER_CTX *pd_enc = NULL;	/* initialised with pd_aes once */
static EVP_CIPHER_CTX *pd_dec = NULL;

static SPIPlanPtr plan_defs_load = NULL;
static SPIPlanPtr plan_key_by_subject = NULL;
static SPIPlanPtr plan_key_insert = NULL;
static SPIPlanPtr plan_key_by_id = NULL;

/* ------------------------------------------------------------------------
 * Caches
 * ------------------------------------------------------------------------ */

static void
ResetKeyCaches(void)
{
	if (pd_keys)
	{
		HASH_SEQ_STATUS st;
		PdKey	   *k;

		hash_seq_init(&st, pd_keys);
		while ((k = hash_seq_search(&st)) != NULL)
		{
			explicit_bzero(k->dek, PD_KEY_LEN);
			if (k->dec)
				EVP_CIPHER_CTX_free((EVP_CIPHER_CTX *) k->dec);
			k->dec = NULL;
		}
	}
	pd_keys_stale = false;
	pd_last_key = NULL;
	if (pd_keys)
		hash_destroy(pd_keys);
	if (pd_subjects)
		hash_destroy(pd_subjects);
	pd_keys = NULL;
	pd_subjects = NULL;
}

static void
ResetCaches(void)
{
	ResetKeyCaches();
	pd_defs = NULL;
	pd_any = false;
	pd_defs_stale = false;
	if (pd_cxt)
		MemoryContextDelete(pd_cxt);
	pd_cxt = NULL;
}

void
OcxPrivacyRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == pd_defs_relid)
		pd_defs_stale = pd_keys_stale = true;
	else if (relid == pd_keys_relid)
		pd_keys_stale = true;
}

static void
PdXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (pd_created_in_xact)
			pd_keys_stale = true;
		pd_created_in_xact = false;
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
		pd_created_in_xact = false;
}

static void
PdSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
				  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && pd_created_in_xact)
		pd_keys_stale = true;
}

static void
KeyFileAssign(const char *newval, void *extra)
{
	kek_loaded = false;
	explicit_bzero(kek, sizeof(kek));
}

void
OcxPrivacyInit(void)
{
	DefineCustomStringVariable("ocx.privacy_key_file",
							   "File holding the key-encryption key of personal data (32 bytes, or 64 hex digits).",
							   "Owned by the server's user, mode 0600; see docs/privacy.md.",
							   &ocx_privacy_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, KeyFileAssign, NULL);
	RegisterXactCallback(PdXactCallback, NULL);
	RegisterSubXactCallback(PdSubXactCallback, NULL);
}

static void
EnsureKeyCaches(void)
{
	HASHCTL		ctl;

	if (pd_keys_stale)
		ResetKeyCaches();
	if (pd_keys == NULL)
	{
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(PdKey);
		ctl.hcxt = TopMemoryContext;
		pd_keys = hash_create("ocx privacy keys", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (pd_subjects == NULL)
	{
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = 32;
		ctl.entrysize = sizeof(PdSubject);
		ctl.hcxt = TopMemoryContext;
		pd_subjects = hash_create("ocx privacy subjects", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	/* bounded: start over rather than grow past PD_MAX_KEYS */
	if (hash_get_num_entries(pd_keys) >= PD_MAX_KEYS ||
		hash_get_num_entries(pd_subjects) >= PD_MAX_KEYS)
	{
		ResetKeyCaches();
		EnsureKeyCaches();
	}
}

static Oid
OcxRelid(const char *name)
{
	Oid			nsp = get_namespace_oid(OCX_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
}

/* Split a dotted path into palloc'd segments; false when it is not valid. */
static bool
SplitPath(const char *path, char **segs, int *nsegs)
{
	const char *p = path;
	int			n = 0;

	if (*p == '\0')
		return false;
	for (;;)
	{
		const char *dot = strchr(p, '.');
		int			len = dot ? (int) (dot - p) : (int) strlen(p);

		if (len == 0 || n >= PD_MAX_PATH)
			return false;
		if (segs)
			segs[n] = pnstrdup(p, len);
		n++;
		if (!dot)
			break;
		p = dot + 1;
	}
	*nsegs = n;
	return true;
}

/* Load ocx.personal_data into pd_defs (once, until invalidated). */
static void
LoadDefinitions(void)
{
	HASHCTL		ctl;
	uint64		i;
	MemoryContext old;

	if (pd_defs_stale)
		ResetCaches();
	if (pd_defs != NULL)
		return;
	EnsureKeyCaches();
	pd_defs_relid = OcxRelid("personal_data");
	pd_keys_relid = OcxRelid("subject_keys");
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(PdDef);
	pd_any = false;
	if (!OidIsValid(pd_defs_relid))
		return;
	/* (a load that failed half-way left its context) */
	if (pd_cxt)
		MemoryContextDelete(pd_cxt);
	pd_cxt = AllocSetContextCreate(TopMemoryContext, "ocx privacy definitions",
								   ALLOCSET_SMALL_SIZES);
	ctl.hcxt = pd_cxt;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	OcxRunKeptPlan(OcxKeptPlan(&plan_defs_load,
							   "SELECT d.type, d.subject, d.fields, d.dropped_at IS NULL "
							   "FROM ocx.personal_data d", 0, NULL),
				   NULL, NULL, true);
	old = MemoryContextSwitchTo(pd_cxt);
	{
		HTAB	   *defs = hash_create("ocx personal data", 16, &ctl,
									   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *type = SPI_getvalue(tup, desc, 1);
			bool		isnull;
			PdDef	   *d;
			Datum	   *elems;
			int			n,
						j;

			if (strlen(type) >= NAMEDATALEN)
				continue;
			d = hash_search(defs, type, HASH_ENTER, NULL);
			d->subject = SPI_getvalue(tup, desc, 2);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 3, &isnull)),
							  TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
			d->nfields = n;
			d->fields = palloc(sizeof(char *) * Max(n, 1));
			for (j = 0; j < n; j++)
				d->fields[j] = TextDatumGetCString(elems[j]);
			d->active = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
			pd_any = true;
		}
		pd_defs = defs;
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
}

static PdDef *
LookupDef(const char *type, int len)
{
	char		key[NAMEDATALEN];

	LoadDefinitions();
	if (!pd_any || len >= NAMEDATALEN)
		return NULL;
	memcpy(key, type, len);
	key[len] = '\0';
	return hash_search(pd_defs, key, HASH_FIND, NULL);
}

/* ------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------ */

static int	HexVal(char c);

static bool
IsHex(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (HexVal(s[i]) < 0)
			return false;
	return true;
}

static void
LoadKeyFile(const char *path, uint8 *out)
{
	struct stat st;
	FILE	   *f;
	char		buf[80];
	size_t		n;

	if (path == NULL || path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_KEY_UNAVAILABLE),
				 errmsg("no key-encryption key for personal data"),
				 errhint("Set ocx.privacy_key_file (docs/privacy.md).")));
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_KEY_UNAVAILABLE),
				 errmsg("key-encryption key file \"%s\" is not a readable file", path)));
	if (st.st_uid != geteuid() || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_KEY_UNAVAILABLE),
				 errmsg("key-encryption key file \"%s\" has unsafe ownership or permissions", path),
				 errdetail("It must be owned by the server's user and have mode 0600 or less.")));
	f = AllocateFile(path, "rb");
	if (f == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_KEY_UNAVAILABLE),
				 errmsg("could not open key-encryption key file \"%s\": %m", path)));
	n = fread(buf, 1, sizeof(buf), f);
	FreeFile(f);
	while (n > PD_KEY_LEN && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == PD_KEY_LEN)
		memcpy(out, buf, PD_KEY_LEN);
	else if (n == 2 * PD_KEY_LEN && IsHex(buf, n))
		hex_decode(buf, n, (char *) out);
	else
	{
		explicit_bzero(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_KEY_UNAVAILABLE),
				 errmsg("key-encryption key file \"%s\" must hold 32 bytes or 64 hex digits", path)));
	}
	explicit_bzero(buf, sizeof(buf));
}

static void
KeyId(const uint8 *key, char *out)
{
	uint8		h[32];

	SHA256(key, PD_KEY_LEN, h);
	hex_encode((const char *) h, 8, out);
	out[16] = '\0';
}

static const uint8 *
CurrentKek(void)
{
	if (!kek_loaded)
	{
		LoadKeyFile(ocx_privacy_key_file, kek);
		KeyId(kek, kek_id);
		kek_loaded = true;
	}
	return kek;
}

/*
 * The cipher contexts, set up once per backend (fetching the cipher and
 * setting a context's cipher cost more than an encryption of a field);
 * each operation only sets the key and nonce.
 */
static void
EvpSetup(void)
{
	if (pd_aes != NULL)
		return;
	pd_enc = EVP_CIPHER_CTX_new();
	pd_dec = EVP_CIPHER_CTX_new();
	pd_aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (pd_enc == NULL || pd_dec == NULL || pd_aes == NULL ||
		EVP_EncryptInit_ex(pd_enc, pd_aes, NULL, NULL, NULL) != 1 ||
		EVP_DecryptInit_ex(pd_dec, pd_aes, NULL, NULL, NULL) != 1)
	{
		EVP_CIPHER_CTX_free(pd_enc);
		EVP_CIPHER_CTX_free(pd_dec);
		EVP_CIPHER_free(pd_aes);
		pd_enc = pd_dec = NULL;
		pd_aes = NULL;
		elog(ERROR, "ocx: could not set up AES-256-GCM");
	}
}

/* AES-256-GCM: out = nonce | ciphertext | tag (ptlen + 28 bytes). */
static void
GcmEncrypt(const uint8 *key, const uint8 *aad, int aadlen,
		   const uint8 *pt, int ptlen, uint8 *out)
{
	EVP_CIPHER_CTX *c;
	int			len;
	bool		ok;

	EvpSetup();
	c = pd_enc;
	if (RAND_bytes(out, PD_NONCE_LEN) != 1)
		elog(ERROR, "ocx: RAND_bytes failed");
	ok = EVP_EncryptInit_ex(c, NULL, NULL, key, out) == 1 &&
		EVP_EncryptUpdate(c, NULL, &len, aad, aadlen) == 1 &&
		EVP_EncryptUpdate(c, out + PD_NONCE_LEN, &len, pt, ptlen) == 1 &&
		EVP_EncryptFinal_ex(c, out + PD_NONCE_LEN + len, &len) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, PD_TAG_LEN,
							out + PD_NONCE_LEN + ptlen) == 1;
	if (!ok)
		elog(ERROR, "ocx: AES-256-GCM encryption failed");
}

/* The inverse; false when the tag does not verify. out: inlen - 28 bytes. */
static bool
GcmDecrypt(const uint8 *key, const uint8 *aad, int aadlen,
		   const uint8 *in, int inlen, uint8 *out)
{
	EVP_CIPHER_CTX *c;
	int			ctlen = inlen - PD_NONCE_LEN - PD_TAG_LEN;
	int			len;

	if (ctlen < 0)
		return false;
	EvpSetup();
	c = pd_dec;
	if (EVP_DecryptInit_ex(c, NULL, NULL, key, in) != 1 ||
		EVP_DecryptUpdate(c, NULL, &len, aad, aadlen) != 1 ||
		EVP_DecryptUpdate(c, out, &len, in + PD_NONCE_LEN, ctlen) != 1 ||
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, PD_TAG_LEN,
							(void *) (in + PD_NONCE_LEN + ctlen)) != 1)
		return false;
	return EVP_DecryptFinal_ex(c, out + len, &len) == 1;
}

static void
WrapAad(const pg_uuid_t *key_id, uint8 *aad)
{
	memcpy(aad, "ocx-kek1", 8);
	memcpy(aad + 8, key_id->data, UUID_LEN);
}

static void
WrapKey(const uint8 *wrapping, const pg_uuid_t *key_id, const uint8 *dek, uint8 *out)
{
	uint8		aad[8 + UUID_LEN];

	WrapAad(key_id, aad);
	GcmEncrypt(wrapping, aad, sizeof(aad), dek, PD_KEY_LEN, out);
}

static void
UnwrapKey(const uint8 *wrapping, const pg_uuid_t *key_id, bytea *wrapped, uint8 *dek)
{
	uint8		aad[8 + UUID_LEN];

	WrapAad(key_id, aad);
	if (VARSIZE_ANY_EXHDR(wrapped) != PD_WRAPPED_LEN ||
		!GcmDecrypt(wrapping, aad, sizeof(aad), (uint8 *) VARDATA_ANY(wrapped),
					PD_WRAPPED_LEN, dek))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_DECRYPT_FAILED),
				 errmsg("a data key does not unwrap with the key-encryption key"),
				 errhint("Is ocx.privacy_key_file the key the data keys were wrapped with (ocx.rotate_privacy_key)?")));
}

static void
RandomUuid(pg_uuid_t *u)
{
	if (RAND_bytes(u->data, UUID_LEN) != 1)
		elog(ERROR, "ocx: RAND_bytes failed");
	u->data[6] = (u->data[6] & 0x0f) | 0x40;
	u->data[8] = (u->data[8] & 0x3f) | 0x80;
}

/* Run the rest as ocx_owner (restricted); the caller restores save_user/save_sec. */
static void
BecomeOwner(Oid *save_user, int *save_sec)
{
	GetUserIdAndSecContext(save_user, save_sec);
	SetUserIdAndSecContext(OcxOwnerRole(), *save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/* The lock a subject's appends (share) and its forget (exclusive) take. */
static void
LockSubject(const uint8 *hash, LOCKMODE mode)
{
	LOCKTAG		tag;
	uint32		a,
				b;

	memcpy(&a, hash, 4);
	memcpy(&b, hash + 4, 4);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, a, b, PD_LOCK_FIELD4);
	(void) LockAcquire(&tag, mode, false, false);
	/* a forget that committed before the lock: drop its key from the caches */
	AcceptInvalidationMessages();
}

/*
 * The cached data key of a key id (exists false when the key is gone),
 * valid until the next look-up.  A miss reads ocx.subject_keys as
 * ocx_owner (its own SPI connection).
 */
static PdKey *
LookupKey(const pg_uuid_t *key_id)
{
	PdKey	   *k;
	bool		found;

	/* an event's fields share their subject's key: the last one first */
	if (pd_last_key != NULL && !pd_keys_stale &&
		memcmp(pd_last_key->id.data, key_id->data, UUID_LEN) == 0)
		return pd_last_key;
	EnsureKeyCaches();
	k = hash_search(pd_keys, key_id, HASH_FIND, NULL);
	if (k == NULL)
	{
		Oid			save_user;
		int			save_sec;
		Datum		arg = UUIDPGetDatum(key_id);
		uint64		n;
		uint8		tmp[PD_KEY_LEN];
		MemoryContext cxt = CurrentMemoryContext;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "ocx: SPI_connect failed");
		BecomeOwner(&save_user, &save_sec);
		n = OcxRunKeptPlan(OcxKeptPlan(&plan_key_by_id,
									   "SELECT k.wrapped_key FROM ocx.subject_keys k "
									   "WHERE k.key_id OPERATOR(pg_catalog.=) $1",
									   1, (Oid[]) {UUIDOID}),
						   &arg, NULL, true);
		SetUserIdAndSecContext(save_user, save_sec);
		if (n > 0)
		{
			bool		isnull;
			bytea	   *w = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull));

			UnwrapKey(CurrentKek(), key_id, w, tmp);
		}
		SPI_finish();
		MemoryContextSwitchTo(cxt);
		EnsureKeyCaches();
		k = hash_search(pd_keys, key_id, HASH_ENTER, &found);
		if (found && k->dec)
			EVP_CIPHER_CTX_free((EVP_CIPHER_CTX *) k->dec);
		k->exists = n > 0;
		k->dec = NULL;
		if (k->exists)
			memcpy(k->dek, tmp, PD_KEY_LEN);
		explicit_bzero(tmp, sizeof(tmp));
	}
	pd_last_key = k;
	return k;
}

/* The data key of a key id into dek; false when the key is gone. */
static bool
FetchKey(const pg_uuid_t *key_id, uint8 *dek)
{
	PdKey	   *k = LookupKey(key_id);

	if (k->exists)
		memcpy(dek, k->dek, PD_KEY_LEN);
	return k->exists;
}

/* Decrypt with a cached key's own context (its key schedule kept). */
static bool
GcmDecryptWith(PdKey *k, const uint8 *aad, int aadlen,
			   const uint8 *in, int inlen, uint8 *out)
{
	EVP_CIPHER_CTX *c;
	int			ctlen = inlen - PD_NONCE_LEN - PD_TAG_LEN;
	int			len;

	if (ctlen < 0)
		return false;
	EvpSetup();
	if (k->dec == NULL)
	{
		c = EVP_CIPHER_CTX_new();
		if (c == NULL || EVP_DecryptInit_ex(c, pd_aes, NULL, k->dek, NULL) != 1)
		{
			EVP_CIPHER_CTX_free(c);
			elog(ERROR, "ocx: could not set up AES-256-GCM");
		}
		k->dec = c;
	}
	c = (EVP_CIPHER_CTX *) k->dec;
	if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, in) != 1 ||
		EVP_DecryptUpdate(c, NULL, &len, aad, aadlen) != 1 ||
		EVP_DecryptUpdate(c, out, &len, in + PD_NONCE_LEN, ctlen) != 1 ||
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, PD_TAG_LEN,
							(void *) (in + PD_NONCE_LEN + ctlen)) != 1)
		return false;
	return EVP_DecryptFinal_ex(c, out + len, &len) == 1;
}

/*
 * The key of row 0 of the last SPI result (key_id, wrapped_key): unwrapped
 * into dek unless cached, and cached.
 */
static void
KeyFromRow(pg_uuid_t *key_id, uint8 *dek)
{
	bool		isnull;
	PdKey	   *k;
	bool		found;

	*key_id = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	EnsureKeyCaches();
	k = hash_search(pd_keys, key_id, HASH_FIND, NULL);
	if (k != NULL && k->exists)
	{
		memcpy(dek, k->dek, PD_KEY_LEN);
		return;
	}
	UnwrapKey(CurrentKek(), key_id,
			  DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)),
			  dek);
	k = hash_search(pd_keys, key_id, HASH_ENTER, &found);
	if (found && k->dec)
		EVP_CIPHER_CTX_free((EVP_CIPHER_CTX *) k->dec);
	k->dec = NULL;
	k->exists = true;
	memcpy(k->dek, dek, PD_KEY_LEN);
}

/*
 * The data key of a subject (by the SHA-256 of its id), created when it has
 * none.  The caller holds the subject's lock; SPI connected; runs as
 * ocx_owner.
 */
static void
SubjectKey(const uint8 *hash, pg_uuid_t *key_id, uint8 *dek)
{
	PdSubject  *s;
	bool		found;
	Oid			save_user;
	int			save_sec;
	Datum		args[4];
	uint64		n;

	EnsureKeyCaches();
	s = hash_search(pd_subjects, hash, HASH_FIND, NULL);
	if (s != NULL && FetchKey(&s->key_id, dek))
	{
		*key_id = s->key_id;
		return;
	}

	{
		bytea	   *h = palloc(VARHDRSZ + 32);

		SET_VARSIZE(h, VARHDRSZ + 32);
		memcpy(VARDATA(h), hash, 32);
		args[0] = PointerGetDatum(h);
	}
	BecomeOwner(&save_user, &save_sec);
	n = OcxRunKeptPlan(OcxKeptPlan(&plan_key_by_subject,
								   "SELECT k.key_id, k.wrapped_key FROM ocx.subject_keys k "
								   "WHERE k.subject_hash OPERATOR(pg_catalog.=) $1",
								   1, (Oid[]) {BYTEAOID}),
					   args, NULL, true);
	if (n > 0)
		KeyFromRow(key_id, dek);
	else
	{
		uint8		wrapped[PD_WRAPPED_LEN];
		bytea	   *w = palloc(VARHDRSZ + PD_WRAPPED_LEN);
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

		RandomUuid(id);
		if (RAND_bytes(dek, PD_KEY_LEN) != 1)
			elog(ERROR, "ocx: RAND_bytes failed");
		WrapKey(CurrentKek(), id, dek, wrapped);
		SET_VARSIZE(w, VARHDRSZ + PD_WRAPPED_LEN);
		memcpy(VARDATA(w), wrapped, PD_WRAPPED_LEN);
		args[1] = UUIDPGetDatum(id);
		args[2] = PointerGetDatum(w);
		args[3] = CStringGetTextDatum(kek_id);
		pd_created_in_xact = true;

		/*
		 * Two first appends of a subject race here (both hold the subject's
		 * lock in share mode): the loser waits for the winner's commit and
		 * inserts nothing, then reads the winner's key.
		 */
		if (OcxRunKeptPlan(OcxKeptPlan(&plan_key_insert,
									   "INSERT INTO ocx.subject_keys AS k (subject_hash, key_id, wrapped_key, kek_id) "
									   "VALUES ($1, $2, $3, $4) "
									   "ON CONFLICT (subject_hash) DO NOTHING RETURNING k.key_id",
									   4, (Oid[]) {BYTEAOID, UUIDOID, BYTEAOID, TEXTOID}),
						   args, NULL, false) == 1)
		{
			*key_id = *id;
			EnsureKeyCaches();
			{
				PdKey	   *k = hash_search(pd_keys, id, HASH_ENTER, &found);

				if (found && k->dec)
					EVP_CIPHER_CTX_free((EVP_CIPHER_CTX *) k->dec);
				k->dec = NULL;
				k->exists = true;
				memcpy(k->dek, dek, PD_KEY_LEN);
			}
			n = 0;
		}
		else
		{
			/* not read-only: a new snapshot sees the winner's commit */
			n = OcxRunKeptPlan(OcxKeptPlan(&plan_key_by_subject,
										   "SELECT k.key_id, k.wrapped_key FROM ocx.subject_keys k "
										   "WHERE k.subject_hash OPERATOR(pg_catalog.=) $1",
										   1, (Oid[]) {BYTEAOID}),
							   args, NULL, false);
			if (n == 0)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access to the data key of a new subject"),
						 errdetail("A concurrent transaction created it after this transaction's snapshot."),
						 errhint("Retry the transaction.")));
			KeyFromRow(key_id, dek);
		}
		explicit_bzero(wrapped, sizeof(wrapped));
	}
	SetUserIdAndSecContext(save_user, save_sec);
	EnsureKeyCaches();
	s = hash_search(pd_subjects, hash, HASH_ENTER, &found);
	s->key_id = *key_id;
}

/* ------------------------------------------------------------------------
 * Markers
 * ------------------------------------------------------------------------ */

static void
UuidToText(const pg_uuid_t *u, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int			i,
				o = 0;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[u->data[i] >> 4];
		out[o++] = hex[u->data[i] & 0xf];
	}
	out[o] = '\0';
}

/*
 * Decoding tables: a hex digit's value and a base64 character's, -1 for any
 * other byte.  The reveal decodes a key id and a base64 ciphertext per field
 * of every event read: a table costs a load where the comparisons cost
 * branches (docs/performance.md, "Personal data").
 */
static int8 hex_tab[256];
static int8 b64_tab[256];
static bool tabs_ready = false;

static void
DecodeTables(void)
{
	const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int			i;

	memset(hex_tab, -1, sizeof(hex_tab));
	memset(b64_tab, -1, sizeof(b64_tab));
	for (i = 0; i < 10; i++)
		hex_tab['0' + i] = (int8) i;
	for (i = 0; i < 6; i++)
		hex_tab['a' + i] = hex_tab['A' + i] = (int8) (10 + i);
	for (i = 0; i < 64; i++)
		b64_tab[(unsigned char) b64[i]] = (int8) i;
	tabs_ready = true;
}

static int
HexVal(char c)
{
	if (!tabs_ready)
		DecodeTables();
	return hex_tab[(unsigned char) c];
}

/* The 36-character text form of a UUID (lower or upper case hex). */
static bool
TextToUuid(const char *s, pg_uuid_t *u)
{
	static const uint8 at[UUID_LEN] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
	int			bad = 0;
	int			i;

	if (!tabs_ready)
		DecodeTables();
	if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
		return false;
	for (i = 0; i < UUID_LEN; i++)
	{
		int			hi = hex_tab[(unsigned char) s[at[i]]],
					lo = hex_tab[(unsigned char) s[at[i] + 1]];

		bad |= hi | lo;
		u->data[i] = (uint8) ((unsigned) hi << 4 | (unsigned) lo);
	}
	return bad >= 0;
}

/*
 * Base64 (RFC 4648, padded) decoding by table: the markers are ours, so any
 * other byte is an error (-1).  Returns the decoded length.  The quads before
 * the last cannot hold padding and are decoded without looking for it.
 */
static int
B64Decode(const char *src, int len, uint8 *dst)
{
	const unsigned char *s = (const unsigned char *) src;
	int			i,
				o = 0,
				bad = 0,
				pad = 0;
	int			a,
				b,
				c,
				d;
	uint32		v;

	if (!tabs_ready)
		DecodeTables();
	if (len == 0 || len % 4 != 0)
		return len == 0 ? 0 : -1;
	for (i = 0; i < len - 4; i += 4)
	{
		a = b64_tab[s[i]];
		b = b64_tab[s[i + 1]];
		c = b64_tab[s[i + 2]];
		d = b64_tab[s[i + 3]];
		bad |= a | b | c | d;
		v = (uint32) a << 18 | (uint32) b << 12 | (uint32) c << 6 | (uint32) d;
		dst[o++] = (uint8) (v >> 16);
		dst[o++] = (uint8) (v >> 8);
		dst[o++] = (uint8) v;
	}
	if (s[i + 3] == '=')
		pad = s[i + 2] == '=' ? 2 : 1;
	a = b64_tab[s[i]];
	b = b64_tab[s[i + 1]];
	c = pad == 2 ? 0 : b64_tab[s[i + 2]];
	d = pad >= 1 ? 0 : b64_tab[s[i + 3]];
	bad |= a | b | c | d;
	if (bad < 0)
		return -1;
	v = (uint32) a << 18 | (uint32) b << 12 | (uint32) c << 6 | (uint32) d;
	dst[o++] = (uint8) (v >> 16);
	dst[o++] = (uint8) (v >> 8);
	dst[o++] = (uint8) v;
	return o - pad;
}

static bool
IsMarker(const JsonbValue *v)
{
	return v->type == jbvString && v->val.string.len > PD_MARKER_PREFIX_LEN + PD_UUID_TEXT_LEN + 1 &&
		memcmp(v->val.string.val, PD_MARKER_PREFIX, PD_MARKER_PREFIX_LEN) == 0;
}

/* aad = event id | key id | path */
static uint8 *
FieldAad(const pg_uuid_t *event_id, const pg_uuid_t *key_id, const StringInfo path, int *len)
{
	uint8	   *aad = palloc(2 * UUID_LEN + path->len);

	memcpy(aad, event_id->data, UUID_LEN);
	memcpy(aad + UUID_LEN, key_id->data, UUID_LEN);
	memcpy(aad + 2 * UUID_LEN, path->data, path->len);
	*len = 2 * UUID_LEN + path->len;
	return aad;
}

/* ------------------------------------------------------------------------
 * The walk over an event's data: encrypt the defined fields, or find and
 * reveal markers.  Markers sit only at object paths (arrays are copied).
 * ------------------------------------------------------------------------ */

typedef enum PdMode
{
	PD_SCAN,					/* find markers; note erased ones */
	PD_CHECK,					/* what PD_ENCRYPT refuses, nothing built */
	PD_ENCRYPT,
	PD_REVEAL
} PdMode;

/* the modes that rebuild the data */
#define PD_BUILDS(w) ((w)->mode == PD_ENCRYPT || (w)->mode == PD_REVEAL)

typedef struct PdWalk
{
	PdMode		mode;
	const pg_uuid_t *event_id;
	PdDef	   *def;			/* encrypt */
	const pg_uuid_t *key_id;	/* encrypt */
	const uint8 *dek;			/* encrypt */
	bool		allowed;		/* reveal: clear values, else null */
	int			markers;
	bool		erased;
	StringInfoData path;
	JsonbParseState *st;
} PdWalk;

static bool
IsField(PdWalk *w, bool *prefix)
{
	int			i;

	*prefix = false;
	for (i = 0; i < w->def->nfields; i++)
	{
		const char *f = w->def->fields[i];
		int			flen = strlen(f);

		if (flen == w->path.len && memcmp(f, w->path.data, flen) == 0)
			return true;
		if (flen > w->path.len && f[w->path.len] == '.' &&
			memcmp(f, w->path.data, w->path.len) == 0)
			*prefix = true;
	}
	return false;
}

/* The marker for value v at w->path. */
static void
EncryptValue(PdWalk *w, JsonbValue *v, JsonbValue *out)
{
	Jsonb	   *j = JsonbValueToJsonb(v);
	int			ptlen = VARSIZE(j) - VARHDRSZ;
	int			clen = PD_NONCE_LEN + ptlen + PD_TAG_LEN;
	uint8	   *ct = palloc(clen);
	int			aadlen;
	uint8	   *aad = FieldAad(w->event_id, w->key_id, &w->path, &aadlen);
	int			blen = pg_b64_enc_len(clen);
	char	   *s = palloc(PD_MARKER_PREFIX_LEN + PD_UUID_TEXT_LEN + 1 + blen + 1);
	int			n;

	GcmEncrypt(w->dek, aad, aadlen, (uint8 *) VARDATA(j), ptlen, ct);
	memcpy(s, PD_MARKER_PREFIX, PD_MARKER_PREFIX_LEN);
	UuidToText(w->key_id, s + PD_MARKER_PREFIX_LEN);
	s[PD_MARKER_PREFIX_LEN + PD_UUID_TEXT_LEN] = ':';
	n = pg_b64_encode((char *) ct, clen, s + PD_MARKER_PREFIX_LEN + PD_UUID_TEXT_LEN + 1, blen);
	if (n < 0)
		elog(ERROR, "ocx: base64 encoding failed");
	out->type = jbvString;
	out->val.string.val = s;
	out->val.string.len = PD_MARKER_PREFIX_LEN + PD_UUID_TEXT_LEN + 1 + n;
	pfree(ct);
	pfree(j);
}

static void
BadMarker(PdWalk *w)
{
	ereport(ERROR,
			(errcode(ERRCODE_OCX_PRIVACY_DECRYPT_FAILED),
			 errmsg("personal data at \"%s\" does not decrypt", w->path.data),
			 errdetail("The marker was altered or does not belong to this event and path.")));
}

/*
 * A marker: in PD_SCAN note whether its key is gone; in PD_REVEAL set *out
 * to the clear value (or null).
 */
static void
RevealMarker(PdWalk *w, JsonbValue *v, JsonbValue *out)
{
	const char *s = v->val.string.val;
	int			len = v->val.string.len;
	pg_uuid_t	key_id;
	PdKey	   *k;
	const char *b64 = s + PD_MARKER_PREFIX_LEN + PD_UUID_TEXT_LEN + 1;
	int			blen = len - PD_MARKER_PREFIX_LEN - PD_UUID_TEXT_LEN - 1;
	uint8	   *ct;
	int			clen;
	uint8	   *aad;
	int			aadlen;
	Jsonb	   *j;

	w->markers++;
	out->type = jbvNull;
	if (!TextToUuid(s + PD_MARKER_PREFIX_LEN, &key_id) ||
		s[PD_MARKER_PREFIX_LEN + PD_UUID_TEXT_LEN] != ':')
		BadMarker(w);
	if (w->mode == PD_REVEAL && !w->allowed)
		return;
	k = LookupKey(&key_id);
	if (!k->exists)
	{
		w->erased = true;
		return;
	}
	if (w->mode == PD_SCAN)
		return;
	ct = palloc(blen / 4 * 3 + 3);
	clen = B64Decode(b64, blen, ct);
	if (clen < PD_NONCE_LEN + PD_TAG_LEN)
		BadMarker(w);
	j = palloc(VARHDRSZ + clen);
	SET_VARSIZE(j, VARHDRSZ + clen - PD_NONCE_LEN - PD_TAG_LEN);
	aad = FieldAad(w->event_id, &key_id, &w->path, &aadlen);
	if (!GcmDecryptWith(k, aad, aadlen, ct, clen, (uint8 *) VARDATA(j)))
		BadMarker(w);
	pfree(ct);
	pfree(aad);
	if (JB_ROOT_IS_SCALAR(j))
		JsonbExtractScalar(&j->root, out);
	else
	{
		out->type = jbvBinary;
		out->val.binary.data = &j->root;
		out->val.binary.len = VARSIZE(j) - VARHDRSZ;
	}
}

static JsonbValue *
WalkObject(PdWalk *w, JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	k,
				v,
				out;
	JsonbIteratorToken r;
	int			base = w->path.len;

	check_stack_depth();
	r = JsonbIteratorNext(&it, &v, true);
	Assert(r == WJB_BEGIN_OBJECT);
	if (PD_BUILDS(w))
		pushJsonbValue(&w->st, WJB_BEGIN_OBJECT, NULL);
	while ((r = JsonbIteratorNext(&it, &k, true)) == WJB_KEY)
	{
		JsonbValue *put = &v;
		bool		recurse = false;

		r = JsonbIteratorNext(&it, &v, true);
		Assert(r == WJB_VALUE);
		w->path.len = base;
		w->path.data[base] = '\0';
		if (base > 0)
			appendStringInfoChar(&w->path, '.');
		appendBinaryStringInfo(&w->path, k.val.string.val, k.val.string.len);

		if (w->mode == PD_ENCRYPT || w->mode == PD_CHECK)
		{
			bool		prefix;

			/*
			 * A string that looks like a marker would be read as one (and
			 * fail to decrypt): refused wherever the reveal looks.
			 */
			if (IsMarker(&v))
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
						 errmsg("event data of type \"%s\" holds a string starting with \"%s\" at \"%s\"",
								w->def->type, PD_MARKER_PREFIX, w->path.data),
						 errdetail("Such strings are ocx's encrypted personal data."),
						 errhint("Nothing was written.")));
			if (IsField(w, &prefix))
			{
				if (v.type != jbvNull && w->mode == PD_ENCRYPT)
				{
					EncryptValue(w, &v, &out);
					put = &out;
					w->markers++;
				}
			}
			else if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
				recurse = true;	/* a field below, or a marker-like string */
		}
		else if (IsMarker(&v))
		{
			RevealMarker(w, &v, &out);
			put = &out;
		}
		else if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
			recurse = true;

		if (PD_BUILDS(w))
			pushJsonbValue(&w->st, WJB_KEY, &k);
		if (recurse)
			WalkObject(w, v.val.binary.data);
		else if (PD_BUILDS(w))
			pushJsonbValue(&w->st, WJB_VALUE, put);
	}
	Assert(r == WJB_END_OBJECT);
	w->path.len = base;
	w->path.data[base] = '\0';
	if (PD_BUILDS(w))
		return pushJsonbValue(&w->st, WJB_END_OBJECT, NULL);
	return NULL;
}

static void
WalkInit(PdWalk *w, PdMode mode, const pg_uuid_t *event_id)
{
	memset(w, 0, sizeof(*w));
	w->mode = mode;
	w->event_id = event_id;
	initStringInfo(&w->path);
}

/* Run the walk; the rebuilt data (PD_ENCRYPT, PD_REVEAL). */
static Jsonb *
Walk(PdWalk *w, Jsonb *data)
{
	JsonbValue *root = WalkObject(w, &data->root);

	return root && w->markers > 0 ? JsonbValueToJsonb(root) : NULL;
}

/* ------------------------------------------------------------------------
 * Append
 * ------------------------------------------------------------------------ */

/* The subject's id at the definition's path, as text; ereports when absent. */
static char *
SubjectOf(PdDef *def, OcxNewEvent *ev, int index)
{
	char	   *segs[PD_MAX_PATH];
	int			nsegs,
				i;
	JsonbContainer *c;
	JsonbValue *v = NULL;

	if (ev->data == NULL || !JB_ROOT_IS_OBJECT(ev->data))
		nsegs = 0;
	else if (!SplitPath(def->subject, segs, &nsegs))
		elog(ERROR, "ocx: invalid stored subject path \"%s\"", def->subject);
	c = ev->data ? &ev->data->root : NULL;
	for (i = 0; i < nsegs; i++)
	{
		JsonbValue	key;

		if (!JsonContainerIsObject(c))
		{
			v = NULL;
			break;
		}
		key.type = jbvString;
		key.val.string.val = segs[i];
		key.val.string.len = strlen(segs[i]);
		v = findJsonbValueFromContainer(c, JB_FOBJECT, &key);
		if (v == NULL)
			break;
		if (i < nsegs - 1)
		{
			if (v->type != jbvBinary)
			{
				v = NULL;
				break;
			}
			c = v->val.binary.data;
		}
	}
	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v != NULL && v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	ereport(ERROR,
			(errcode(ERRCODE_OCX_PRIVACY_NO_SUBJECT),
			 errmsg("event %d of type \"%s\" has no data subject at \"%s\"", index, ev->type, def->subject),
			 errdetail("ocx.define_personal_data names \"%s\" as the path of the subject's id: a non-empty string or a number.",
					   def->subject),
			 errhint("Nothing was written.")));
	return NULL;				/* keep the compiler quiet */
}

/*
 * Encrypt the personal fields of ev when its type has a definition: ev->data
 * becomes the stored data, ev->clear_data keeps the data as given (for the
 * idempotency check).  index names the event in errors.  An append takes the
 * subject's lock in share mode (ocx.forget_subject takes it exclusively);
 * the import (table_lock) takes one SHARE ROW EXCLUSIVE lock on
 * ocx.subject_keys instead, whatever the number of subjects, which
 * ocx._shred_subject_key's ROW EXCLUSIVE lock waits for.
 */
static void
ProtectOne(OcxNewEvent *ev, int index, bool table_lock)
{
	PdDef	   *def = LookupDef(ev->type, strlen(ev->type));
	char	   *subject;
	uint8		hash[32];
	uint8		dek[PD_KEY_LEN];
	pg_uuid_t	key_id;
	PdWalk		w;
	Jsonb	   *stored;

	if (def == NULL || !def->active)
		return;
	subject = SubjectOf(def, ev, index);
	SHA256((const unsigned char *) subject, strlen(subject), hash);
	if (table_lock)
		OcxPrivacyLockForImport();	/* taken already, unless a definition came since */
	else
		LockSubject(hash, ShareLock);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	SubjectKey(hash, &key_id, dek);
	SPI_finish();
	/* the lock and the look-up may have taken a definition change */
	def = LookupDef(ev->type, strlen(ev->type));
	if (def == NULL || !def->active)
		return;

	WalkInit(&w, PD_ENCRYPT, &ev->id);
	w.def = def;
	w.key_id = &key_id;
	w.dek = dek;
	stored = Walk(&w, ev->data);
	explicit_bzero(dek, sizeof(dek));
	if (w.markers > 0)
	{
		ev->clear_data = ev->data;
		ev->data = stored;
	}
}

/*
 * Encrypt the personal fields of the events whose type has a definition.
 * Called by OcxAppend once the ids are final, before anything is written.
 */
void
OcxPrivacyProtect(OcxNewEvent *events, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		ProtectOne(&events[i], i + 1, false);
}

/*
 * The checks of the encryption that need no key, for the import's first
 * pass (where an error names the row's line): the data subject's id at its
 * path, no string that looks like encrypted personal data.  True when the
 * event's type has personal data (its fields are encrypted when written).
 */
bool
OcxPrivacyCheck(OcxNewEvent *ev, int index)
{
	PdDef	   *def = LookupDef(ev->type, strlen(ev->type));
	PdWalk		w;

	if (def == NULL || !def->active)
		return false;
	(void) SubjectOf(def, ev, index);
	WalkInit(&w, PD_CHECK, &ev->id);
	w.def = def;
	(void) WalkObject(&w, &ev->data->root);
	pfree(w.path.data);
	return true;
}

/*
 * The import's lock on the data keys: SHARE ROW EXCLUSIVE on
 * ocx.subject_keys, for its transaction, in place of a lock per subject
 * (ocx.forget_subject, a key rotation and the first append of a new subject
 * wait for it).  Taken before the batch's tag and stream locks, in the order
 * an append takes its subjects' locks and key rows before its own.
 */
void
OcxPrivacyLockForImport(void)
{
	LockRelationOid(OcxRelid("subject_keys"), ShareRowExclusiveLock);
	/* a forget that committed before the lock: drop its key from the caches */
	AcceptInvalidationMessages();
}

/*
 * The import's encryption of one event (its second pass, after its stream
 * locks): as an append's, under the import's one lock on ocx.subject_keys.
 */
void
OcxPrivacyProtectImported(OcxNewEvent *ev, int index)
{
	ProtectOne(ev, index, true);
}

/*
 * The data of a stored event with its personal fields in clear (allowed) or
 * null; erased fields are null.  For ocx._reveal, ocx.load's direct scan and
 * the idempotency check of a retried append (in clear: it compares).
 */
Jsonb *
OcxPrivacyReveal(const char *type, int typelen, Jsonb *data, const pg_uuid_t *event_id,
				 bool allowed, bool *erased)
{
	PdWalk		w;
	PdDef	   *def;
	Jsonb	   *res;

	if (!JB_ROOT_IS_OBJECT(data))
		return data;
	def = LookupDef(type, typelen);
	if (erased)
		*erased = false;
	if (def == NULL)
		return data;
	WalkInit(&w, PD_REVEAL, event_id);
	w.allowed = allowed;
	res = Walk(&w, data);
	if (erased)
		*erased = w.erased;
	return w.markers > 0 ? res : data;
}

/*
 * Does some event type have (or had) personal data?  ocx.load's direct scan
 * is used only when none has: the kept plans reveal through ocx._reveal.
 */
bool
OcxPrivacyInUse(void)
{
	LoadDefinitions();
	return pd_any;
}

/*
 * May the caller see personal data in clear?  Cached for the (current,
 * outer) user pair when the current user is not ocx_owner (in an entry
 * point the caller comes from security.c); role changes drop the cache.
 */
static Oid	allowed_user = InvalidOid;
static Oid	allowed_outer = InvalidOid;
static bool allowed_value = false;
static Oid	owner_role = InvalidOid;
static bool role_callback = false;

static void
PdRoleCallback(Datum arg, int cacheid, uint32 hashvalue)
{
	allowed_user = InvalidOid;
	owner_role = InvalidOid;
	pd_role = InvalidOid;
}

static bool AllowedUncached(void);

static bool
OcxPrivacyAllowed(void)
{
	Oid			user = GetUserId();

	if (!role_callback)
	{
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, PdRoleCallback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, PdRoleCallback, (Datum) 0);
		role_callback = true;
	}
	if (!OidIsValid(owner_role))
		owner_role = OcxOwnerRole();
	if (user == owner_role)
		return AllowedUncached();
	if (user != allowed_user || GetOuterUserId() != allowed_outer)
	{
		allowed_value = AllowedUncached();
		allowed_user = user;
		allowed_outer = GetOuterUserId();
	}
	return allowed_value;
}

static bool
AllowedUncached(void)
{
	Oid			caller = OcxCallerRole();

	if (!OidIsValid(pd_role))
		pd_role = get_role_oid(PD_ROLE, true);
	if (superuser_arg(caller))
		return true;
	if (caller == OcxWorkerRole() && OidIsValid(caller))
		return true;
	return OidIsValid(pd_role) && has_privs_of_role(caller, pd_role);
}

/* ------------------------------------------------------------------------
 * SQL
 * ------------------------------------------------------------------------ */

PG_FUNCTION_INFO_V1(ocx_reveal);
PG_FUNCTION_INFO_V1(ocx_reveal_metadata);
PG_FUNCTION_INFO_V1(ocx_check_personal_data);
PG_FUNCTION_INFO_V1(ocx_privacy_changed);
PG_FUNCTION_INFO_V1(ocx_shred_subject_key);
PG_FUNCTION_INFO_V1(ocx_rotate_privacy_key);

/*
 * What the last ocx._reveal of a row with markers learnt, for the
 * ocx._reveal_metadata of the same row (readers call both): a copy of the
 * stored data and whether a key was gone.  One row's worth of memory.
 */
static MemoryContext memo_cxt = NULL;
static Jsonb *memo_data = NULL;
static bool memo_erased = false;

static void
Memo(Jsonb *data, bool erased)
{
	if (memo_cxt == NULL)
		memo_cxt = AllocSetContextCreate(TopMemoryContext, "ocx privacy memo",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(memo_cxt);
	memo_data = NULL;
	if (VARSIZE(data) > 64 * 1024)
		return;
	memo_data = MemoryContextAlloc(memo_cxt, VARSIZE(data));
	memcpy(memo_data, data, VARSIZE(data));
	memo_erased = erased;
}

/* ocx._reveal(type text, data jsonb, event_id uuid) -> jsonb */
Datum
ocx_reveal(PG_FUNCTION_ARGS)
{
	text	   *type = PG_GETARG_TEXT_PP(0);
	Jsonb	   *data;
	Jsonb	   *res;
	bool		allowed;
	bool		erased;

	LoadDefinitions();
	if (!pd_any)
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	data = PG_GETARG_JSONB_P(1);
	allowed = OcxPrivacyAllowed();
	res = OcxPrivacyReveal(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type), data,
						   PG_GETARG_UUID_P(2), allowed, &erased);
	/* not allowed: keys were not looked at, the metadata function looks */
	if (res != data && allowed)
		Memo(data, erased);
	PG_RETURN_JSONB_P(res);
}

/*
 * ocx._reveal_metadata(type text, data jsonb, metadata jsonb) -> jsonb:
 * metadata with "erased": true when a marker's key was destroyed.
 */
Datum
ocx_reveal_metadata(PG_FUNCTION_ARGS)
{
	text	   *type = PG_GETARG_TEXT_PP(0);
	Jsonb	   *data;
	PdDef	   *def;
	PdWalk		w;
	pg_uuid_t	none;
	JsonbParseState *st = NULL;
	JsonbValue	k,
				v;
	JsonbValue *res;

	LoadDefinitions();
	if (!pd_any)
		PG_RETURN_DATUM(PG_GETARG_DATUM(2));
	def = LookupDef(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (def == NULL)
		PG_RETURN_DATUM(PG_GETARG_DATUM(2));
	data = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(data))
		PG_RETURN_DATUM(PG_GETARG_DATUM(2));
	if (memo_data != NULL && VARSIZE(memo_data) == VARSIZE(data) &&
		memcmp(memo_data, data, VARSIZE(data)) == 0)
		w.erased = memo_erased;
	else
	{
		memset(&none, 0, sizeof(none));
		WalkInit(&w, PD_SCAN, &none);
		Walk(&w, data);
	}
	if (!w.erased)
		PG_RETURN_DATUM(PG_GETARG_DATUM(2));

	/* metadata || {"erased": true} */
	{
		Jsonb	   *meta = PG_GETARG_JSONB_P(2);
		JsonbIterator *it;
		JsonbIteratorToken r;

		if (!JB_ROOT_IS_OBJECT(meta))
			PG_RETURN_JSONB_P(meta);
		it = JsonbIteratorInit(&meta->root);
		res = NULL;
		while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (r == WJB_END_OBJECT)
				break;
			if (r == WJB_KEY && v.val.string.len == 6 &&
				memcmp(v.val.string.val, "erased", 6) == 0)
			{
				(void) JsonbIteratorNext(&it, &v, true);	/* replaced below */
				continue;
			}
			res = pushJsonbValue(&st, r, r == WJB_BEGIN_OBJECT ? NULL : &v);
		}
		k.type = jbvString;
		k.val.string.val = "erased";
		k.val.string.len = 6;
		v.type = jbvBool;
		v.val.boolean = true;
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_VALUE, &v);
		res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
	}
}

/*
 * ocx._check_personal_data(subject text, fields text[]) -> void: raises
 * OX621 unless the paths are valid.  Called by define_personal_data.
 */
Datum
ocx_check_personal_data(PG_FUNCTION_ARGS)
{
	char	   *subject;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i,
				nsegs;

	if (PG_ARGISNULL(0) || !SplitPath((subject = text_to_cstring(PG_GETARG_TEXT_PP(0))), NULL, &nsegs))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
				 errmsg("subject must be a path of object keys joined by \".\""),
				 errdetail("At most %d non-empty keys.", PD_MAX_PATH)));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
				 errmsg("fields must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
				 errmsg("fields must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0 || n > PD_MAX_FIELDS)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
				 errmsg("fields must name 1 to %d paths", PD_MAX_FIELDS)));
	for (i = 0; i < n; i++)
	{
		char	   *f;
		int			j;

		if (nulls[i] || !SplitPath((f = TextDatumGetCString(elems[i])), NULL, &nsegs))
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
					 errmsg("field %d must be a path of object keys joined by \".\"", i + 1)));
		if (strcmp(f, subject) == 0 ||
			(strncmp(f, subject, strlen(f)) == 0 && subject[strlen(f)] == '.'))
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
					 errmsg("field \"%s\" holds the subject \"%s\"", f, subject),
					 errdetail("The subject's id stays in clear: it finds the key.")));
		for (j = 0; j < i; j++)
		{
			char	   *g = TextDatumGetCString(elems[j]);
			int			fl = strlen(f),
						gl = strlen(g);

			if (strcmp(f, g) == 0 ||
				(fl < gl && strncmp(f, g, fl) == 0 && g[fl] == '.') ||
				(gl < fl && strncmp(f, g, gl) == 0 && f[gl] == '.'))
				ereport(ERROR,
						(errcode(ERRCODE_OCX_INVALID_PERSONAL_DATA),
						 errmsg("fields \"%s\" and \"%s\" overlap", g, f)));
		}
	}
	PG_RETURN_VOID();
}

/* ocx._privacy_changed() -> void: every backend reloads the definitions. */
Datum
ocx_privacy_changed(PG_FUNCTION_ARGS)
{
	Oid			relid = OcxRelid("personal_data");

	if (OidIsValid(relid))
		CacheInvalidateRelcacheByRelid(relid);
	ResetCaches();
	PG_RETURN_VOID();
}

/*
 * ocx._shred_subject_key(subject text) -> boolean: destroy the subject's
 * data key.  Its key bytes are overwritten in place (heap_inplace_update:
 * no other tuple version holds them), then the row is deleted, so VACUUM
 * leaves no copy in the table's files.  True when there was a key.
 * Runs as ocx_owner (called by ocx.forget_subject).
 */
Datum
ocx_shred_subject_key(PG_FUNCTION_ARGS)
{
	char	   *subject = text_to_cstring(PG_GETARG_TEXT_PP(0));
	uint8		hash[32];
	bytea	   *h = palloc(VARHDRSZ + 32);
	Datum		arg;
	ItemPointerData tid;
	bool		found = false;
	Oid			relid = OcxRelid("subject_keys");

	if (subject[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_SUBJECT),
				 errmsg("subject must not be empty")));
	SHA256((const unsigned char *) subject, strlen(subject), hash);

	/*
	 * An import that encrypts personal data holds SHARE ROW EXCLUSIVE on
	 * ocx.subject_keys instead of its subjects' locks: wait for its commit
	 * (and see the keys it created) before taking the subject's.
	 */
	LockRelationOid(relid, RowExclusiveLock);
	LockSubject(hash, ExclusiveLock);
	SET_VARSIZE(h, VARHDRSZ + 32);
	memcpy(VARDATA(h), hash, 32);
	arg = PointerGetDatum(h);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	if (SPI_execute_with_args("SELECT k.ctid FROM ocx.subject_keys k "
							  "WHERE k.subject_hash OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, (Oid[]) {BYTEAOID}, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "ocx: could not look up the subject's key");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Relation	rel;
		HeapTupleData tuple;
		Buffer		buf;

		tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1, &isnull));
		rel = table_open(relid, RowExclusiveLock);
		tuple.t_self = tid;
		if (heap_fetch(rel, SnapshotAny, &tuple, &buf, false))
		{
			TupleDesc	desc = RelationGetDescr(rel);
			Datum	   *values = palloc(sizeof(Datum) * desc->natts);
			bool	   *nulls = palloc(sizeof(bool) * desc->natts);
			HeapTuple	copy = heap_copytuple(&tuple);
			HeapTuple	zeroed;
			int			att = get_attnum(relid, "wrapped_key");
			bytea	   *old;
			bytea	   *z;

			ReleaseBuffer(buf);
			heap_deform_tuple(copy, desc, values, nulls);
			old = (bytea *) DatumGetPointer(values[att - 1]);
			if (VARATT_IS_EXTERNAL(old) || VARATT_IS_COMPRESSED(old))
				elog(ERROR, "ocx: a wrapped key is stored out of line");
			/* the same varlena, header kept, key bytes zeroed */
			z = palloc(VARSIZE_ANY(old));
			memcpy(z, old, VARSIZE_ANY(old));
			memset(VARDATA_ANY(z), 0, VARSIZE_ANY_EXHDR(old));
			values[att - 1] = PointerGetDatum(z);
			zeroed = heap_form_tuple(desc, values, nulls);
			zeroed->t_self = tid;
			if (zeroed->t_len != copy->t_len)
				elog(ERROR, "ocx: the zeroed key row does not fit in place");
			heap_inplace_update(rel, zeroed);
			found = true;
		}
		table_close(rel, NoLock);
		if (SPI_execute_with_args("DELETE FROM ocx.subject_keys k "
								  "WHERE k.subject_hash OPERATOR(pg_catalog.=) $1",
								  1, (Oid[]) {BYTEAOID}, &arg, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "ocx: could not delete the subject's key");
		CacheInvalidateRelcacheByRelid(relid);
		ResetKeyCaches();
	}
	SPI_finish();
	PG_RETURN_BOOL(found);
}

/*
 * ocx.rotate_privacy_key(key_file text) -> bigint: rewrap every data key
 * with the key-encryption key in key_file (the current one is
 * ocx.privacy_key_file).  Superusers only (it reads a server file).
 */
Datum
ocx_rotate_privacy_key(PG_FUNCTION_ARGS)
{
	char	   *path;
	uint8		newkek[PD_KEY_LEN];
	char		newid[17];
	uint64		i,
				n;
	SPIPlanPtr	upd;

	if (!superuser_arg(OcxCallerRole()))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_NOT_ALLOWED),
				 errmsg("only a superuser may rotate the key-encryption key"),
				 errdetail("It reads a file of the server.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_PRIVACY_KEY_UNAVAILABLE),
				 errmsg("key_file must not be null")));
	path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	LoadKeyFile(path, newkek);
	KeyId(newkek, newid);
	(void) CurrentKek();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ocx: SPI_connect failed");
	if (SPI_execute("SELECT k.key_id, k.wrapped_key FROM ocx.subject_keys k FOR UPDATE",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "ocx: could not read the data keys");
	n = SPI_processed;
	{
		SPITupleTable *tt = SPI_tuptable;

		upd = SPI_prepare("UPDATE ocx.subject_keys SET wrapped_key = $2, kek_id = $3 "
						  "WHERE key_id OPERATOR(pg_catalog.=) $1",
						  3, (Oid[]) {UUIDOID, BYTEAOID, TEXTOID});
		if (upd == NULL)
			elog(ERROR, "ocx: SPI_prepare failed");
		for (i = 0; i < n; i++)
		{
			bool		isnull;
			pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			bytea	   *w = DatumGetByteaPP(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			uint8		dek[PD_KEY_LEN];
			bytea	   *nw = palloc(VARHDRSZ + PD_WRAPPED_LEN);
			Datum		args[3];

			UnwrapKey(kek, id, w, dek);
			SET_VARSIZE(nw, VARHDRSZ + PD_WRAPPED_LEN);
			WrapKey(newkek, id, dek, (uint8 *) VARDATA(nw));
			explicit_bzero(dek, sizeof(dek));
			args[0] = UUIDPGetDatum(id);
			args[1] = PointerGetDatum(nw);
			args[2] = CStringGetTextDatum(newid);
			if (SPI_execute_plan(upd, args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "ocx: could not rewrap a data key");
		}
	}
	SPI_finish();
	explicit_bzero(newkek, sizeof(newkek));
	CacheInvalidateRelcacheByRelid(OcxRelid("subject_keys"));
	PG_RETURN_INT64((int64) n);
}
