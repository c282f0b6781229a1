/*
 * tags.c
 *		Event tags: parsing, their stored forms, and the tag locks every
 *		append of tagged events takes (dcb.c explains the lock protocol).
 *
 * Split from dcb.c so that the append path (append.c) and ocx.append_if
 * (dcb.c, which appends through append.c) both call down into this file and
 * neither calls the other back.
 */
#include "ocx.h"
#include "ocx_errors.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#define OCX_TAG_LOCK			0x6f65
/* the tenant's all-tags lock (field4 of its advisory lock tag) */
#define OCX_TAG_ALL_LOCK		0x6f66

/*
 * More distinct tags than this in one call: the writer takes the tenant's
 * all-tags lock in ShareLock instead of a lock per tag (the shared lock
 * table holds a few thousand locks with the default
 * max_locks_per_transaction).  Every append_if takes the all-tags lock in
 * RowExclusiveLock before its tag locks: it conflicts with such a writer
 * and not with another append_if, nor with writers of fewer tags (which do
 * not take it).
 */
#define OCX_TAG_LOCKS_MAX		1000

/* set while ocx.append_if appends: its tag locks are taken already */
bool		ocx_tags_locked = false;

typedef struct TagKey
{
	uint32		k1;
	uint32		k2;
	LOCKMODE	mode;
} TagKey;


static int
CompareStrings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sort and drop duplicates; returns the new count. */
int
OcxSortDistinct(char **s, int n)
{
	int			m = 0,
				i;

	if (n == 0)
		return 0;
	qsort(s, n, sizeof(char *), CompareStrings);
	for (i = 1; i < n; i++)
		if (strcmp(s[i], s[m]) != 0)
			s[++m] = s[i];
	return m + 1;
}

/* The error for one bad tag; what is "event" (index >= 1) or "condition". */
void
OcxCheckTag(const char *tag, int len, const char *what, int index)
{
	if (len == 0 || len > OCX_MAX_TAG_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_TAGS),
				 index > 0 ?
				 errmsg("a tag of %s %d is %s", what, index, len == 0 ? "empty" : "too long") :
				 errmsg("a tag of the %s is %s", what, len == 0 ? "empty" : "too long"),
				 errdetail("Tags are non-empty strings of at most %d bytes.", OCX_MAX_TAG_LEN)));
}

/*
 * Parse a JSON "tags" value: an array of at most OCX_MAX_TAGS non-empty
 * strings; returned sorted and distinct (NULL, 0 for an empty array).
 */
void
OcxParseTags(JsonbValue *v, const char *what, int index, char ***tags, int *ntags)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	e;
	char	  **out;
	int			n = 0,
				count;

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerIsScalar(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_TAGS),
				 index > 0 ?
				 errmsg("\"tags\" of %s %d must be an array of strings, not %s",
						what, index, OcxJsonbTypeName(v)) :
				 errmsg("\"tags\" of the %s must be an array of strings, not %s",
						what, OcxJsonbTypeName(v))));
	count = JsonContainerSize(v->val.binary.data);
	if (count > OCX_MAX_TAGS)
		ereport(ERROR,
				(errcode(ERRCODE_OCX_INVALID_TAGS),
				 index > 0 ?
				 errmsg("%s %d has too many tags", what, index) :
				 errmsg("the %s has too many tags", what),
				 errdetail("It has %d; the limit is %d.", count, OCX_MAX_TAGS)));
	out = palloc(sizeof(char *) * Max(count, 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_OCX_INVALID_TAGS),
					 index > 0 ?
					 errmsg("a tag of %s %d must be a string, not %s", what, index,
							OcxJsonbTypeName(&e)) :
					 errmsg("a tag of the %s must be a string, not %s", what,
							OcxJsonbTypeName(&e))));
		OcxCheckTag(e.val.string.val, e.val.string.len, what, index);
		out[n++] = pnstrdup(e.val.string.val, e.val.string.len);
	}
	n = OcxSortDistinct(out, n);
	*tags = n > 0 ? out : NULL;
	*ntags = n;
}

/* An event's tags as text[] (ntags > 0). */
Datum
OcxTagsDatum(OcxNewEvent *ev)
{
	Datum	   *d = palloc(sizeof(Datum) * ev->ntags);
	int			i;

	for (i = 0; i < ev->ntags; i++)
		d[i] = CStringGetTextDatum(ev->tags[i]);
	return PointerGetDatum(construct_array(d, ev->ntags, TEXTOID, -1, false, TYPALIGN_INT));
}

