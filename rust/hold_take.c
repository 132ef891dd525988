// SPDX-License-Identifier: GPL-2.0
/*
 * A stable splice's new holds, a chunk of its buffers in one pass
 * (Joins::hold_new in src/hold/take.rs). A first splice of a small-folio
 * file takes a hold per page: every step here is a static inline mm
 * helper, and a C call per step from Rust cost more than the steps (about
 * 200 guest instructions a page above plain splice across five calls and
 * two Rust passes; this loop is the same steps, in one).
 */

#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/pipe_fs_i.h>
#include "folio.h"
#include "helpers.h"
#include "hold_index.h"

/* ss_folio_unshared() for a folio locked in its mapping and not mapped. */
static inline bool folio_unshared_unmapped(struct folio *folio, int own)
{
	bool off_lru = !folio_test_lru(folio);
	int extra;

	smp_rmb();
	extra = folio_extra_refs_unmapped(folio);
	if (extra == own)
		return true;
	smp_rmb();	/* the count before the flag, as in ss_folio_unshared() */
	return extra == own + 1 && off_lru && !folio_test_lru(folio);
}

/* Makes the @len buffers from @slot on stable buffers, zero copy; their bytes. */
static size_t take_over(struct pipe_buffer *bufs, unsigned int mask, unsigned int slot,
			unsigned int len)
{
	size_t bytes = 0;

	for (; len; len--, slot++) {
		struct pipe_buffer *buf = &bufs[slot & mask];

		buf->ops = &nosteal_pipe_buf_ops;
		buf->flags = 0;
		buf->private = 0;
		bytes += buf->len;
	}
	return bytes;
}

/*
 * Up to @max runs of buffers on one folio of a locked pipe's new buffers
 * (slots [@c->from, @c->to) of its ring), from a stable splice of a file
 * of @mapping, whose hold index is @xa and whose bucket's hold count is
 * @count; the caller holds that bucket's lock throughout. Buffers on a
 * folio the index holds join its hold (as ss_hold_index_match() finds
 * them). A folio of @mapping whose lock is free, that is not mapped and
 * that nothing but the page cache, its private data, the LRU and its run's
 * buffers references gets a new hold, with the protocol of
 * Holds::writer_may_hold: the chunk's possible holds are counted in
 * @count first, a full barrier, then each folio's references are read
 * under its lock (a writer takes its reference before it reads the count:
 * either it sees the count and waits for the bucket lock, then finds the
 * entry, or this check sees its reference), a reference taken for its
 * entry, the entry stored, the lock dropped; the count keeps only the new
 * entries in the end. Buffers held either way become stable buffers; the
 * others (not page cache, stable already, locked, mapped, referenced, no
 * memory for the entry) are left to the caller's slow path. Fills @out.
 */
void ss_pipe_hold_new(struct ss_pipe_chunk *c, unsigned int max, struct address_space *mapping,
		      struct xarray *xa, atomic_t *count, struct ss_new_holds *out)
{
	/* Locals, not *@c and *@out, which the compiler would reload per page. */
	struct pipe_buffer *bufs = c->bufs;
	unsigned int mask = c->mask, to = c->to, slot = c->from, runs = 0;
	unsigned int joined = 0, stored = 0, fresh = 0, refused = 0, left = 0;
	struct block_cursor cur = { .xa = xa };
	struct folio *next = slot != to ? page_folio(bufs[slot & mask].page) : NULL;
	u64 bytes = 0;

	/*
	 * Counted before any check (more than will be held, until the end):
	 * writers that see it take the bucket lock, which this caller holds.
	 */
	atomic_add(max, count);
	smp_mb();
	while (slot != to && runs < max) {
		const struct pipe_buffer *buf = &bufs[slot & mask];
		struct folio *folio = next, **entry;
		unsigned int first = slot, len;

		next = NULL;
		while (++slot != to) {
			next = page_folio(bufs[slot & mask].page);
			if (next != folio)
				break;
		}
		runs++;
		len = slot - first;
		if (buf->ops == &nosteal_pipe_buf_ops || READ_ONCE(folio->mapping) != mapping) {
			left += len;
			continue;
		}
		cursor_seek(&cur, folio->index);
		if (cursor_entry(&cur, folio->index) == folio) {
			joined++;
			bytes += take_over(bufs, mask, first, len);
			continue;
		}
		if (!folio_trylock(folio)) {
			left += len;
			continue;
		}
		entry = NULL;
		if (folio->mapping == mapping && !folio_mapped(folio)) {
			if (folio_unshared_unmapped(folio, len))
				entry = cursor_slot(&cur, folio->index);	/* NULL: no memory */
			else
				refused++;
		}
		if (entry) {
			folio_get(folio);	/* the entry's */
			if (*entry)
				folio_put(*entry);	/* a stale entry's: a folio that left the cache */
			else
				fresh++;
			*entry = folio;
			stored++;
			bytes += take_over(bufs, mask, first, len);
		} else {
			left += len;
		}
		folio_unlock(folio);
	}
	/* Only the new entries stay counted. */
	atomic_sub(max - fresh, count);
	*out = (struct ss_new_holds){
		.next = slot, .joined = joined, .stored = stored, .fresh = fresh,
		.refused = refused, .left = left, .bytes = bytes,
	};
}
