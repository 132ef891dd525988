/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reference checks of a folio, inline for the loops that run once per
 * held page (rust/hold_take.c; the reaper's walk in rust/hold_index.c;
 * ss_folio_unshared() in rust/folio.c).
 */
#ifndef SS_FOLIO_H
#define SS_FOLIO_H

#include <linux/mm.h>
#include <linux/pagemap.h>
#include "helpers.h"

/*
 * References of a folio locked in its mapping and not mapped (nothing can
 * map it while it is locked) beyond the page cache's and its private
 * data's: folio_expected_ref_count() without its cases for anonymous,
 * swap-cache and mapped folios, which cannot apply.
 */
static inline int folio_extra_refs_unmapped(struct folio *folio)
{
	return folio_ref_count(folio) - folio_nr_pages(folio) - folio_test_private(folio);
}

/*
 * Whether @extra references beyond the expected ones, read after
 * @off_lru was, are @own references of the caller's, counting one more
 * as the LRU's own when the folio was off the LRU before the count was
 * read and still is after (ss_folio_unshared() in rust/folio.c has why
 * such a reference is never a writer's).
 */
static inline bool folio_extra_refs_are_own(struct folio *folio, int extra, int own, bool off_lru)
{
	if (extra == own)
		return true;
	smp_rmb();	/* the count before the flag */
	return extra == own + 1 && off_lru && !folio_test_lru(folio);
}

/*
 * folio_unlock() without its call where nobody waits: PG_locked cleared
 * by a release cmpxchg that also proves PG_waiters clear at that moment
 * (a waiter sets PG_waiters before it looks at the lock again, so it
 * finds the folio unlocked); otherwise, or if another flag changed
 * meanwhile, folio_unlock() itself, which wakes the waiters. The call and
 * the loop's registers around it cost more than the rest of the unlock.
 */
static inline void folio_unlock_unwaited(struct folio *folio)
{
	unsigned long old = READ_ONCE(folio->flags.f);

	if (!(old & BIT(PG_waiters)) &&
	    try_cmpxchg_release(&folio->flags.f, &old, old & ~BIT(PG_locked)))
		return;
	folio_unlock(folio);
}

/*
 * Whether the hold on @folio, the folio @mapping caches at an entry's
 * index, referenced by the caller's lookup, has ended: nobody but the page
 * cache, its mappings, private data and that lookup references it, or it
 * left @mapping. The on-demand walk's question (rust/hold_index.c), asked
 * under the bucket lock (a splice joins a hold, and a writer ends or
 * breaks one, under that lock); "the hold's" reference below is the
 * lookup's.
 *
 * First without the folio lock: a count of the page cache's references
 * and the hold's alone means that when it was read nobody else had the
 * folio (every pipe buffer, skb, page-table entry, private data, writer
 * and lock holder owns a reference of its own), so nobody can read it
 * through this hold later: a new reader finds it in the page cache and
 * joins under the bucket lock, after the caller erased the entry. The
 * mapping is read after the count: a folio leaving the page cache has
 * its mapping cleared before the cache's references are put (a fully
 * ordered atomic), so while it still reads @mapping the count included
 * them. It credits nothing else, so it can only answer "ended" where the
 * locked check would. Otherwise (private data, a mapping, any other
 * reference) the locked check, which may credit private data and
 * mappings because nothing can attach either while the folio is locked;
 * a folio locked by somebody else stays held until the next walk.
 */
static inline bool ss_hold_ended(struct folio *folio, struct address_space *mapping)
{
	bool ended;

	if (folio_ref_count(folio) == folio_nr_pages(folio) + 1) {
		smp_rmb();	/* the count before the mapping */
		if (READ_ONCE(folio->mapping) == mapping)
			return true;
	}
	if (!folio_trylock(folio))
		return false;
	if (folio->mapping != mapping)
		ended = true;
	else if (!folio_mapped(folio))
		ended = folio_extra_refs_unmapped(folio) <= 1;
	else
		ended = ss_folio_extra_refs(folio) <= 1;
	folio_unlock_unwaited(folio);
	return ended;
}

#endif
