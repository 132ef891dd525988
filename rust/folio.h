/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reference checks of a locked folio, inline for the loops that run once
 * per held page (rust/hold_take.c; the reaper's batch and
 * ss_folio_unshared() in rust/folio.c).
 */
#ifndef SS_FOLIO_H
#define SS_FOLIO_H

#include <linux/mm.h>

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

#endif
