/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The hold index and its blocks (rust/hold_index.c), for the C that stores
 * into them in a splicer's hot loop (rust/hold_take.c) and for the Rust
 * that owns an index (src/hold_index.rs). Every user holds the registry's
 * bucket lock.
 */
#ifndef SS_HOLD_INDEX_H
#define SS_HOLD_INDEX_H

#include <linux/xarray.h>

#define SS_BLOCK_SHIFT	6
#define SS_BLOCK_SLOTS	(1UL << SS_BLOCK_SHIFT)
#define SS_BLOCK_MASK	(SS_BLOCK_SLOTS - 1)

/* The entries of page indices key * 64 .. key * 64 + 63; NULL: none. */
struct ss_hold_block {
	struct folio *slot[SS_BLOCK_SLOTS];
};

/*
 * One file's index (src/hold_index.rs): the XArray of its blocks, and the
 * block found last (last_key ULONG_MAX: none). A file served again finds
 * its next splice's folios in the block of its last one, without an
 * XArray load under RCU; freeing a block forgets it here.
 */
struct ss_hold_index {
	struct xarray xa;
	unsigned long last_key;
	struct ss_hold_block *last;
};

/* The block of @key, NULL if there is none. */
static inline struct ss_hold_block *ss_hold_block_at(struct ss_hold_index *idx, unsigned long key)
{
	struct ss_hold_block *b;

	if (key == idx->last_key)
		return idx->last;
	b = xa_load(&idx->xa, key);
	if (b) {
		idx->last_key = key;
		idx->last = b;
	}
	return b;
}

/*
 * The block of the last index asked about: a chunk's or a batch's indices
 * are mostly in one or two blocks, so each is looked up once in a row.
 * Start one with BLOCK_CURSOR(): its key, ULONG_MAX, is no block's (a
 * page index shifted right by SS_BLOCK_SHIFT never reaches it).
 */
struct block_cursor {
	struct ss_hold_index *idx;
	unsigned long key;
	struct ss_hold_block *b;	/* NULL: no block there */
};

#define BLOCK_CURSOR(i)	((struct block_cursor){ .idx = (i), .key = ULONG_MAX })

/* Moves @c to the block of @index; true if that is another block than before. */
static inline bool cursor_seek(struct block_cursor *c, unsigned long index)
{
	if (index >> SS_BLOCK_SHIFT == c->key)
		return false;
	c->key = index >> SS_BLOCK_SHIFT;
	c->b = ss_hold_block_at(c->idx, c->key);
	return true;
}

/* Puts a new, empty block in place at @c's key without sleeping; false without memory. */
bool ss_hold_block_new(struct block_cursor *c);

/*
 * The slot of @index, cursor_seek() done, with a new block put in place
 * if there is none; NULL without memory.
 */
static inline struct folio **cursor_slot(struct block_cursor *c, unsigned long index)
{
	if (!c->b && !ss_hold_block_new(c))
		return NULL;
	return &c->b->slot[index & SS_BLOCK_MASK];
}

#endif
