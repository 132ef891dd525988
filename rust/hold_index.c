// SPDX-License-Identifier: GPL-2.0
/*
 * The per-file index of held folios (src/hold_index.rs): page index ->
 * held folio. An entry owns no reference: it is only compared with a folio
 * somebody else references (a splice's buffer, a writer's lookup, the
 * page cache's folio at its index), never dereferenced, so it may outlive
 * its folio (see "A record that owns nothing" in
 * Documentation/stable-splice.rst). Entries live in
 * blocks of 64 consecutive page indices (one 512-byte allocation each),
 * found in an XArray by index / 64: a splice of 1 MiB stores 256 entries
 * as pointer writes into four blocks, where an XArray entry per page cost
 * an xas_store() each (about 200 guest instructions a page) and the
 * reaper an xas_store(NULL) with its mark clearing per hold.
 *
 * All callers hold the registry's bucket lock, which serializes every use
 * of one file's index: the blocks need no locking or RCU of their own.
 * The XArray of blocks takes its own lock for changes, as its API requires.
 */

#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/xarray.h>
#include "folio.h"
#include "helpers.h"
#include "hold_index.h"

static struct ss_hold_block *block_at(struct ss_hold_index *idx, unsigned long index)
{
	return ss_hold_block_at(idx, index >> SS_BLOCK_SHIFT);
}

static bool block_empty(const struct ss_hold_block *b)
{
	return !memchr_inv(b, 0, sizeof(*b));
}

/* Takes the block of @key, which has no entry left, out and frees it. */
static void block_free(struct ss_hold_index *idx, unsigned long key, struct ss_hold_block *b)
{
	if (idx->last == b) {
		idx->last_key = ULONG_MAX;
		idx->last = NULL;
	}
	xa_erase(&idx->xa, key);
	kfree(b);
}

/* Frees the block of @key if it has no entry left. */
static void block_put_if_empty(struct ss_hold_index *idx, unsigned long key, struct ss_hold_block *b)
{
	if (b && block_empty(b))
		block_free(idx, key, b);
}

bool ss_hold_block_new(struct block_cursor *c)
{
	struct ss_hold_block *b = kzalloc(sizeof(*b), GFP_NOWAIT | __GFP_NOWARN);

	if (!b)
		return false;
	if (xa_is_err(xa_store(&c->idx->xa, c->key, b, GFP_NOWAIT | __GFP_NOWARN))) {
		kfree(b);
		return false;
	}
	c->b = b;
	return true;
}

void ss_hold_index_init(struct ss_hold_index *idx)
{
	xa_init(&idx->xa);
	idx->last_key = ULONG_MAX;
	idx->last = NULL;
}

/* Frees the blocks (the entries own nothing). */
void ss_hold_index_destroy(struct ss_hold_index *idx)
{
	struct ss_hold_block *b;
	unsigned long key;

	idx->last_key = ULONG_MAX;
	idx->last = NULL;
	xa_for_each(&idx->xa, key, b)
		kfree(b);
	xa_destroy(&idx->xa);
}

struct folio *ss_hold_index_load(struct ss_hold_index *idx, unsigned long index)
{
	struct ss_hold_block *b = block_at(idx, index);

	return b ? b->slot[index & SS_BLOCK_MASK] : NULL;
}

/* Whether @folio, which the caller references, is held at its own index. */
bool ss_hold_index_holds(struct ss_hold_index *idx, struct folio *folio)
{
	return ss_hold_index_load(idx, folio->index) == folio;
}

struct folio *ss_hold_index_erase(struct ss_hold_index *idx, unsigned long index)
{
	struct ss_hold_block *b = block_at(idx, index);
	struct folio *old;

	if (!b)
		return NULL;
	old = b->slot[index & SS_BLOCK_MASK];
	b->slot[index & SS_BLOCK_MASK] = NULL;
	block_put_if_empty(idx, index >> SS_BLOCK_SHIFT, b);
	return old;
}

/* The first entry at or after *index, up to @max; its index in *index. */
struct folio *ss_hold_index_find(struct ss_hold_index *idx, unsigned long *index, unsigned long max)
{
	struct ss_hold_block *b;
	unsigned long key, i;

	if (*index > max)
		return NULL;
	xa_for_each_range(&idx->xa, key, b, *index >> SS_BLOCK_SHIFT, max >> SS_BLOCK_SHIFT) {
		unsigned long base = key << SS_BLOCK_SHIFT;

		for (i = *index > base ? *index - base : 0; i < SS_BLOCK_SLOTS; i++) {
			if (base + i > max)
				return NULL;
			if (b->slot[i]) {
				*index = base + i;
				return b->slot[i];
			}
		}
	}
	return NULL;
}