/* An event's tags as a jsonb array of strings, for the batch insert. */
Datum
OcxTagsJsonb(OcxNewEvent *ev)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	int			i;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < ev->ntags; i++)
	{
		JsonbValue	s;

		s.type = jbvString;
		s.val.string.val = ev->tags[i];
		s.val.string.len = strlen(ev->tags[i]);
		pushJsonbValue(&state, WJB_ELEM, &s);
	}
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* The lock key of a tag in the session's tenant. */
static void
TagKeyOf(const char *tag, LOCKMODE mode, TagKey *key)
{
	const char *tenant = (ocx_tenant && ocx_tenant[0] != '\0') ? ocx_tenant : "";
	size_t		tl = strlen(tenant),
				gl = strlen(tag);
	char	   *buf = palloc(tl + gl + 1);
	uint64		h;

	memcpy(buf, tenant, tl);
	buf[tl] = '\0';				/* no tenant has a NUL in it */
	memcpy(buf + tl + 1, tag, gl);
	h = hash_bytes_extended((const unsigned char *) buf, (int) (tl + gl + 1), 0);
	pfree(buf);
	key->k1 = (uint32) (h >> 32);
	key->k2 = (uint32) h;
	key->mode = mode;
}

static int
CompareKeys(const void *a, const void *b)
{
	const TagKey *x = (const TagKey *) a;
	const TagKey *y = (const TagKey *) b;

	if (x->k1 != y->k1)
		return x->k1 < y->k1 ? -1 : 1;
	if (x->k2 != y->k2)
		return x->k2 < y->k2 ? -1 : 1;
	/* the stronger mode first, so that it is the one kept */
	return (int) y->mode - (int) x->mode;
}

/* The session tenant's all-tags lock, in mode. */
static void
LockAllTags(LOCKMODE mode)
{
	const char *tenant = (ocx_tenant && ocx_tenant[0] != '\0') ? ocx_tenant : "";
	uint64		h = hash_bytes_extended((const unsigned char *) tenant, (int) strlen(tenant), 0);
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h, OCX_TAG_ALL_LOCK);
	(void) LockAcquire(&tag, mode, false, false);
}

/*
 * Take the locks of keys[0..n-1] in key order, each once, in its strongest
 * mode; with a condition (append_if) the all-tags lock first.  When more
 * than OCX_TAG_LOCKS_MAX distinct keys are ShareLock only (an event's tag
 * that is not the condition's), the all-tags lock in ShareLock replaces
 * them.
 */
static void
LockKeys(TagKey *keys, int n, bool condition)
{
	int			i,
				shared = 0;

	qsort(keys, n, sizeof(TagKey), CompareKeys);
	for (i = 0; i < n; i++)
	{
		if (i > 0 && keys[i].k1 == keys[i - 1].k1 && keys[i].k2 == keys[i - 1].k2)
			continue;
		if (keys[i].mode == ShareLock)
			shared++;
	}
	if (condition)
		LockAllTags(RowExclusiveLock);
	if (shared > OCX_TAG_LOCKS_MAX)
		LockAllTags(ShareLock);
	for (i = 0; i < n; i++)
	{
		LOCKTAG		tag;

		if (i > 0 && keys[i].k1 == keys[i - 1].k1 && keys[i].k2 == keys[i - 1].k2)
			continue;
		if (shared > OCX_TAG_LOCKS_MAX && keys[i].mode == ShareLock)
			continue;
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, keys[i].k1, keys[i].k2, OCX_TAG_LOCK);
		(void) LockAcquire(&tag, keys[i].mode, false, false);
	}
}

/* Collect ShareLock keys of the events' tags into keys; returns how many. */
static int
EventKeys(OcxNewEvent *events, int n, TagKey *keys)
{
	int			m = 0,
				i,
				j;

	for (i = 0; i < n; i++)
		for (j = 0; j < events[i].ntags; j++)
			TagKeyOf(events[i].tags[j], ShareLock, &keys[m++]);
	return m;
}

/*
 * Called by every append before it writes: ShareLock on the tags of its
 * events, so that an ocx.append_if whose condition they match waits for it.
 */
void
OcxLockEventTags(OcxNewEvent *events, int n)
{
	int			total = 0,
				i;
	TagKey	   *keys;

	if (ocx_tags_locked)
		return;
	for (i = 0; i < n; i++)
		total += events[i].ntags;
	if (total == 0)
		return;
	keys = palloc(sizeof(TagKey) * total);
	LockKeys(keys, EventKeys(events, n, keys), false);
	pfree(keys);
}

/*
 * ExclusiveLock on each of tags[0..ntags-1] and ShareLock on the events'
 * tags, all in one pass in key order (ocx.append_if's condition).
 */
void
OcxLockConditionTags(char **tags, int ntags, OcxNewEvent *events, int n)
{
	int			total = ntags,
				nkeys = 0,
				i;
	TagKey	   *keys;

	for (i = 0; i < n; i++)
		total += events[i].ntags;
	keys = palloc(sizeof(TagKey) * Max(total, 1));
	for (i = 0; i < ntags; i++)
		TagKeyOf(tags[i], ExclusiveLock, &keys[nkeys++]);
	nkeys += EventKeys(events, n, keys + nkeys);
	LockKeys(keys, nkeys, true);
	pfree(keys);
}
