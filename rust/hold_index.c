// SPDX-License-Identifier: GPL-2.0
/*
 * The per-file index of held folios (src/hold_index.rs): page index ->
 * held folio, each entry owning one folio reference. Entries live in
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
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/xarray.h>
#include "helpers.h"
#include "hold_index.h"

static struct ss_hold_block *block_at(struct xarray *xa, unsigned long index)
{
	return xa_load(xa, index >> SS_BLOCK_SHIFT);
}

static bool block_empty(const struct ss_hold_block *b)
{
	return !memchr_inv(b, 0, sizeof(*b));
}

/* Frees the block of @key if it has no entry left. */
static void block_put_if_empty(struct xarray *xa, unsigned long key, struct ss_hold_block *b)
{
	if (b && block_empty(b)) {
		xa_erase(xa, key);
		kfree(b);
	}
}

bool ss_hold_block_new(struct block_cursor *c)
{
	struct ss_hold_block *b = kzalloc(sizeof(*b), GFP_NOWAIT | __GFP_NOWARN);

	if (!b)
		return false;
	if (xa_is_err(xa_store(c->xa, c->key, b, GFP_NOWAIT | __GFP_NOWARN))) {
		kfree(b);
		return false;
	}
	c->b = b;
	return true;
}

void ss_hold_index_init(struct xarray *xa)
{
	xa_init(xa);
}

/* The caller took every entry out first; frees what blocks are left. */
void ss_hold_index_destroy(struct xarray *xa)
{
	struct ss_hold_block *b;
	unsigned long key;

	xa_for_each(xa, key, b)
		kfree(b);
	xa_destroy(xa);
}

struct folio *ss_hold_index_load(struct xarray *xa, unsigned long index)
{
	struct ss_hold_block *b = block_at(xa, index);

	return b ? b->slot[index & SS_BLOCK_MASK] : NULL;
}

struct folio *ss_hold_index_erase(struct xarray *xa, unsigned long index)
{
	struct ss_hold_block *b = block_at(xa, index);
	struct folio *old;

	if (!b)
		return NULL;
	old = b->slot[index & SS_BLOCK_MASK];
	b->slot[index & SS_BLOCK_MASK] = NULL;
	block_put_if_empty(xa, index >> SS_BLOCK_SHIFT, b);
	return old;
}

/* The first entry at or after *index, up to @max; its index in *index. */
struct folio *ss_hold_index_find(struct xarray *xa, unsigned long *index, unsigned long max)
{
	struct ss_hold_block *b;
	unsigned long key, i;

	if (*index > max)
		return NULL;
	xa_for_each_range(xa, key, b, *index >> SS_BLOCK_SHIFT, max >> SS_BLOCK_SHIFT) {
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
 * Up to @max entries from index @from on, in index order: their indices
 * and folios. Returns how many. (The reaper's batch.)
 */
unsigned int ss_hold_index_gather(struct xarray *xa, unsigned long from,
				  struct ss_index_entry *entries, unsigned int max)
{
	struct ss_hold_block *b;
	unsigned int n = 0;
	unsigned long key, i;

	if (!max)
		return 0;
	xa_for_each_start(xa, key, b, from >> SS_BLOCK_SHIFT) {
		unsigned long base = key << SS_BLOCK_SHIFT;

		for (i = from > base ? from - base : 0; i < SS_BLOCK_SLOTS; i++) {
			if (!b->slot[i])
				continue;
			entries[n].index = base + i;
			entries[n].folio = b->slot[i];
			entries[n].ended = false;
			if (++n == max)
				return n;
		}
	}
	return n;
}

/*
 * Erases each of @n entries with ->ended set if the index still holds its
 * folio there; clears ->ended where it did not. Returns how many were
 * erased; their references are the caller's. @entries are in ascending
 * index order (ss_hold_index_gather()): a block is looked up once, and
 * freed once it is empty.
 */
unsigned int ss_hold_index_erase_all(struct xarray *xa, struct ss_index_entry *entries,
				     unsigned int n)
{
	struct block_cursor c = BLOCK_CURSOR(xa);
	unsigned int i, done = 0;

	for (i = 0; i < n; i++) {
		struct ss_index_entry *e = &entries[i];
		struct block_cursor left = c;

		if (!e->ended)
			continue;
		if (cursor_seek(&c, e->index))
			block_put_if_empty(xa, left.key, left.b);
		if (!c.b || c.b->slot[e->index & SS_BLOCK_MASK] != e->folio) {
			e->ended = false;
			continue;
		}
		c.b->slot[e->index & SS_BLOCK_MASK] = NULL;
		done++;
	}
	block_put_if_empty(xa, c.key, c.b);
	return done;
}

/*
 * For each of @n runs, whether the index holds exactly the run's folio at
 * the run's index: ->held set, the others left alone. With @prefix, stops
 * at the first that is not held. Returns how many were held.
 */
unsigned int ss_hold_index_match(struct xarray *xa, struct ss_folio_run *runs, unsigned int n,
				 bool prefix)
{
	struct block_cursor c = BLOCK_CURSOR(xa);
	unsigned int i, found = 0;

	for (i = 0; i < n; i++) {
		struct ss_folio_run *r = &runs[i];

		cursor_seek(&c, r->index);
		if (c.b && c.b->slot[r->index & SS_BLOCK_MASK] == r->folio) {
			r->held = true;
			found++;
		} else if (prefix) {
			break;
		}
	}
	return found;
}

/*
 * Stores @n entries (->folio at ->index) without sleeping; ->old gets the
 * entry each replaced. Returns how many, from the first, were stored (no
 * memory for a new block, or for the XArray's slot of one).
 */
unsigned int ss_hold_index_store_all(struct xarray *xa, struct ss_index_store *stores,
				     unsigned int n)
{
	struct block_cursor c = BLOCK_CURSOR(xa);
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