/*
 * Whether the entry at @index of @mapping's index, on @entry, may go: the
 * page cache has no folio there, or another one (the entry's folio left,
 * its pipes keep it), or that folio has no reader left (ss_hold_ended(),
 * with this lookup's reference in the place of the hold's). The entry is
 * only compared: its folio may be free.
 */
static bool entry_ended(struct folio *entry, struct address_space *mapping, unsigned long index)
{
	struct folio *folio = __filemap_get_folio(mapping, index, 0, 0);
	bool ended;

	if (IS_ERR(folio))
		return true;
	ended = folio != entry || folio->index != index || ss_hold_ended(folio, mapping);
	folio_put(folio);
	return ended;
}

/*
 * One step of a walk of @mapping's index (src/hold/reap.rs: on demand and
 * under memory pressure, never per hold): from page index @from on, looks
 * at up to @budget entries and takes out those that may go
 * (entry_ended()), a block left empty freed. Returns how many went; @w
 * gets how many were looked at and where to go on. Under the bucket lock,
 * which keeps new readers from joining meanwhile; the lookups do not sleep.
 */
unsigned int ss_hold_index_reap(struct ss_hold_index *idx, struct address_space *mapping,
				unsigned long from, unsigned int budget, struct ss_reap_walk *w)
{
	struct ss_hold_block *b;
	unsigned long key, i;
	unsigned int ended = 0, seen = 0;

	w->next = ULONG_MAX;
	xa_for_each_start(&idx->xa, key, b, from >> SS_BLOCK_SHIFT) {
		unsigned long base = key << SS_BLOCK_SHIFT;
		unsigned long first = from > base ? from - base : 0;
		unsigned int kept = 0, cleared = 0;

		for (i = first; i < SS_BLOCK_SLOTS; i++) {
			struct folio *folio = b->slot[i];

			if (!folio)
				continue;
			if (seen == budget) {
				w->next = base + i;
				ended += cleared;
				goto out;	/* the block keeps this entry */
			}
			seen++;
			if (!entry_ended(folio, mapping, base + i)) {
				kept++;
				continue;
			}
			b->slot[i] = NULL;
			cleared++;
		}
		ended += cleared;
		if (!cleared)
			continue;
		/* A walk of the whole block knows it empty without looking again. */
		if (first == 0 && !kept)
			block_free(idx, key, b);
		else
			block_put_if_empty(idx, key, b);
	}
out:
	w->seen = seen;
	return ended;
}

/*
 * One step of the shrinker's walk of @mapping's index (src/hold/reap.rs):
 * from page index @from on, looks at up to @budget blocks and frees those
 * whose range has no folio in the page cache, with their entries: every
 * such entry's folio left (the pipes keep it, nobody can write it). One
 * page-cache range look a block, none per entry. Returns the entries
 * freed; @w gets the blocks looked at and where to go on. Under the bucket
 * lock: no splice can join a folio added to the range meanwhile.
 */
unsigned int ss_hold_index_drop_uncached(struct ss_hold_index *idx, struct address_space *mapping,
					 unsigned long from, unsigned int budget, struct ss_reap_walk *w)
{
	struct ss_hold_block *b;
	unsigned long key;
	unsigned int dropped = 0, seen = 0;

	w->next = ULONG_MAX;
	xa_for_each_start(&idx->xa, key, b, from >> SS_BLOCK_SHIFT) {
		loff_t first = (loff_t)key << (SS_BLOCK_SHIFT + PAGE_SHIFT);
		unsigned int i, n = 0;

		if (seen == budget) {
			w->next = key << SS_BLOCK_SHIFT;
			break;
		}
		seen++;
		if (filemap_range_has_page(mapping, first, first + (SS_BLOCK_SLOTS << PAGE_SHIFT) - 1))
			continue;
		for (i = 0; i < SS_BLOCK_SLOTS; i++)
			n += !!b->slot[i];
		block_free(idx, key, b);
		dropped += n;
	}
	w->seen = seen;
	return dropped;
}

/*
 * Stores @n entries (->folio at ->index) without sleeping; ->old gets the
 * entry each replaced. Returns how many, from the first, were stored (no
 * memory for a new block, or for the XArray's slot of one).
 */
unsigned int ss_hold_index_store_all(struct ss_hold_index *idx, struct ss_index_store *stores,
				     unsigned int n)
{
	struct block_cursor c = BLOCK_CURSOR(idx);
	unsigned int i;

	for (i = 0; i < n; i++) {
		struct folio **slot;

		cursor_seek(&c, stores[i].index);
		slot = cursor_slot(&c, stores[i].index);
		if (!slot)
			break;
		stores[i].old = *slot;
		*slot = stores[i].folio;
	}
	return i;
}
