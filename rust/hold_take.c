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

/*
 * ss_folio_unshared() for a folio locked in its mapping, of @nr pages:
 * also false for a mapped folio, as every page table entry or pmd that
 * maps a page-cache folio owns a reference of it (taken before the entry
 * is made, put after it is gone), and while the folio is locked nothing
 * can map it (faults map only locked folios), so a count at what an
 * unmapped folio has proves it unmapped. One read of the flags serves the
 * LRU rule's first read and the private data, which only the lock holder
 * changes.
 */
static inline bool folio_unshared_locked(struct folio *folio, long nr, int own)
{
	unsigned long flags = READ_ONCE(folio->flags.f);
	int extra;

	smp_rmb();	/* the flags before the count */
	extra = folio_ref_count(folio) - nr - !!(flags & BIT(PG_private));
	return folio_extra_refs_are_own(folio, extra, own, !(flags & BIT(PG_lru)));
}

/* Makes the @len buffers from @slot on stable buffers, zero copy; their bytes. */
static size_t take_over(struct pipe_buffer *bufs, unsigned int mask, unsigned int slot,
			unsigned int len)
{
	size_t bytes = 0;

	do {	/* a run has a buffer at least */
		struct pipe_buffer *buf = &bufs[slot++ & mask];

		buf->ops = &nosteal_pipe_buf_ops;
		buf->flags = 0;
		buf->private = 0;
		bytes += buf->len;
	} while (--len);
	return bytes;
}

/*
 * A file served again: the new buffers of a locked pipe from @c->from on,
 * in a row, whose folios @idx holds join those holds (become stable
 * buffers, no folio lock needed, as in ss_pipe_hold_new()); the caller
 * holds the bucket lock. Returns the slot of the first buffer whose folio
 * is not held (@c->to if there is none); *@bytes gets the joined bytes.
 * One pass over the ring, each run of buffers on one folio looked up once
 * (a call whose first folio is not held, a file served once, stops at one
 * lookup), each buffer taken over where it stands: finding the runs,
 * matching them and taking their buffers over in three passes cost about
 * 30 guest instructions a buffer.
 */
unsigned int ss_pipe_join_held(const struct ss_pipe_chunk *c, struct ss_hold_index *idx, u64 *bytes)
{
	struct pipe_buffer *bufs = c->bufs;
	unsigned int mask = c->mask, to = c->to, slot = c->from;
	struct block_cursor cur = BLOCK_CURSOR(idx);
	const struct folio *held = NULL;	/* the folio of the run being joined */
	u64 n = 0;

	for (; slot != to; slot++) {
		struct folio *folio = page_folio(bufs[slot & mask].page);

		if (folio != held) {
			cursor_seek(&cur, folio->index);
			if (!cur.b || cur.b->slot[folio->index & SS_BLOCK_MASK] != folio)
				break;
			held = folio;
		}
		n += take_over(bufs, mask, slot, 1);
	}
	*bytes = n;
	return slot;
}

/*
 * Up to @max runs of buffers on one folio of a locked pipe's new buffers
 * (slots [@c->from, @c->to) of its ring), from a stable splice of a file
 * of @mapping, whose hold index is @idx and whose bucket's hold count is
 * @count; the caller holds that bucket's lock throughout, and the file is
 * in the table of files with holds (src/hold/table.rs). Buffers on a
 * folio the index holds join its hold (as in ss_pipe_join_held()). A
 * folio of @mapping whose lock is free, that is not mapped and that
 * nothing but the page cache, its private data, the LRU and its run's
 * buffers references gets a new hold, with the protocol of
 * Holds::writer_may_hold: a full barrier after the file was entered in
 * the table, then each folio's references are read under its lock (a
 * writer takes its reference before it looks for the file: either it
 * finds the file and waits for the bucket lock, then finds the entry, or
 * this check sees its reference), the entry stored (no reference: see
 * rust/hold_index.c), the lock dropped; the new entries are counted in @count
 * (which the walks read). Buffers held either way become stable buffers; the
 * others (not page cache, stable already, locked, mapped, referenced, no
 * memory for the entry) are left to the caller's slow path. Fills @out.
 */
void ss_pipe_hold_new(struct ss_pipe_chunk *c, unsigned int max, struct address_space *mapping,
		      struct ss_hold_index *idx, atomic_t *count, struct ss_new_holds *out)
{
	/* Locals, not *@c, which the compiler would reload per page. */
	struct pipe_buffer *bufs = c->bufs;
	unsigned int mask = c->mask, to = c->to, slot = c->from, budget = max;
	struct block_cursor cur = BLOCK_CURSOR(idx);
	struct ss_new_holds o = {};

	/* The file's table entry before any check (see above). */
	smp_mb();
	while (slot != to && budget--) {
		const struct pipe_buffer *buf = &bufs[slot & mask];
		struct folio *folio = page_folio(buf->page), **entry;
		unsigned int first = slot, len;
		long nr;
		bool hold = false;

		/*
		 * A small folio's run is its one buffer (filemap_splice_read()
		 * fills one per folio). Were there a second, this run would
		 * count one buffer short: its check would see one reference
		 * more than the run's and refuse, never accept more.
		 */
		if (folio_test_large(folio)) {
			while (++slot != to && page_folio(bufs[slot & mask].page) == folio)
				;
			nr = folio_nr_pages(folio);
		} else {
			slot++;
			nr = 1;
		}
		len = slot - first;
		if (buf->ops == &nosteal_pipe_buf_ops || READ_ONCE(folio->mapping) != mapping) {
			o.left += len;
			continue;
		}
		cursor_seek(&cur, folio->index);
		entry = NULL;
		if (cur.b && *(entry = &cur.b->slot[folio->index & SS_BLOCK_MASK]) == folio) {
			o.joined++;
			o.bytes += take_over(bufs, mask, first, len);
			continue;
		}
		if (!folio_trylock(folio)) {
			o.left += len;
			continue;
		}
		if (folio->mapping == mapping) {
			if (!folio_unshared_locked(folio, nr, len)) {
				/* Mapped ones are the slow path's to write-protect. */
				if (!folio_mapped(folio))
					o.refused++;
			} else if (entry || (entry = cursor_slot(&cur, folio->index))) {
				hold = true;
			}
		}
		if (hold) {
			/* No reference: the entry is only ever compared (hold_index.c). */
			if (!*entry)
				o.fresh++;
			*entry = folio;
			o.stored++;
			o.bytes += take_over(bufs, mask, first, len);
		} else {
			o.left += len;
		}
		folio_unlock_unwaited(folio);
	}
	atomic_add(o.fresh, count);
	o.next = slot;
	*out = o;
}
